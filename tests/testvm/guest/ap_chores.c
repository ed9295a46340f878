/*
 * What a long-mode AP does between ticks when a test turns a knob in
 * struct guest_layout (README.md): read the slow MMIO device, or send
 * another AP an INIT and later a SIPI, as a kernel takes a CPU offline and
 * brings it back (bhyve 14 and later take IPIs from any vCPU).  bhyve parks
 * the AP in the debug set at the INIT and resets and resumes it at the SIPI.
 *
 * A knob names a vCPU; the first AP other than that one to see it takes
 * it (an atomic exchange), so one IPI goes out per request.
 *
 * A file of its own, called after the BSP's chores in work_loop: tests
 * step through main.c's lines by number, which must stay put.
 */
#include "guest.h"

/* Takes the knob's vCPU if it names another vCPU than `self`; 0 if not. */
static uint32_t
take(volatile uint32_t *knob, uint32_t self)
{
	uint32_t cpu = *knob;

	if (cpu == 0 || cpu == self ||
	    !__atomic_compare_exchange_n(knob, &cpu, 0, false,
	    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return 0;
	return cpu;
}

void
ap_chores(struct percpu *pc)
{
	uint32_t cpu;

	if (layout.ap_mmio_probe == pc->id) {
		(void)*(volatile uint64_t *)(MMIO_VA + TVM_MMIO_REG_READS);
		layout.ap_mmio_probe = 0;
	}
	if ((cpu = take(&layout.init_ap, pc->id)) != 0) {
		outl(TVM_PORT_INIT, cpu);
		layout.init_sent = cpu;
	}
	if ((cpu = take(&layout.sipi_ap, pc->id)) != 0) {
		if (cpu < layout.ncpus)
			start_ap((int)cpu);
		layout.sipi_sent = cpu;
	}
}
