/*
 * KVM_RUN on the software CPU, with KVM's exit semantics.
 *
 * Each vCPU's engine runs on an emulation thread of its own; KVM_RUN hands
 * it control and waits for an exit:
 *  - OUT, IN and MMIO accesses outside RAM stop the guest in the middle of
 *    the instruction: the hook writes the exit into the run page, and
 *    waits until the next KVM_RUN, which is when the hypervisor has
 *    handled it (for IN and MMIO reads: put the data in the run page) --
 *    KVM's complete_userspace_io;
 *  - the local APIC page is served here, like KVM's in-kernel APIC;
 *  - HLT does not leave KVM_RUN (with an in-kernel irqchip KVM blocks
 *    there too); only a kick does;
 *  - a kick (immediate_exit set, then a signal) stops the engine at an
 *    instruction boundary and KVM_RUN fails with EINTR;
 *  - int3 under KVM_GUESTDBG_USE_SW_BP and each step under
 *    KVM_GUESTDBG_SINGLESTEP are KVM_EXIT_DEBUG;
 *  - any other exception is a shutdown: the engine cannot deliver it.
 * The waits are 1 ms long so a kick is seen without a signal.
 */
#define _GNU_SOURCE
#define SOFTKVM_IMPL
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testvm.h"
#include "softkvm_int.h"

#define LAPIC_GPA	0xfee00000ULL
#define APICBASE_X2APIC	(1ULL << 10)
#define NEVER		(~0ULL)		/* an `until` no fetch reaches */

/*
 * Another process (a debugger writing an int3, say) can write guest code,
 * and the engine keeps its translations of code until told: it cannot see
 * writes that do not go through it.  So translated code is dropped every
 * 50 ms of running (the engine is stopped and restarted, unseen by the
 * hypervisor): a write to guest code takes effect within 50 ms instead of
 * at once.  Not more often: a stop has two costs.  A kick lands at the
 * start of a block being translated, so fresh translations make stops land
 * more often on a block's first instruction than they do on a CPU.  And
 * Unicorn checks for a stop after every memory access, restarting the
 * instruction that made it: one that reads and writes the same memory
 * (inc, add to memory) then takes effect twice.  MMIO is safe from that
 * (replayed, see mmio_exit); plain RAM is not.
 */
#define REFRESH_NS	(50 * 1000 * 1000LL)

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
wait_1ms(struct sk_vcpu *v)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 1000 * 1000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&v->cond, &v->lock, &ts);
}

/* From a hook: post the exit in `run`, wait for the hypervisor's answer. */
static void
post_and_wait(struct sk_vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->posted = true;
	v->io_wait = true;
	pthread_cond_broadcast(&v->cond);
	while (v->io_wait)
		pthread_cond_wait(&v->cond, &v->lock);
	pthread_mutex_unlock(&v->lock);
}

static void
pio_exit(struct sk_vcpu *v, uint32_t port, int size, bool out, uint32_t val)
{
	struct kvm_run *run = v->run;

	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = out ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
	run->io.size = (uint8_t)size;
	run->io.port = (uint16_t)port;
	run->io.count = 1;
	run->io.data_offset = SK_PIO_OFFSET;
	memcpy((uint8_t *)run + SK_PIO_OFFSET, &val, 4);
	post_and_wait(v);
}

static uint32_t
hook_in(uc_engine *e, uint32_t port, int size, void *arg)
{
	struct sk_vcpu *v = arg;
	uint32_t val = 0;

	pio_exit(v, port, size, false, 0);
	memcpy(&val, (uint8_t *)v->run + SK_PIO_OFFSET, (size_t)size);
	return val;
}

static void
hook_out(uc_engine *e, uint32_t port, int size, uint32_t value, void *arg)
{
	pio_exit(arg, port, size, true, value);
}

/*
 * MMIO.  Unicorn cuts an access wider than 4 bytes into 4-byte calls of
 * the region's callbacks, and a stop request can make it restart the
 * instruction after the access (it checks for one after every memory
 * access).  KVM makes one exit per access, once.  So the exit is made
 * from a memory hook bounded to the hole, which sees the whole access with
 * the instruction's address in RIP; the region's callbacks only hand out
 * the data; and an access that a stop cut short is replayed, not repeated,
 * when its instruction runs again.
 */
static uint64_t
mmio_exit(struct sk_vcpu *v, uint64_t gpa, unsigned size, bool write,
    uint64_t val)
{
	struct kvm_run *run = v->run;

	if (gpa >= LAPIC_GPA && gpa < LAPIC_GPA + 0x1000 &&
	    !(v->apic_base & APICBASE_X2APIC)) {
		/*
		 * The in-kernel local APIC: registers only, no side effects.
		 * In x2APIC mode KVM does not decode the page either.
		 */
		uint64_t off = gpa - LAPIC_GPA;

		if (off + size > sizeof(v->lapic.regs))
			return 0;	/* past the last register: reads 0 */
		if (write)
			memcpy(&v->lapic.regs[off], &val, size);
		else
			memcpy(&val, &v->lapic.regs[off], size);
		return val;
	}
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = gpa;
	run->mmio.len = size;
	run->mmio.is_write = write;
	memset(run->mmio.data, 0, sizeof(run->mmio.data));
	if (write)
		memcpy(run->mmio.data, &val, size);
	post_and_wait(v);
	val = 0;
	if (!write)
		memcpy(&val, run->mmio.data, size);
	return val;
}

static void
hook_mmio(uc_engine *e, int type, uint64_t gpa, int size, int64_t value,
    void *arg)
{
	struct sk_vcpu *v = arg;
	bool write = type == UC_MEM_WRITE;
	uint64_t rip;

	uc.reg_read(e, UC_X86_REG_RIP, &rip);
	if (v->io.replay && v->io.gpa == gpa && v->io.size == size &&
	    v->io.write == write && v->io.rip == rip) {
		v->io.replay = false;	/* the device saw it already */
		return;
	}
	v->io.replay = false;
	v->io.gpa = gpa;
	v->io.size = size;
	v->io.write = write;
	v->io.rip = rip;
	v->io.value = mmio_exit(v, gpa, (unsigned)size, write, (uint64_t)value);
}

struct hole {
	struct sk_vcpu *v;
	uint64_t base;
};

static uint64_t
hook_mmio_read(uc_engine *e, uint64_t off, unsigned size, void *arg)
{
	struct hole *h = arg;
	uint64_t gpa = h->base + off, val = 0;

	if (gpa >= h->v->io.gpa && gpa + size <= h->v->io.gpa + 8)
		memcpy(&val, (uint8_t *)&h->v->io.value + (gpa - h->v->io.gpa), size);
	return val;
}

static void
hook_mmio_write(uc_engine *e, uint64_t off, unsigned size, uint64_t value,
    void *arg)
{
	/* hook_mmio has passed the whole write on */
}

void
sk_map_mmio(struct sk_vcpu *v, uint64_t gpa, uint64_t len)
{
	struct hole *h = calloc(1, sizeof(*h));
	uc_hook hh;
	uc_err e;

	h->v = v;
	h->base = gpa;
	e = uc.mmio_map(v->uc, gpa, len, hook_mmio_read, h, hook_mmio_write, h);
	if (e == 0)
		e = uc.hook_add(v->uc, &hh, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE,
		    (void *)hook_mmio, v, gpa, gpa + len - 1);
	if (e != 0)
		die("software CPU: MMIO at %#llx: %s", (unsigned long long)gpa,
		    uc.strerror(e));
}

/* Exceptions and int3: Unicorn hands them here instead of the guest's IDT. */
static void
hook_intr(uc_engine *e, uint32_t intno, void *arg)
{
	struct sk_vcpu *v = arg;

	v->exception = intno;
	v->hook_exit = intno == 3 && (v->guest_debug & KVM_GUESTDBG_USE_SW_BP) ?
	    HX_BREAKPOINT : HX_EXCEPTION;
	uc.emu_stop(e);
}

/*
 * Outside RAM and the hole, or a write to a read-only slot (KVM makes that
 * an MMIO exit too): bhyve's "unhandled memory access".
 */
static bool
hook_unmapped(uc_engine *e, int type, uint64_t addr, int size, int64_t value,
    void *arg)
{
	struct sk_vcpu *v = arg;

	v->hook_exit = HX_UNMAPPED;
	v->unmapped_gpa = addr;
	v->run->mmio.len = (uint32_t)size;
	v->run->mmio.is_write = type == UC_MEM_WRITE_UNMAPPED ||
	    type == UC_MEM_WRITE_PROT;
	return false;
}

static uint64_t
linear_rip(struct sk_vcpu *v)
{
	struct kvm_sregs s;
	struct kvm_regs r;

	sk_ioctl(v->obj.fd, KVM_GET_SREGS, &s);
	sk_ioctl(v->obj.fd, KVM_GET_REGS, &r);
	return s.cs.base + r.rip;
}

static void
debug_exit(struct sk_vcpu *v, uint32_t exception)
{
	struct kvm_run *run = v->run;

	run->exit_reason = KVM_EXIT_DEBUG;
	memset(&run->debug, 0, sizeof(run->debug));
	run->debug.arch.exception = exception;
	run->debug.arch.pc = linear_rip(v);
	run->debug.arch.dr6 = exception == 1 ? 0xffff4ff0 : 0xffff0ff0;
}

/* uc_emu_start has returned: turn why into KVM's exit.  Holds the lock. */
static void
finish(struct sk_vcpu *v, uc_err err, bool step)
{
	struct kvm_run *run = v->run;
	uint64_t rip;

	v->intr = false;
	switch (v->hook_exit) {
	case HX_BREAKPOINT:
		/* Unicorn resumes after the int3; KVM stops on it. */
		uc.reg_read(v->uc, UC_X86_REG_RIP, &rip);
		rip--;
		uc.reg_write(v->uc, UC_X86_REG_RIP, &rip);
		debug_exit(v, 3);
		return;
	case HX_EXCEPTION:
		uc.reg_read(v->uc, UC_X86_REG_RIP, &rip);
		fprintf(stderr, "testvm: vCPU %d: exception %u at rip %#llx: the "
		    "software CPU cannot deliver exceptions to the guest\n", v->id,
		    v->exception, (unsigned long long)rip);
		run->exit_reason = KVM_EXIT_SHUTDOWN;
		return;
	case HX_UNMAPPED:
		run->exit_reason = KVM_EXIT_MMIO;
		run->mmio.phys_addr = v->unmapped_gpa;
		return;
	case HX_NONE:
		break;
	}
	if (v->stopping) {
		v->intr = true;
		return;
	}
	if (err != 0) {
		run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
		run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
		run->internal.ndata = 1;
		run->internal.data[0] = (uint64_t)err;
		fprintf(stderr, "testvm: vCPU %d: software CPU: %s\n", v->id,
		    uc.strerror(err));
		return;
	}
	if (step) {
		debug_exit(v, 1);
		return;
	}
	v->halted = true;	/* HLT: stays in KVM_RUN until a kick */
}

/*
 * A kick stopped the engine inside the instruction of an MMIO access that
 * has had its answer (immediate_exit on the KVM_RUN that gave it: the hv
 * completing an exit for a vCPU it parks).  KVM's complete_userspace_io
 * finishes that instruction before KVM_RUN returns EINTR, so a debugger
 * reading the parked vCPU sees RIP past it and the loaded register set;
 * Unicorn restarted it instead.  So run it once more, the access replayed,
 * with no stop asked meanwhile (`completing`).  Holds the lock.
 */
static uc_err
complete_access(struct sk_vcpu *v, uint64_t rip)
{
	uc_err err;

	v->completing = true;
	pthread_mutex_unlock(&v->lock);
	/*
	 * Unicorn counts instructions with a code hook that only code
	 * translated from now on calls: drop the old translations, or the
	 * count is never reached.  The timeout (in us) is a backstop: it
	 * leaves the instruction restarted, as before.
	 */
	uc.ctl(v->uc, UC_CTL_TB_FLUSH_W);
	err = uc.emu_start(v->uc, rip, NEVER, 500 * 1000, 1);
	pthread_mutex_lock(&v->lock);
	v->completing = false;
	uc.reg_read(v->uc, UC_X86_REG_RIP, &rip);
	v->io.replay = v->io.size != 0 && rip == v->io.rip;
	return err;
}

static void *
emu_thread(void *arg)
{
	struct sk_vcpu *v = arg;

	pthread_mutex_lock(&v->lock);
	for (;;) {
		while (!v->go)
			pthread_cond_wait(&v->cond, &v->lock);
		v->go = false;
		if (v->stopping) {
			/* kicked before it started */
			v->intr = true;
			v->posted = true;
			pthread_cond_broadcast(&v->cond);
			continue;
		}
		bool step = (v->guest_debug & KVM_GUESTDBG_SINGLESTEP) != 0;
		bool flush = now_ns() - v->flushed_ns >= REFRESH_NS;
		uint64_t rip;
		v->busy = true;
		v->hook_exit = HX_NONE;
		v->refresh = false;
		if (flush)
			v->flushed_ns = now_ns();
		pthread_mutex_unlock(&v->lock);

		if (flush)
			uc.ctl(v->uc, UC_CTL_TB_FLUSH_W);
		uc.reg_read(v->uc, UC_X86_REG_RIP, &rip);
		uc_err err = uc.emu_start(v->uc, rip, NEVER, 0, step ? 1 : 0);

		pthread_mutex_lock(&v->lock);
		/* Back at the instruction of the last MMIO access: replay it. */
		uc.reg_read(v->uc, UC_X86_REG_RIP, &rip);
		v->io.replay = v->io.size != 0 && rip == v->io.rip;
		if (v->io.replay && v->stopping && v->hook_exit == HX_NONE &&
		    err == 0 && !step)
			err = complete_access(v, rip);
		v->busy = false;
		if (v->refresh && v->hook_exit == HX_NONE && !v->stopping &&
		    err == 0 && !step) {
			v->go = true;	/* only stopped to translate afresh */
			continue;
		}
		finish(v, err, step);
		if (!v->halted)
			v->posted = true;
		pthread_cond_broadcast(&v->cond);
	}
	return NULL;
}

int
sk_vcpu_start(struct sk_vcpu *v)
{
	uc_hook h;

	if (uc.hook_add(v->uc, &h, UC_HOOK_INSN, (void *)hook_in, v, 1, 0,
	    UC_X86_INS_IN) != 0 ||
	    uc.hook_add(v->uc, &h, UC_HOOK_INSN, (void *)hook_out, v, 1, 0,
	    UC_X86_INS_OUT) != 0 ||
	    uc.hook_add(v->uc, &h, UC_HOOK_INTR, (void *)hook_intr, v, 1, 0) != 0 ||
	    uc.hook_add(v->uc, &h, UC_HOOK_MEM_UNMAPPED | UC_HOOK_MEM_WRITE_PROT,
	    (void *)hook_unmapped, v, 1, 0) != 0) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	if (pthread_create(&v->thread, NULL, emu_thread, v) != 0)
		return -1;
	{
		char name[16];

		snprintf(name, sizeof(name), "emu %d", v->id);
		pthread_setname_np(v->thread, name);
	}
	return 0;
}

int
sk_run(struct sk_vcpu *v)
{
	struct kvm_run *run = v->run;
	bool intr;

	pthread_mutex_lock(&v->lock);
	v->posted = false;
	v->stopping = false;
	if (v->io_wait) {
		/* complete_userspace_io: the hook takes the answer and goes on */
		v->io_wait = false;
		pthread_cond_broadcast(&v->cond);
	} else if (run->immediate_exit) {
		v->intr = true;
		v->posted = true;
	} else if (!v->halted) {
		v->go = true;
		pthread_cond_broadcast(&v->cond);
	}
	while (!v->posted) {
		if (run->immediate_exit) {
			if (!v->busy && !v->go) {
				v->intr = true;	/* halted: nothing to stop */
				break;
			}
			v->stopping = true;
			if (!v->completing)	/* again each ms: it may not have started */
				uc.emu_stop(v->uc);
		} else if (v->busy && !v->completing &&
		    !(v->guest_debug & KVM_GUESTDBG_SINGLESTEP) &&
		    (v->refresh || now_ns() - v->flushed_ns >= REFRESH_NS)) {
			v->refresh = true;
			uc.emu_stop(v->uc);	/* again each ms, as above */
		}
		wait_1ms(v);
	}
	v->posted = false;
	intr = v->intr;
	v->intr = false;
	pthread_mutex_unlock(&v->lock);
	if (intr) {
		run->exit_reason = KVM_EXIT_INTR;
		errno = EINTR;
		return -1;
	}
	return 0;
}
