/*
 * Guest-linear to guest-physical translation for vm_gla2gpa_nofault.
 *
 * This is a walk of our own over guest RAM, not KVM_TRANSLATE: vmm.ko's
 * _vm_gla2gpa walks the tables described by the caller's struct
 * vm_guest_paging (cr3, cpu_mode, paging_mode, cpl), whatever mode the vCPU
 * is in, and KVM_TRANSLATE would ignore that argument.  The rules copied
 * from vmm.ko (check_only, so no accessed/dirty bits are set):
 *   - 64-bit cpu_mode: a non-canonical address is a fault;
 *   - FLAT: gpa = gla;
 *   - every level faults on !P, on a user (cpl 3) access to a supervisor
 *     entry, on a write (PROT_WRITE) to a read-only entry; no NX check;
 *   - PS is honoured at every non-leaf level (even without CR4.PSE in
 *     32-bit mode); a PS entry above 1 GiB is a fault;
 *   - PAE: the PDPTE only needs P;
 *   - a table outside guest RAM is an error (EFAULT), not a fault.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "testvm.h"

#define PG_V	0x001ULL
#define PG_RW	0x002ULL
#define PG_U	0x004ULL
#define PG_PS	0x080ULL
#define ADDR_MASK_64	0x000ffffffffff000ULL

struct walk {
	struct vm *vm;
	bool user, write;
};

static int
read_entry(struct vm *vm, uint64_t gpa, int size, uint64_t *val)
{
	if (!vm_gpa_is_ram(vm, gpa, size))
		return EFAULT;
	*val = 0;
	memcpy(val, vm->mem + gpa, size);
	return 0;
}

static bool
entry_denies(const struct walk *w, uint64_t pte)
{
	return !(pte & PG_V) || (w->user && !(pte & PG_U)) ||
	    (w->write && !(pte & PG_RW));
}

static bool
non_canonical(const struct tvm_paging *p, uint64_t gla)
{
	int bits = p->paging_mode == PAGING_MODE_64_LA57 ? 57 : 48;
	uint64_t top;

	if (p->cpu_mode != CPU_MODE_64BIT)
		return false;
	top = (uint64_t)((int64_t)(gla << (64 - bits)) >> (64 - bits));
	return top != gla;
}

static int
walk_32(struct walk *w, uint64_t cr3, uint64_t gla, uint64_t *gpa, int *fault)
{
	uint64_t table = cr3 & ~0xfffULL, pte = 0;
	int shift = 0;

	for (int level = 1; level >= 0; level--) {
		shift = 12 + 10 * level;
		int err = read_entry(w->vm, table + ((gla >> shift) & 0x3ff) * 4,
		    4, &pte);
		if (err)
			return err;
		if (entry_denies(w, pte)) {
			*fault = 1;
			return 0;
		}
		if (level > 0 && (pte & PG_PS))
			break;
		table = pte & ~0xfffULL;
	}
	uint64_t mask = (1ULL << shift) - 1;
	*gpa = ((pte & 0xffffffffULL) & ~mask) | (gla & mask);
	return 0;
}

/* PAE below the PDPTE and the 4/5-level long-mode walk share this loop. */
static int
walk_9bit(struct walk *w, uint64_t table, int levels, uint64_t gla,
    uint64_t *gpa, int *fault)
{
	uint64_t pte = 0;
	int shift = 0;

	for (int level = levels - 1; level >= 0; level--) {
		shift = 12 + 9 * level;
		int err = read_entry(w->vm,
		    (table & ADDR_MASK_64) + ((gla >> shift) & 0x1ff) * 8, 8, &pte);
		if (err)
			return err;
		if (entry_denies(w, pte)) {
			*fault = 1;
			return 0;
		}
		if (level > 0 && (pte & PG_PS)) {
			if (shift > 30) {	/* no pages above 1 GiB */
				*fault = 1;
				return 0;
			}
			break;
		}
		table = pte;
	}
	uint64_t mask = (1ULL << shift) - 1;
	*gpa = (pte & ADDR_MASK_64 & ~mask) | (gla & mask);
	return 0;
}

int
paging_gla2gpa(struct vm *vm, const struct tvm_paging *p, uint64_t gla,
    int prot, uint64_t *gpa, int *fault)
{
	struct walk w = { .vm = vm, .user = p->cpl == 3,
	    .write = (prot & PROT_WRITE) != 0 };
	uint64_t pdpte;
	int err;

	*fault = 0;
	if (non_canonical(p, gla)) {
		*fault = 1;
		return 0;
	}
	switch (p->paging_mode) {
	case PAGING_MODE_FLAT:
		*gpa = gla;
		return 0;
	case PAGING_MODE_32:
		return walk_32(&w, p->cr3, gla, gpa, fault);
	case PAGING_MODE_PAE:
		err = read_entry(vm, (p->cr3 & 0xffffffe0ULL) + ((gla >> 30) & 3) * 8,
		    8, &pdpte);
		if (err)
			return err;
		if (!(pdpte & PG_V)) {
			*fault = 1;
			return 0;
		}
		return walk_9bit(&w, pdpte, 2, gla, gpa, fault);
	case PAGING_MODE_64:
		return walk_9bit(&w, p->cr3, 4, gla, gpa, fault);
	case PAGING_MODE_64_LA57:
		return walk_9bit(&w, p->cr3, 5, gla, gpa, fault);
	default:
		return EINVAL;
	}
}

/* The paging state a vCPU runs with, by bhyve's gdb stub rules. */
void
paging_from_sregs(const struct kvm_sregs *s, struct tvm_paging *p)
{
	p->cr3 = s->cr3;
	p->cpl = s->cs.dpl;
	p->cpu_mode = (s->efer & 0x400) ? CPU_MODE_64BIT :
	    (s->cr0 & 1) ? CPU_MODE_PROTECTED : CPU_MODE_REAL;
	p->paging_mode = !(s->cr0 & 0x80000000) ? PAGING_MODE_FLAT :
	    !(s->cr4 & 0x20) ? PAGING_MODE_32 :
	    (s->efer & 0x100) ? ((s->cr4 & 0x1000) ? PAGING_MODE_64_LA57 :
	    PAGING_MODE_64) : PAGING_MODE_PAE;
}
