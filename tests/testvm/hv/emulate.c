/*
 * The one kind of instruction the test VM finishes for KVM: a fence.
 *
 * On real hardware (and so under bhyve) the CPU runs every instruction a
 * guest kernel has; the dev machines' KVM (kvm_pvm) hands some to KVM's
 * instruction emulator, which has no lfence, mfence or sfence (group 15,
 * register forms: "N" in arch/x86/kvm/emulate.c) and gives up with an
 * emulation failure.  Linux patches lfence in at boot (rdtsc_ordered, the
 * TSC clocksource's read) and no command-line switch removes it, so the
 * test VM completes it here, as vmm.ko completes the MMIO instructions it
 * emulates: a fence orders memory accesses, and the exit to this process
 * that got us here already did (a VM exit serialises), so all that is left
 * is to step over it.  Instructions a switch can keep the guest off (clac,
 * popcnt, ...) are kept off that way instead: ../guest/README.md.
 */
#include <stdio.h>
#include <sys/ioctl.h>

#include "testvm.h"

/* 0f ae /5, /6, /7 with mod = 3: lfence, mfence, sfence (no prefixes). */
static bool
is_fence(const uint8_t *b, int n)
{
	return n >= 3 && b[0] == 0x0f && b[1] == 0xae && b[2] >= 0xe8;
}

bool
emulate_fence(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	uint8_t insn[16];

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0 ||
	    !is_fence(insn, insn_bytes_at_rip(v, &r, &s, insn)))
		return false;
	r.rip += 3;
	return ioctl(v->fd, KVM_SET_REGS, &r) == 0;
}
