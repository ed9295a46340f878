/*
 * vm_reg_name <-> KVM register state.
 *
 * Semantics follow vmm.ko's vm_get_register/vm_set_register: a segment
 * register number reads or writes only the selector (bases, limits and
 * access rights come from vm_get_seg_desc), GDTR/IDTR have no selector and
 * give EINVAL, and numbers past the kernel's VM_REG_LAST give EINVAL
 * (--vmm-version picks 44 for 13/14.x or 48 for 15/main).  Callers hold
 * the vCPU frozen.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "testvm.h"

#define MSR_KGSBASE	0xc0000102

static int
reg_limit(const struct vm *vm)
{
	return vm->vmm_version >= 15 ? VM_REG_GUEST_TPR : VM_REG_GUEST_ENTRY_INST_LENGTH;
}

/* Where a GPR lives in struct kvm_regs, or NULL. */
static __u64 *
gpr_slot(struct kvm_regs *r, int reg)
{
	switch (reg) {
	case VM_REG_GUEST_RAX: return &r->rax;
	case VM_REG_GUEST_RBX: return &r->rbx;
	case VM_REG_GUEST_RCX: return &r->rcx;
	case VM_REG_GUEST_RDX: return &r->rdx;
	case VM_REG_GUEST_RSI: return &r->rsi;
	case VM_REG_GUEST_RDI: return &r->rdi;
	case VM_REG_GUEST_RBP: return &r->rbp;
	case VM_REG_GUEST_R8:  return &r->r8;
	case VM_REG_GUEST_R9:  return &r->r9;
	case VM_REG_GUEST_R10: return &r->r10;
	case VM_REG_GUEST_R11: return &r->r11;
	case VM_REG_GUEST_R12: return &r->r12;
	case VM_REG_GUEST_R13: return &r->r13;
	case VM_REG_GUEST_R14: return &r->r14;
	case VM_REG_GUEST_R15: return &r->r15;
	case VM_REG_GUEST_RSP: return &r->rsp;
	case VM_REG_GUEST_RIP: return &r->rip;
	case VM_REG_GUEST_RFLAGS: return &r->rflags;
	default: return NULL;
	}
}

static struct kvm_segment *
seg_slot(struct kvm_sregs *s, int reg)
{
	switch (reg) {
	case VM_REG_GUEST_ES: return &s->es;
	case VM_REG_GUEST_CS: return &s->cs;
	case VM_REG_GUEST_SS: return &s->ss;
	case VM_REG_GUEST_DS: return &s->ds;
	case VM_REG_GUEST_FS: return &s->fs;
	case VM_REG_GUEST_GS: return &s->gs;
	case VM_REG_GUEST_LDTR: return &s->ldt;
	case VM_REG_GUEST_TR: return &s->tr;
	default: return NULL;
	}
}

/* Control registers, EFER and the 15/main base registers live in sregs. */
static __u64 *
sreg_slot(struct kvm_sregs *s, int reg)
{
	switch (reg) {
	case VM_REG_GUEST_CR0: return &s->cr0;
	case VM_REG_GUEST_CR2: return &s->cr2;
	case VM_REG_GUEST_CR3: return &s->cr3;
	case VM_REG_GUEST_CR4: return &s->cr4;
	case VM_REG_GUEST_EFER: return &s->efer;
	case VM_REG_GUEST_FS_BASE: return &s->fs.base;
	case VM_REG_GUEST_GS_BASE: return &s->gs.base;
	case VM_REG_GUEST_TPR: return &s->cr8;
	default: return NULL;
	}
}

static __u64 *
dreg_slot(struct kvm_debugregs *d, int reg)
{
	switch (reg) {
	case VM_REG_GUEST_DR0: return &d->db[0];
	case VM_REG_GUEST_DR1: return &d->db[1];
	case VM_REG_GUEST_DR2: return &d->db[2];
	case VM_REG_GUEST_DR3: return &d->db[3];
	case VM_REG_GUEST_DR6: return &d->dr6;
	case VM_REG_GUEST_DR7: return &d->dr7;
	default: return NULL;
	}
}

static int
msr_access(struct vcpu *v, uint32_t index, uint64_t *val, bool write)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = index, .e.data = write ? *val : 0 };

	if (ioctl(v->fd, write ? KVM_SET_MSRS : KVM_GET_MSRS, &m) != 1)
		return EIO;
	if (!write)
		*val = m.e.data;
	return 0;
}

/* One read-modify-write of whichever KVM state block holds `reg`. */
static int
reg_access(struct vcpu *v, int reg, uint64_t *val, bool write)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_debugregs d;
	struct kvm_vcpu_events ev;
	__u64 *slot;

	if (reg < 0 || reg > reg_limit(v->vm))
		return EINVAL;
	if (reg == VM_REG_GUEST_KGS_BASE)
		return msr_access(v, MSR_KGSBASE, val, write);
	if (reg == VM_REG_GUEST_INTR_SHADOW) {
		if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
			return EIO;
		if (!write) {
			*val = ev.interrupt.shadow != 0;
			return 0;
		}
		ev.interrupt.shadow = *val ? KVM_X86_SHADOW_INT_MOV_SS : 0;
		ev.flags = 0;
		return ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0 ? EIO : 0;
	}
	if (reg == VM_REG_GUEST_ENTRY_INST_LENGTH)
		return write ? 0 : EINVAL;	/* write-only in vmm.ko too */

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		return EIO;
	if ((slot = gpr_slot(&r, reg)) != NULL) {
		if (!write) {
			*val = *slot;
			return 0;
		}
		*slot = *val;
		return ioctl(v->fd, KVM_SET_REGS, &r) < 0 ? EIO : 0;
	}

	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return EIO;
	struct kvm_segment *seg = seg_slot(&s, reg);
	if (seg != NULL || (slot = sreg_slot(&s, reg)) != NULL) {
		if (!write) {
			*val = seg != NULL ? seg->selector : *slot;
			return 0;
		}
		if (seg != NULL)
			seg->selector = (uint16_t)*val;
		else
			*slot = *val;
		return ioctl(v->fd, KVM_SET_SREGS, &s) < 0 ? EINVAL : 0;
	}

	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &d) < 0)
		return EIO;
	if ((slot = dreg_slot(&d, reg)) != NULL) {
		if (!write) {
			*val = *slot;
			return 0;
		}
		*slot = *val;
		return ioctl(v->fd, KVM_SET_DEBUGREGS, &d) < 0 ? EINVAL : 0;
	}

	/* GDTR, IDTR (no selector) and PDPTE0-3 (not exposed by KVM on SVM). */
	return EINVAL;
}

int
regs_get(struct vcpu *v, int reg, uint64_t *val)
{
	return reg_access(v, reg, val, false);
}

int
regs_set(struct vcpu *v, int reg, uint64_t val)
{
	return reg_access(v, reg, &val, true);
}

/* VMX access-rights format, which vmm.ko uses on Intel and AMD alike. */
static uint32_t
vmx_access(const struct kvm_segment *k)
{
	return k->type | (uint32_t)k->s << 4 | (uint32_t)k->dpl << 5 |
	    (uint32_t)k->present << 7 | (uint32_t)k->avl << 12 |
	    (uint32_t)k->l << 13 | (uint32_t)k->db << 14 |
	    (uint32_t)k->g << 15 | (uint32_t)(k->unusable || !k->present) << 16;
}

int
regs_get_segdesc(struct vcpu *v, int reg, struct seg_desc *desc)
{
	struct kvm_sregs s;
	struct kvm_segment *seg;

	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return EIO;
	if (reg == VM_REG_GUEST_GDTR || reg == VM_REG_GUEST_IDTR) {
		struct kvm_dtable *t = reg == VM_REG_GUEST_GDTR ? &s.gdt : &s.idt;

		desc->base = t->base;
		desc->limit = t->limit;
		desc->access = 0;
		return 0;
	}
	if ((seg = seg_slot(&s, reg)) == NULL)
		return EINVAL;
	desc->base = seg->base;
	desc->limit = seg->limit;
	desc->access = vmx_access(seg);
	return 0;
}

static void
realmode_seg(struct kvm_segment *seg, uint16_t sel, uint8_t type)
{
	memset(seg, 0, sizeof(*seg));
	seg->selector = sel;
	seg->base = (uint64_t)sel << 4;
	seg->limit = 0xffff;
	seg->type = type;
	seg->present = 1;
	seg->s = 1;
}

/*
 * bhyve's spinup_ap: vcpu_reset(), then real mode with CS = rip >> 4 and
 * IP = 0, as a SIPI with vector rip >> 12 would leave it.
 */
int
regs_set_realmode_start(struct vcpu *v, uint64_t rip)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rflags = 0x2 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return EIO;
	realmode_seg(&s.cs, (uint16_t)(rip >> 4), 0xb);
	realmode_seg(&s.ds, 0, 0x3);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.ldt.selector = 0;
	s.ldt.base = 0;
	s.ldt.limit = 0xffff;
	s.ldt.type = 0x2;
	s.ldt.present = 1;
	s.tr.selector = 0;
	s.tr.base = 0;
	s.tr.limit = 0xffff;
	s.tr.type = 0xb;
	s.tr.present = 1;
	s.gdt.base = s.idt.base = 0;
	s.gdt.limit = s.idt.limit = 0xffff;
	s.cr0 = 0x60000010;
	s.cr2 = s.cr3 = s.cr4 = 0;
	s.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return EIO;
	return 0;
}
