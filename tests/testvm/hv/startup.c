/*
 * bhyve's start-up sequence, which differs between FreeBSD versions
 * (docs/bhyve-facts.md, "Start-up"):
 *
 *  13.x  bhyverun.c main() adds every vCPU with fbsdrun_addcpu(..., suspend =
 *        vcpu != BSP): the APs wait in the debug set for their SIPI, the
 *        BSP runs at once and never enters the debug set.  vmexit_debug
 *        returns straight to VM_RUN, so a parked vCPU's thread spins a
 *        host core.
 *  14.x, 15  fbsdrun_addcpu activates EVERY vCPU, suspends it (debug set)
 *        and starts its thread, which loops VM_RUN -> debug exit ->
 *        usleep(1000) (amd64/vmexit.c vmexit_debug).  Only after the rest
 *        of the machine's set-up (bhyve_init_platform_late, caph_enter)
 *        does main() call vm_resume_cpu(bsp).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>

#include "testvm.h"

/* Does vCPU `id` begin in the debug set? */
bool
startup_in_debug_set(const struct vm *vm, int id)
{
	return id != 0 || vm->vmm_version >= 14;
}

/*
 * main()'s last step on 14 and later: the set-up time, then vm_resume_cpu
 * on the BSP.  On 13.x the BSP already runs.
 */
void
startup_release_bsp(struct vm *vm)
{
	if (vm->vmm_version < 14)
		return;
	if (vm->setup_ms > 0)
		usleep((useconds_t)vm->setup_ms * 1000);
	vcpu_resume(vm, 0);
}

/* What a parked vCPU's thread does between two "VM_RUN"s. */
void
startup_park_wait(const struct vm *vm)
{
	if (vm->vmm_version >= 14)
		usleep(1000);	/* vmexit_debug's usleep(1000) */
	else
		sched_yield();	/* 13.x: straight back to VM_RUN (a spinning core) */
}
