/*
 * Saying why KVM gave up on a vCPU (KVM_EXIT_INTERNAL_ERROR), in words.
 *
 * On the dev machines' KVM (kvm_pvm) the usual cause is an instruction
 * its emulator cannot run (it emulates, among others, the first run of
 * kernel text the guest has just patched): "emulation failure" with the
 * instruction bytes.  Those bytes are what to look up next, so they are
 * printed from KVM's own report when it has them, else read from guest
 * memory at RIP.  Which instructions were met, and what the Linux guest's
 * command line does about each: ../guest/README.md.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "testvm.h"

static const char *
suberror_name(uint32_t suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure (an instruction KVM cannot emulate)";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "VM exit while delivering an event";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		return "unexpected VM exit reason";
	default:
		return "unknown suberror";
	}
}

/* Up to 15 bytes at CS:RIP through the guest's own page tables; returns the count. */
int
insn_bytes_at_rip(struct vcpu *v, const struct kvm_regs *r, const struct kvm_sregs *s,
    uint8_t *out)
{
	struct tvm_paging p;
	int n = 0;

	paging_from_sregs(s, &p);
	for (; n < 15; n++) {
		uint64_t gpa;
		int fault;

		if (paging_gla2gpa(v->vm, &p, s->cs.base + r->rip + n, PROT_EXEC,
		    &gpa, &fault) != 0 || fault || !vm_gpa_is_ram(v->vm, gpa, 1))
			break;
		out[n] = v->vm->mem[gpa];
	}
	return n;
}

void
diagnose_internal_error(struct vcpu *v, const struct kvm_regs *r,
    const struct kvm_sregs *s)
{
	const struct kvm_run *run = v->run;
	uint8_t insn[16];
	int n = 0;

	fprintf(stderr, "testvm %s: internal error %u: %s; data:", v->vm->name,
	    run->internal.suberror, suberror_name(run->internal.suberror));
	for (unsigned i = 0; i < run->internal.ndata && i < 16; i++)
		fprintf(stderr, " %#llx", (unsigned long long)run->internal.data[i]);
	fputc('\n', stderr);

	/* KVM's layout with the flag: data[0] flags, data[1] length, data[2..3] the bytes. */
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    run->internal.ndata >= 4 &&
	    (run->internal.data[0] & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		n = (int)run->internal.data[1];
		if (n > 16)
			n = 16;
		for (int i = 0; i < n; i++)
			insn[i] = (uint8_t)(run->internal.data[2 + i / 8] >> (8 * (i % 8)));
		fprintf(stderr, "testvm %s: instruction bytes (from KVM):", v->vm->name);
	} else {
		n = insn_bytes_at_rip(v, r, s, insn);
		fprintf(stderr, "testvm %s: bytes at rip (guest memory):", v->vm->name);
	}
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %02x", insn[i]);
	fputs(n == 0 ? " (unreadable)\n" : "\n", stderr);
}
