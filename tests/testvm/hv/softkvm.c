/*
 * A user-space "KVM" for machines without /dev/kvm: the KVM device, VM and
 * vCPU descriptors and the state ioctls the hypervisor uses, on one
 * Unicorn engine per vCPU (KVM_RUN itself is in softkvm_run.c).
 *
 * Chosen when opening /dev/kvm fails with ENOENT, or always with
 * TESTVM_CPU=soft (or soft-verbose, which names the library in use);
 * TESTVM_CPU=kvm never chooses it.  Each soft object has
 * a real descriptor of its own (an eventfd) so fds stay unique.
 *
 * Segment registers: KVM_SET_SREGS gives every segment's hidden part
 * (base, limit, access rights) and Unicorn's register API cannot set them
 * in 64-bit mode.  So the hidden state is written where QEMU keeps it: the
 * engine's CPU image (uc_context_save/restore copy the start of QEMU's
 * CPUX86State), at offsets checked against the register API when each
 * engine is made; then QEMU's own x86_update_hflags derives the mode bits,
 * exactly as QEMU does after KVM_GET_SREGS.
 */
#define _GNU_SOURCE
#define SOFTKVM_IMPL
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testvm.h"
#include "softkvm_int.h"

/* QEMU's CPUX86State (x86_64 target), the fields used here. */
#define ENV_REGS	0
#define ENV_HFLAGS	176
#define ENV_SEGS	184	/* ES CS SS DS FS GS, then LDT TR GDT IDT */
#define ENV_SEG_SIZE	24	/* u32 selector, u64 base, u32 limit, u32 flags */
#define ENV_CR		424	/* cr[9] */
#define ENV_EFER	592
#define SEG_ES 0
#define SEG_CS 1
#define SEG_SS 2
#define SEG_DS 3
#define SEG_FS 4
#define SEG_GS 5
#define SEG_LDT 6
#define SEG_TR 7
#define SEG_GDT 8
#define SEG_IDT 9

#define MSR_EFER	0xc0000080
#define MSR_APICBASE	0x1b	/* IA32_APIC_BASE; bit 10: x2APIC mode */

static struct sk_obj *objs[4096];
static int mode = -1;		/* -1 undecided, 0 KVM, 1 soft */

bool
sk_active(void)
{
	return mode == 1;
}

void
sk_require_kvm(const char *what)
{
	if (sk_active())
		die("%s needs KVM (/dev/kvm): the software CPU has no in-kernel "
		    "interrupt controller or timer to deliver its interrupts", what);
}

static struct sk_obj *
lookup(int fd, enum sk_kind kind)
{
	if (fd < 0 || fd >= (int)(sizeof(objs) / sizeof(objs[0])) ||
	    objs[fd] == NULL || objs[fd]->kind != kind)
		return NULL;
	return objs[fd];
}

static int
new_obj(struct sk_obj *o, enum sk_kind kind)
{
	int fd = eventfd(0, EFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fd >= (int)(sizeof(objs) / sizeof(objs[0]))) {
		close(fd);
		errno = EMFILE;
		return -1;
	}
	o->kind = kind;
	o->fd = fd;
	objs[fd] = o;
	return fd;
}

int
sk_open(const char *path, int flags, ...)
{
	static struct sk_obj sys;
	const char *cpu = getenv("TESTVM_CPU");
	bool force_soft = cpu != NULL && strncmp(cpu, "soft", 4) == 0;
	bool force_kvm = cpu != NULL && strcmp(cpu, "kvm") == 0;
	mode_t perm = 0;
	va_list ap;
	unsigned version;

	if (flags & O_CREAT) {
		va_start(ap, flags);
		perm = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (strcmp(path, "/dev/kvm") != 0)
		return open(path, flags, perm);
	if (!force_soft) {
		int fd = open(path, flags);

		if (fd >= 0 || errno != ENOENT || force_kvm) {
			mode = fd >= 0 ? 0 : mode;
			return fd;
		}
	}
	if (uc_load() < 0) {
		errno = ENOENT;
		return -1;
	}
	/*
	 * Quiet on success: the VM's stderr is the guest's console and the
	 * place of one-line failures.  TESTVM_CPU=soft-verbose says which
	 * library runs it.
	 */
	if (cpu != NULL && strcmp(cpu, "soft-verbose") == 0) {
		version = uc.version(NULL, NULL);
		fprintf(stderr, "testvm: software CPU: Unicorn %u.%u.%u, %s\n",
		    version >> 24, (version >> 16) & 0xff, (version >> 8) & 0xff,
		    uc.path);
	}
	mode = 1;
	return new_obj(&sys, SK_SYS);
}

void *
sk_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct sk_vcpu *v = (struct sk_vcpu *)lookup(fd, SK_VCPU);

	if (v == NULL)
		return mmap(addr, len, prot, flags, fd, off);
	if (off != 0 || len > SK_RUN_SIZE) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	return v->run;
}

/* ---- The engine's CPU image ------------------------------------------ */

static void
env_sync_out(struct sk_vcpu *v)
{
	uc.context_save(v->uc, v->ctx);
}

static int
env_sync_in(struct sk_vcpu *v)
{
	uc.update_hflags(v->env);
	if (uc.context_restore(v->uc, v->ctx) != 0)
		return -1;
	/* New paging or segment state: drop cached translations and code. */
	uc.ctl(v->uc, UC_CTL_TLB_FLUSH_W);
	return 0;
}

static uint64_t *
env_u64(struct sk_vcpu *v, size_t off)
{
	return (uint64_t *)(v->env + off);
}

/* Is the image where this file thinks it is?  Checked once per engine. */
static int
env_check(struct sk_vcpu *v)
{
	uint64_t rax = 0x1122334455667788ULL, cr3 = 0x5000, efer = 0;
	uc_x86_mmr gdtr = { .base = 0xabcd000, .limit = 0x27 };
	uc_x86_msr msr = { .rid = MSR_EFER };
	size_t size = uc.context_size(v->uc);

	if (uc.context_alloc(v->uc, &v->ctx) != 0)
		return -1;
	/* uc_context: a header whose first field is the image's size */
	v->env = (uint8_t *)v->ctx + size - *(size_t *)v->ctx;
	uc.reg_write(v->uc, UC_X86_REG_RAX, &rax);
	uc.reg_write(v->uc, UC_X86_REG_GDTR, &gdtr);
	uc.reg_write(v->uc, UC_X86_REG_CR3, &cr3);
	uc.reg_read(v->uc, UC_X86_REG_MSR, &msr);
	efer = msr.value;
	env_sync_out(v);
	if (*env_u64(v, ENV_REGS) != rax ||
	    *env_u64(v, ENV_SEGS + SEG_GDT * ENV_SEG_SIZE + 8) != gdtr.base ||
	    *env_u64(v, ENV_CR + 3 * 8) != cr3 || *env_u64(v, ENV_EFER) != efer)
		return -1;
	rax = cr3 = 0;
	gdtr.base = 0;
	uc.reg_write(v->uc, UC_X86_REG_RAX, &rax);
	uc.reg_write(v->uc, UC_X86_REG_GDTR, &gdtr);
	return 0;
}

static void
seg_get(struct sk_vcpu *v, int i, struct kvm_segment *k)
{
	uint8_t *s = v->env + ENV_SEGS + (size_t)i * ENV_SEG_SIZE;
	uint32_t sel, limit, flags;

	memcpy(&sel, s, 4);
	memcpy(&k->base, s + 8, 8);
	memcpy(&limit, s + 16, 4);
	memcpy(&flags, s + 20, 4);
	k->selector = (uint16_t)sel;
	k->limit = limit;
	k->type = (flags >> 8) & 15;
	k->s = (flags >> 12) & 1;
	k->dpl = (flags >> 13) & 3;
	k->present = (flags >> 15) & 1;
	k->avl = (flags >> 20) & 1;
	k->l = (flags >> 21) & 1;
	k->db = (flags >> 22) & 1;
	k->g = (flags >> 23) & 1;
	k->unusable = !k->present;
	k->padding = 0;
}

static void
seg_set(struct sk_vcpu *v, int i, const struct kvm_segment *k)
{
	uint8_t *s = v->env + ENV_SEGS + (size_t)i * ENV_SEG_SIZE;
	uint32_t sel = k->selector, limit = k->limit;
	uint32_t flags = (uint32_t)k->type << 8 | (uint32_t)k->s << 12 |
	    (uint32_t)k->dpl << 13 | (uint32_t)(k->present && !k->unusable) << 15 |
	    (uint32_t)k->avl << 20 | (uint32_t)k->l << 21 |
	    (uint32_t)k->db << 22 | (uint32_t)k->g << 23;

	memcpy(s, &sel, 4);
	memcpy(s + 8, &k->base, 8);
	memcpy(s + 16, &limit, 4);
	memcpy(s + 20, &flags, 4);
}

static void
dtable_get(struct sk_vcpu *v, int i, struct kvm_dtable *t)
{
	uint8_t *s = v->env + ENV_SEGS + (size_t)i * ENV_SEG_SIZE;
	uint32_t limit;

	memcpy(&t->base, s + 8, 8);
	memcpy(&limit, s + 16, 4);
	t->limit = (uint16_t)limit;
	memset(t->padding, 0, sizeof(t->padding));
}

static void
dtable_set(struct sk_vcpu *v, int i, const struct kvm_dtable *t)
{
	uint8_t *s = v->env + ENV_SEGS + (size_t)i * ENV_SEG_SIZE;
	uint32_t limit = t->limit;

	memcpy(s + 8, &t->base, 8);
	memcpy(s + 16, &limit, 4);
}

static int
get_sregs(struct sk_vcpu *v, struct kvm_sregs *s)
{
	struct kvm_segment *segs[] = { &s->es, &s->cs, &s->ss, &s->ds, &s->fs,
	    &s->gs, &s->ldt, &s->tr };

	memset(s, 0, sizeof(*s));
	env_sync_out(v);
	for (int i = 0; i <= SEG_TR; i++)
		seg_get(v, i, segs[i]);
	dtable_get(v, SEG_GDT, &s->gdt);
	dtable_get(v, SEG_IDT, &s->idt);
	s->cr0 = *env_u64(v, ENV_CR + 0 * 8);
	s->cr2 = *env_u64(v, ENV_CR + 2 * 8);
	s->cr3 = *env_u64(v, ENV_CR + 3 * 8);
	s->cr4 = *env_u64(v, ENV_CR + 4 * 8);
	s->cr8 = 0;
	s->efer = *env_u64(v, ENV_EFER);
	s->apic_base = v->apic_base;
	return 0;
}

static int
set_sregs(struct sk_vcpu *v, const struct kvm_sregs *s)
{
	const struct kvm_segment *segs[] = { &s->es, &s->cs, &s->ss, &s->ds,
	    &s->fs, &s->gs, &s->ldt, &s->tr };

	env_sync_out(v);
	for (int i = 0; i <= SEG_TR; i++)
		seg_set(v, i, segs[i]);
	dtable_set(v, SEG_GDT, &s->gdt);
	dtable_set(v, SEG_IDT, &s->idt);
	*env_u64(v, ENV_CR + 0 * 8) = s->cr0;
	*env_u64(v, ENV_CR + 2 * 8) = s->cr2;
	*env_u64(v, ENV_CR + 3 * 8) = s->cr3;
	*env_u64(v, ENV_CR + 4 * 8) = s->cr4;
	*env_u64(v, ENV_EFER) = s->efer;
	v->apic_base = s->apic_base;
	v->halted = false;
	return env_sync_in(v);
}

/* ---- General registers, MSRs, debug registers ------------------------ */

static const int gpr_ids[] = {
	UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX,
	UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_RSP, UC_X86_REG_RBP,
};

/* struct kvm_regs: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags */
static int
regs_access(struct sk_vcpu *v, struct kvm_regs *r, bool write)
{
	__u64 *slot = &r->rax;
	int err = 0;

	for (int i = 0; i < 18; i++) {
		int id = i < 8 ? gpr_ids[i] : i < 16 ? UC_X86_REG_R8 + (i - 8) :
		    i == 16 ? UC_X86_REG_RIP : UC_X86_REG_RFLAGS;

		err |= write ? uc.reg_write(v->uc, id, &slot[i]) :
		    uc.reg_read(v->uc, id, &slot[i]);
	}
	if (write) {
		v->halted = false;
		v->io.replay = false;	/* a new instruction, whatever RIP says */
	}
	return err ? -1 : 0;
}

static int
msrs_access(struct sk_vcpu *v, struct kvm_msrs *m, bool write)
{
	unsigned n;

	for (n = 0; n < m->nmsrs; n++) {
		uc_x86_msr msr = { .rid = m->entries[n].index,
		    .value = m->entries[n].data };

		if (msr.rid == MSR_APICBASE) {
			/* The engine has no local APIC: the base lives here. */
			if (write)
				v->apic_base = msr.value;
			else
				m->entries[n].data = v->apic_base;
			continue;
		}
		if ((write ? uc.reg_write(v->uc, UC_X86_REG_MSR, &msr) :
		    uc.reg_read(v->uc, UC_X86_REG_MSR, &msr)) != 0)
			break;
		if (!write)
			m->entries[n].data = msr.value;
	}
	return (int)n;	/* KVM: the number of MSRs done */
}

static int
debugregs_access(struct sk_vcpu *v, struct kvm_debugregs *d, bool write)
{
	int err = 0;

	if (!write)
		memset(d, 0, sizeof(*d));
	for (int i = 0; i < 4; i++)
		err |= write ? uc.reg_write(v->uc, UC_X86_REG_DR0 + i, &d->db[i]) :
		    uc.reg_read(v->uc, UC_X86_REG_DR0 + i, &d->db[i]);
	err |= write ? uc.reg_write(v->uc, UC_X86_REG_DR6, &d->dr6) :
	    uc.reg_read(v->uc, UC_X86_REG_DR6, &d->dr6);
	err |= write ? uc.reg_write(v->uc, UC_X86_REG_DR7, &d->dr7) :
	    uc.reg_read(v->uc, UC_X86_REG_DR7, &d->dr7);
	return err ? -1 : 0;
}

/* ---- Local APIC registers (what vm_readwrite_kernemu_device reads) ---- */

static void
lapic_reset(struct sk_vcpu *v)
{
	uint32_t regs[][2] = {
		{ 0x20, (uint32_t)v->id << 24 },	/* ID */
		{ 0x30, 0x00050014 },			/* version: 6 LVTs */
		{ 0xd0, 0 },				/* LDR */
		{ 0xe0, 0xffffffff },			/* DFR: flat */
		{ 0xf0, 0x000000ff },			/* SVR: spurious 0xff, disabled */
		{ 0x320, 0x10000 }, { 0x330, 0x10000 }, { 0x340, 0x10000 },
		{ 0x350, 0x10000 }, { 0x360, 0x10000 }, { 0x370, 0x10000 },
	};

	memset(&v->lapic, 0, sizeof(v->lapic));
	for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		memcpy(&v->lapic.regs[regs[i][0]], &regs[i][1], 4);
	v->apic_base = 0xfee00000ULL | 0x800 | (v->id == 0 ? 0x100 : 0);
}

/* ---- Objects ---------------------------------------------------------- */

/* x86's (and KVM's) reset state: real mode at f000:fff0. */
static void
reset_state(struct sk_vcpu *v)
{
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = 0xfff0, .rflags = 0x2 };
	struct kvm_segment data = { .limit = 0xffff, .type = 0x3, .present = 1,
	    .s = 1 };

	get_sregs(v, &s);
	s.cs = data;
	s.cs.selector = 0xf000;
	s.cs.base = 0xffff0000;
	s.cs.type = 0xb;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
	s.tr = (struct kvm_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
	s.gdt = (struct kvm_dtable){ .limit = 0xffff };
	s.idt = (struct kvm_dtable){ .limit = 0xffff };
	s.cr0 = 0x60000010;
	s.cr2 = s.cr3 = s.cr4 = s.efer = 0;
	set_sregs(v, &s);
	regs_access(v, &r, true);
}

static void
map_slot(struct sk_vcpu *v, const struct kvm_userspace_memory_region *r)
{
	/* KVM_MEM_READONLY: a write is an MMIO exit (hook_unmapped). */
	uint32_t prot = r->flags & KVM_MEM_READONLY ? UC_PROT_READ | UC_PROT_EXEC :
	    UC_PROT_ALL;
	uc_err e = uc.mem_map_ptr(v->uc, r->guest_phys_addr, r->memory_size,
	    prot, (void *)(uintptr_t)r->userspace_addr);

	if (e != 0)
		die("software CPU: mapping guest RAM at %#llx: %s",
		    (unsigned long long)r->guest_phys_addr, uc.strerror(e));
}

/*
 * The MMIO hole: from the end of the RAM that starts at 0 up to 4 GiB,
 * less the slots inside it (the boot ROM just below 4 GiB): Unicorn's
 * regions may not overlap, so each gap between them is a region of its own.
 */
static void
map_hole(struct sk_vcpu *v)
{
	struct sk_vm *vm = v->vm;
	uint64_t low = 0, end = 1ULL << 32;

	for (int i = 0; i < vm->nslots; i++)
		if (vm->slot[i].guest_phys_addr == 0)
			low = vm->slot[i].memory_size;
	while (low < end) {
		uint64_t gap_end = end, next = end;

		/* The lowest slot at or above `low` ends this gap. */
		for (int i = 0; i < vm->nslots; i++) {
			const struct kvm_userspace_memory_region *r = &vm->slot[i];
			uint64_t top = r->guest_phys_addr + r->memory_size;

			if (r->guest_phys_addr <= low && top > low) {
				gap_end = low;	/* inside a slot: skip it */
				next = top;
				break;
			}
			if (r->guest_phys_addr > low && r->guest_phys_addr < gap_end)
				gap_end = next = r->guest_phys_addr;
		}
		if (gap_end > low)
			sk_map_mmio(v, low, gap_end - low);
		low = next;
	}
}

static int
create_vcpu(struct sk_vm *vm, int id)
{
	struct sk_vcpu *v;
	uc_err e;

	if (id < 0 || id >= SK_MAXCPU || vm->vcpu[id] != NULL) {
		errno = EINVAL;
		return -1;
	}
	v = calloc(1, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->run = mmap(NULL, SK_RUN_SIZE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->run == MAP_FAILED)
		die("software CPU: %s", strerror(errno));
	if ((e = uc.open(UC_ARCH_X86, UC_MODE_64, &v->uc)) != 0)
		die("software CPU: uc_open: %s", uc.strerror(e));
	/*
	 * Before anything else makes the engine set itself up: its code
	 * buffer, 1 GiB of address space by default, times up to 128 vCPUs.
	 * The demo guest's code is a few KiB and translations are dropped
	 * every REFRESH_NS anyway (softkvm_run.c).
	 */
	if ((e = uc.ctl(v->uc, UC_CTL_TCG_BUFFER_SIZE_W, SK_TCG_BUFFER)) != 0)
		die("software CPU: code buffer size: %s", uc.strerror(e));
	if (env_check(v) < 0)
		die("software CPU: %s is not a Unicorn 2.1 whose CPU state "
		    "this hypervisor knows", uc.path);
	for (int i = 0; i < vm->nslots; i++)
		map_slot(v, &vm->slot[i]);
	map_hole(v);
	lapic_reset(v);
	reset_state(v);
	/* KVM: the BSP runs, APs wait for INIT/SIPI. */
	v->mp_state = id == 0 ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED;
	vm->vcpu[id] = v;
	if (sk_vcpu_start(v) < 0)
		die("software CPU: emulation thread: %s", strerror(errno));
	return new_obj(&v->obj, SK_VCPU);
}

static int
set_memory(struct sk_vm *vm, const struct kvm_userspace_memory_region *r)
{
	if (r->memory_size == 0 || vm->nslots >= SK_MAXSLOTS) {
		errno = EINVAL;	/* deleting or moving slots: not needed here */
		return -1;
	}
	vm->slot[vm->nslots++] = *r;
	for (int i = 0; i < SK_MAXCPU; i++)
		if (vm->vcpu[i] != NULL)
			map_slot(vm->vcpu[i], r);
	return 0;
}

static int
sys_ioctl(unsigned long req, void *arg)
{
	struct sk_vm *vm;

	switch (req) {
	case KVM_GET_API_VERSION:
		return KVM_API_VERSION;
	case KVM_CHECK_EXTENSION:
		return 0;
	case KVM_GET_VCPU_MMAP_SIZE:
		return SK_RUN_SIZE;
	case KVM_GET_SUPPORTED_CPUID:
		/* Nothing to adjust: the guest sees Unicorn's own CPU model. */
		((struct kvm_cpuid2 *)arg)->nent = 0;
		return 0;
	case KVM_CREATE_VM:
		vm = calloc(1, sizeof(*vm));
		return new_obj(&vm->obj, SK_VM);
	default:
		errno = ENOTTY;
		return -1;
	}
}

static int
vm_ioctl(struct sk_vm *vm, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_SET_TSS_ADDR:
	case KVM_SET_IDENTITY_MAP_ADDR:
	case KVM_CREATE_IRQCHIP:
		return 0;	/* nothing to set up: no real mode tricks, no IRQs */
	case KVM_CREATE_PIT2:
		sk_require_kvm("the in-kernel PIT");
		return -1;
	case KVM_SET_USER_MEMORY_REGION:
		return set_memory(vm, arg);
	case KVM_CREATE_VCPU:
		return create_vcpu(vm, (int)(uintptr_t)arg);
	default:
		errno = ENOTTY;
		return -1;
	}
}

static int
vcpu_ioctl(struct sk_vcpu *v, unsigned long req, void *arg)
{
	switch (req) {
	case KVM_RUN:
		return sk_run(v);
	case KVM_GET_REGS:
		return regs_access(v, arg, false);
	case KVM_SET_REGS:
		return regs_access(v, arg, true);
	case KVM_GET_SREGS:
		return get_sregs(v, arg);
	case KVM_SET_SREGS:
		return set_sregs(v, arg);
	case KVM_GET_MSRS:
		return msrs_access(v, arg, false);
	case KVM_SET_MSRS:
		return msrs_access(v, arg, true);
	case KVM_GET_DEBUGREGS:
		return debugregs_access(v, arg, false);
	case KVM_SET_DEBUGREGS:
		return debugregs_access(v, arg, true);
	case KVM_GET_MP_STATE:
		((struct kvm_mp_state *)arg)->mp_state =
		    v->halted ? KVM_MP_STATE_HALTED : v->mp_state;
		return 0;
	case KVM_SET_MP_STATE:
		v->mp_state = ((struct kvm_mp_state *)arg)->mp_state;
		v->halted = false;
		return 0;
	case KVM_GET_VCPU_EVENTS:
		*(struct kvm_vcpu_events *)arg = v->events;
		return 0;
	case KVM_SET_VCPU_EVENTS:
		/* Kept for reading back (the interrupt shadow); nothing to inject. */
		v->events = *(struct kvm_vcpu_events *)arg;
		return 0;
	case KVM_SET_CPUID2:
		return 0;
	case KVM_SET_GUEST_DEBUG:
		v->guest_debug = ((struct kvm_guest_debug *)arg)->control;
		return 0;
	case KVM_GET_LAPIC:
		*(struct kvm_lapic_state *)arg = v->lapic;
		return 0;
	case KVM_SET_LAPIC:
		v->lapic = *(struct kvm_lapic_state *)arg;
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

int
sk_ioctl(int fd, unsigned long req, ...)
{
	struct sk_obj *o;
	void *arg;
	va_list ap;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if ((o = lookup(fd, SK_SYS)) != NULL)
		return sys_ioctl(req, arg);
	if ((o = lookup(fd, SK_VM)) != NULL)
		return vm_ioctl((struct sk_vm *)o, req, arg);
	if ((o = lookup(fd, SK_VCPU)) != NULL)
		return vcpu_ioctl((struct sk_vcpu *)o, req, arg);
	return ioctl(fd, req, arg);
}
