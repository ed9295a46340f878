/*
 * vCPU threads, the debug set, and freezing a vCPU for another process.
 *
 * This file is where the test VM copies the behaviour of vmm.ko plus a
 * stock bhyve (no -G) that a separate debugger has to live with:
 *
 *  - every vCPU is active from the start (bhyve calls vm_activate_cpu for
 *    each one), and the APs begin in the debug set, where bhyve keeps them
 *    until the guest starts them; on 14 and later the BSP too, until
 *    bhyve's main() resumes it (startup.c);
 *  - a vCPU in the debug set never enters the guest: its "VM_RUN" returns
 *    a debug exit at once, after completing an exit that was still pending,
 *    and its thread sleeps 1 ms (13.x: no sleep) and looks again;
 *  - when the guest starts an AP, the BSP's thread sets the AP up and
 *    removes it from the debug set itself, even while a debugger holds the
 *    VM (bhyve's spinup_ap calls vm_resume_cpu); an INIT puts a running AP
 *    back into the debug set, whoever runs the VM (vcpu_init_ap);
 *  - a request from another process freezes the vCPU first: it is kicked
 *    out of the guest and the request waits until it is idle (vmm.ko's
 *    vcpu_set_state(VCPU_FROZEN)), so register snapshots are consistent;
 *  - an MTRAP (single-step) exit just continues; a breakpoint exit with
 *    BPT_EXIT set aborts the whole VM with status 4.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testvm.h"

#define KICK_SIGNAL	SIGUSR1

static void
kick_handler(int sig)
{
	(void)sig;	/* only there to make KVM_RUN return EINTR */
}

static void
set_cpuid(struct vm *vm, struct vcpu *v)
{
	int n = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	c->nent = n;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0)
		die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		/* Each vCPU reports its own APIC id; the guest relies on it. */
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)v->id << 24);
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = v->id;
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		die("KVM_SET_CPUID2: %s", strerror(errno));
	free(c);
}

int
vcpu_create(struct vm *vm, int id)
{
	struct vcpu *v = &vm->vcpu[id];
	int runsz;

	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		die("KVM_CREATE_VCPU %d: %s", id, strerror(errno));
	runsz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	v->run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));
	set_cpuid(vm, v);
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	v->cap_halt = 1;	/* bhyve enables HALT_EXIT on every vCPU */

	if (id != 0 && vm->lapic_sipi) {
		/*
		 * KVM leaves an AP waiting for INIT/SIPI (UNINITIALIZED); bhyve
		 * keeps it in the debug set until the guest starts it.  Both:
		 * the parked thread watches for the SIPI (ap_check_sipi).
		 */
		v->awaiting_sipi = true;
	} else if (id != 0) {
		/*
		 * KVM would hold an AP inside KVM_RUN until an INIT/SIPI; vmm.ko
		 * runs whatever state the vCPU has once it leaves the debug set.
		 * An AP released too early (vm_resume_all_cpus) thus runs from
		 * the reset vector, in the hole, and the VM aborts, as on bhyve.
		 */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
			die("KVM_SET_MP_STATE: %s", strerror(errno));
	}
	if (id == vm->x2apic_vcpu && dev_set_x2apic_mode(v) != 0)
		die("vCPU %d: cannot put its local APIC in x2APIC mode", id);
	if (startup_in_debug_set(vm, id))
		cpuset_add(&vm->k->debug, id);
	cpuset_add(&vm->k->active, id);
	return 0;
}

static bool
in_debug_set(struct vcpu *v)
{
	return cpuset_has(&v->vm->k->debug, v->id);
}

/* Enter the guest unless frozen, parked or exiting.  Pairs with vcpu_kick. */
static bool
vcpu_enter(struct vcpu *v)
{
	bool ok;

	pthread_mutex_lock(&v->lock);
	while (v->frozen)
		pthread_cond_wait(&v->cond, &v->lock);
	ok = !in_debug_set(v) && !atomic_load(&v->vm->exiting);
	v->running = ok;
	pthread_mutex_unlock(&v->lock);
	return ok;
}

static void
vcpu_leave(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->running = false;
	v->run->immediate_exit = 0;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

/* vmm.ko's vcpu_notify_event: make a running vCPU leave the guest now. */
static void
kick_locked(struct vcpu *v)
{
	if (v->running) {
		v->run->immediate_exit = 1;	/* covers a kick just before KVM_RUN */
		pthread_kill(v->thread, KICK_SIGNAL);
	}
}

void
vcpu_kick(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	kick_locked(v);
	pthread_mutex_unlock(&v->lock);
}

void
vcpu_freeze(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	while (v->frozen)
		pthread_cond_wait(&v->cond, &v->lock);
	v->frozen = true;
	while (v->running) {
		struct timespec ts;

		kick_locked(v);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&v->cond, &v->lock, &ts);
	}
	pthread_mutex_unlock(&v->lock);
}

void
vcpu_unfreeze(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->frozen = false;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

/* vmm.ko's vm_suspend_cpu: id -1 means every active vCPU. */
int
vcpu_suspend(struct vm *vm, int id)
{
	if (id == -1) {
		cpuset_copy(&vm->k->debug, &vm->k->active);
		for (int i = 0; i < vm->ncpus; i++)
			vcpu_kick(&vm->vcpu[i]);
		return 0;
	}
	if (id < 0 || id >= vm->ncpus || !cpuset_has(&vm->k->active, id))
		return EINVAL;
	cpuset_add(&vm->k->debug, id);
	vcpu_kick(&vm->vcpu[id]);
	return 0;
}

/* vmm.ko's vm_resume_cpu: id -1 empties the debug set, APs included. */
int
vcpu_resume(struct vm *vm, int id)
{
	if (id == -1) {
		cpuset_clear(&vm->k->debug);
		return 0;
	}
	if (id < 0 || id >= vm->ncpus || !cpuset_has(&vm->k->debug, id))
		return EINVAL;
	cpuset_del(&vm->k->debug, id);
	return 0;
}

/*
 * bhyve's VM_EXITCODE_SPINUP_AP handling, on the BSP's thread: reset the AP
 * to real mode at `rip` and take it out of the debug set, whoever put it
 * there.  --spinup-delay widens the window so tests can hold the VM first.
 */
void
vcpu_spinup_ap(struct vcpu *bsp, int target, uint64_t rip)
{
	struct vm *vm = bsp->vm;
	struct vcpu *ap;

	if (target <= 0 || target >= vm->ncpus || target == bsp->id) {
		fprintf(stderr, "testvm %s: spin-up of invalid vCPU %d ignored\n",
		    vm->name, target);
		return;
	}
	if (vm->spinup_delay_ms > 0)
		usleep((useconds_t)vm->spinup_delay_ms * 1000);
	ap = &vm->vcpu[target];
	vcpu_freeze(ap);
	if (regs_set_realmode_start(ap, rip) != 0)
		fprintf(stderr, "testvm %s: spin-up of vCPU %d failed\n",
		    vm->name, target);
	vcpu_unfreeze(ap);
	vcpu_resume(vm, target);	/* EINVAL if already out: ignored, as bhyve does */
}

/*
 * bhyve's VM_EXITCODE_IPI handling of an INIT (amd64/vmexit.c vmexit_ipi,
 * on the sender's thread): vm_suspend_cpu of the destination.  Nothing else:
 * the AP keeps its registers, parked in the debug set, until a SIPI
 * (vcpu_spinup_ap) resets and resumes it.  A debugger that resumed it in
 * between would run it from wherever the INIT caught it.
 */
void
vcpu_init_ap(struct vcpu *from, int target)
{
	struct vm *vm = from->vm;

	if (target <= 0 || target >= vm->ncpus || target == from->id) {
		fprintf(stderr, "testvm %s: INIT of invalid vCPU %d ignored\n",
		    vm->name, target);
		return;
	}
	vcpu_suspend(vm, target);
}

static void
update_guest_debug(struct vcpu *v)
{
	struct kvm_guest_debug dbg = { 0 };

	if (v->cap_mtrap || v->cap_bpt)
		dbg.control = KVM_GUESTDBG_ENABLE;
	if (v->cap_mtrap)
		dbg.control |= KVM_GUESTDBG_SINGLESTEP;
	if (v->cap_bpt)
		dbg.control |= KVM_GUESTDBG_USE_SW_BP;
	if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &dbg) < 0)
		fprintf(stderr, "testvm: KVM_SET_GUEST_DEBUG: %s\n", strerror(errno));
}

static int
cap_limit(const struct vm *vm)
{
	return vm->vmm_version >= 15 ? VM_CAP_MAX_15 : VM_CAP_IPI_EXIT + 1;
}

int
vcpu_get_cap(struct vcpu *v, int cap, int *val)
{
	if (cap < 0 || cap >= cap_limit(v->vm))
		return EINVAL;
	switch (cap) {
	case VM_CAP_HALT_EXIT:		*val = v->cap_halt; return 0;
	case VM_CAP_PAUSE_EXIT:		*val = v->cap_pause; return 0;
	case VM_CAP_MTRAP_EXIT:		*val = v->cap_mtrap; return 0;
	case VM_CAP_UNRESTRICTED_GUEST:	*val = 1; return 0;
	case VM_CAP_BPT_EXIT:		*val = v->cap_bpt; return 0;
	case VM_CAP_MASK_HWINTR:	*val = v->cap_mask_hwintr; return 0;
	default:			return ENOENT;	/* vmm.ko: unsupported */
	}
}

int
vcpu_set_cap(struct vcpu *v, int cap, int val)
{
	if (cap < 0 || cap >= cap_limit(v->vm))
		return EINVAL;
	switch (cap) {
	case VM_CAP_HALT_EXIT:		v->cap_halt = !!val; return 0;
	case VM_CAP_PAUSE_EXIT:		v->cap_pause = !!val; return 0;
	case VM_CAP_MASK_HWINTR:	v->cap_mask_hwintr = !!val; return 0;
	case VM_CAP_UNRESTRICTED_GUEST:	return val ? 0 : EINVAL;
	case VM_CAP_MTRAP_EXIT:
		v->cap_mtrap = !!val;
		update_guest_debug(v);
		return 0;
	case VM_CAP_BPT_EXIT:
		v->cap_bpt = !!val;
		update_guest_debug(v);
		return 0;
	default:
		return ENOENT;
	}
}

/* bhyve's gdb_cpu_breakpoint() without a -G stub: exit(4). */
static void
breakpoint_abort(struct vcpu *v, uint64_t rip)
{
	char why[112];

	snprintf(why, sizeof(why),
	    "vm_loop: unexpected VMEXIT_DEBUG (breakpoint on vCPU %d at %#llx)",
	    v->id, (unsigned long long)rip);
	vm_request_exit(v->vm, 4, why);
}

static void
handle_debug_exit(struct vcpu *v)
{
	if (v->run->debug.arch.exception == 3)
		breakpoint_abort(v, v->run->debug.arch.pc);
	/* else MTRAP (single step): bhyve without -G just continues */
}

/*
 * Is the vCPU stopped on an int3?  kvm_pvm (the KVM on the dev machines)
 * reports an int3 under KVM_GUESTDBG_USE_SW_BP as an emulation failure
 * instead of KVM_EXIT_DEBUG; this recognises that case.
 */
static bool
stopped_on_int3(struct vcpu *v, uint64_t *rip)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct tvm_paging p;
	uint64_t gpa;
	int fault;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return false;
	paging_from_sregs(&s, &p);
	*rip = r.rip;
	return paging_gla2gpa(v->vm, &p, s.cs.base + r.rip, PROT_EXEC, &gpa,
	    &fault) == 0 && !fault && vm_gpa_is_ram(v->vm, gpa, 1) &&
	    v->vm->mem[gpa] == 0xcc;
}

/*
 * Without BPT_EXIT an int3 belongs to the guest (Linux runs one as a
 * self-test at boot and uses them to patch its code).  kvm_pvm fails to
 * deliver it, so do what the CPU would: #BP is a trap, so the guest's
 * handler sees the address after the int3.
 */
static int
reflect_int3(struct vcpu *v, uint64_t rip)
{
	struct kvm_regs r;
	struct kvm_vcpu_events ev;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -1;
	r.rip = rip + 1;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	ev.flags = 0;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0 ||
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return -1;
	return 0;
}

/* Like bhyve's abort messages: enough state to find the guest's mistake. */
static void
dump_state(struct vcpu *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return;
	fprintf(stderr, "testvm %s: vCPU %d rip=%#llx rsp=%#llx cs=%#x cr0=%#llx "
	    "cr3=%#llx cr4=%#llx efer=%#llx\n", v->vm->name, v->id, r.rip, r.rsp,
	    s.cs.selector, s.cr0, s.cr3, s.cr4, s.efer);
	if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
		diagnose_internal_error(v, &r, &s);
}

static void
handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char why[128];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		dev_pio(v);
		v->exit_pending = true;
		break;
	case KVM_EXIT_MMIO:
		dev_mmio(v);
		v->exit_pending = true;
		break;
	case KVM_EXIT_DEBUG:
		handle_debug_exit(v);
		break;
	case KVM_EXIT_HLT:
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_SHUTDOWN:
		/* bhyve: VM_SUSPEND_TRIPLEFAULT makes bhyve exit with status 3 */
		snprintf(why, sizeof(why), "triple fault on vCPU %d", v->id);
		dump_state(v);
		vm_request_exit(v->vm, 3, why);
		break;
	case KVM_EXIT_INTERNAL_ERROR: {
		uint64_t rip;

		if (stopped_on_int3(v, &rip)) {
			if (v->cap_bpt) {
				breakpoint_abort(v, rip);
				break;
			}
			if (reflect_int3(v, rip) == 0)
				break;
		}
		if (emulate_fence(v))
			break;
	}
		/* FALLTHROUGH */
	default:
		/* bhyve aborts on anything it cannot handle (VMEXIT_ABORT) */
		snprintf(why, sizeof(why),
		    "unhandled exit %u on vCPU %d (internal error suberror %u)",
		    run->exit_reason, v->id, run->internal.suberror);
		dump_state(v);
		vm_request_exit(v->vm, 4, why);
		break;
	}
}

/*
 * A Linux guest starts its APs through the in-kernel local APIC, where no
 * exit reaches userspace; KVM_GET_MP_STATE makes KVM accept a pending
 * INIT/SIPI (the AP is then RUNNABLE at the SIPI vector).  That is the
 * moment vmm.ko reports VM_EXITCODE_SPINUP_AP and bhyve resumes the AP,
 * even while a debugger holds the VM (vmm-facts.md section 4).
 */
static void
ap_check_sipi(struct vcpu *v)
{
	struct kvm_mp_state mp;

	if (!v->awaiting_sipi || ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0 ||
	    mp.mp_state != KVM_MP_STATE_RUNNABLE)
		return;
	v->awaiting_sipi = false;
	vcpu_resume(v->vm, v->id);
}

/*
 * vmm.ko applies bhyve's emulation of the last exit (nextrip, and RAX that
 * bhyve set) at the start of the next VM_RUN, even when that VM_RUN then
 * returns a debug exit at once.  KVM completes an I/O or MMIO exit at the
 * next KVM_RUN too; immediate_exit makes that KVM_RUN return without
 * entering the guest.  Called with the vCPU parked: not frozen, so the
 * registers a debugger reads from now on are the ones the guest resumes with.
 */
static void
complete_pending_exit(struct vcpu *v)
{
	if (!v->exit_pending)
		return;
	pthread_mutex_lock(&v->lock);
	while (v->frozen)
		pthread_cond_wait(&v->cond, &v->lock);
	v->running = true;	/* a request waits until KVM_RUN is back */
	pthread_mutex_unlock(&v->lock);
	/*
	 * A string instruction (rep ins/outs) may need more than one exit to
	 * finish: KVM then returns the next one instead of EINTR.
	 */
	for (int rounds = 0; v->exit_pending && rounds < 4096; rounds++) {
		v->run->immediate_exit = 1;
		v->exit_pending = false;
		if (ioctl(v->fd, KVM_RUN, 0) == 0)
			handle_exit(v);		/* sets exit_pending again */
		else if (errno != EINTR)
			fprintf(stderr, "testvm %s: completing vCPU %d's exit: "
			    "%s\n", v->vm->name, v->id, strerror(errno));
	}
	vcpu_leave(v);		/* clears immediate_exit */
}

static void *
vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t kick;

	sigemptyset(&kick);
	sigaddset(&kick, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

	while (!atomic_load(&v->vm->exiting)) {
		if (!vcpu_enter(v)) {
			complete_pending_exit(v);
			atomic_fetch_add(&v->userspace_exits, 1);	/* the debug exit */
			ap_check_sipi(v);
			startup_park_wait(v->vm);	/* bhyve's vmexit_debug */
			continue;
		}
		int r = ioctl(v->fd, KVM_RUN, 0);
		int err = errno;
		v->exit_pending = false;	/* KVM_RUN completed it */
		vcpu_leave(v);
		atomic_fetch_add(&v->userspace_exits, 1);
		if (r < 0) {
			if (err == EINTR || err == EAGAIN)
				continue;	/* a kick: vmm's VM_EXITCODE_BOGUS */
			char why[96];
			snprintf(why, sizeof(why), "KVM_RUN on vCPU %d: %s",
			    v->id, strerror(err));
			vm_request_exit(v->vm, 4, why);
			break;
		}
		handle_exit(v);
	}
	return NULL;
}

int
vcpu_start_threads(struct vm *vm)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL);	/* no SA_RESTART: KVM_RUN gets EINTR */
	for (int i = 0; i < vm->ncpus; i++) {
		char name[16];

		if (pthread_create(&vm->vcpu[i].thread, NULL, vcpu_thread,
		    &vm->vcpu[i]) != 0)
			die("pthread_create: %s", strerror(errno));
		snprintf(name, sizeof(name), "vcpu %d", i);
		pthread_setname_np(vm->vcpu[i].thread, name);
	}
	return 0;
}
