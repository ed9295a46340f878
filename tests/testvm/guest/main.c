/*
 * The demo guest: a few vCPUs in different modes, each ticking a counter,
 * so a debugger can watch the guest run, stop and resume.
 *
 *   vCPU 0   BSP, long mode (entered in 64-bit mode by the loader)
 *   vCPU 1   AP, long mode, its own CR3
 *   vCPU 2   AP, 32-bit protected mode, PAE paging if the CPU allows (boot.S)
 *   vCPU 3   AP, long mode, started only once layout.start_ap != 0
 *   vCPU 4+  like vCPU 1
 *
 * Call chain for backtraces: kmain/ap_main -> work_loop -> tick -> spin.
 */
#include "guest.h"

#define TICK_DELAY	2500	/* spin turns per tick: ~10k instructions */

struct guest_layout layout __attribute__((section(".layout"))) = {
	.magic = GUEST_MAGIC,
};

#define PRIVATE_PAGE(n) "vcpu" #n " private page"
char private_pages[GUEST_MAXCPU][PRIVATE_STRIDE]
    __attribute__((section(".private"), aligned(4096))) = {
	PRIVATE_PAGE(0), PRIVATE_PAGE(1), PRIVATE_PAGE(2), PRIVATE_PAGE(3),
	PRIVATE_PAGE(4), PRIVATE_PAGE(5), PRIVATE_PAGE(6), PRIVATE_PAGE(7),
};

/* boot.S starts the BSP on stacks[0]. */
uint8_t stacks[GUEST_MAXCPU][GUEST_STACK_SIZE] __attribute__((aligned(16)));

static int ncpus;

static void
copy_str(char *dst, const char *src, int cap)
{
	int i = 0;

	for (; src[i] != '\0' && i < cap - 1; i++)
		dst[i] = src[i];
	dst[i] = '\0';
}

static void
name_vcpu(int cpu)
{
	char *m = layout.percpu[cpu].msg;

	copy_str(m, "vcpuN", PC_MSG_LEN);
	m[4] = (char)('0' + cpu);
	copy_str(m + 5, cpu == 0 ? " BSP long mode" :
	    cpu == PAE_CPU ? " AP 32-bit protected mode" :
	    cpu == PARKED_CPU ? " AP long mode, started late" : " AP long mode",
	    PC_MSG_LEN - 5);
	layout.percpu[cpu].id = cpu;
}

__attribute__((noinline)) static void
spin(int n)
{
	for (int i = 0; i < n; i++)
		__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void
tick(struct percpu *pc)
{
	pc->counter++;
	spin(TICK_DELAY);
}

/* BSP-only: the knobs a test turns by writing guest memory. */
void start_ap(int cpu);

static void
bsp_chores(void)
{
	if (layout.start_ap && !layout.ap_spinup_sent && ncpus > PARKED_CPU) {
		layout.ap_spinup_sent = 1;
		start_ap(PARKED_CPU);
	}
	if (layout.mmio_probe) {
		layout.mmio_last_reads =
		    *(volatile uint64_t *)(MMIO_VA + TVM_MMIO_REG_READS);
		layout.mmio_probe = 0;
	}
}

__attribute__((noinline)) void
work_loop(struct percpu *pc)
{
	for (;;) {
		tick(pc);
		if (pc->id == 0)
			bsp_chores();
		else
			ap_chores(pc);	/* ap_chores.c */
	}
}

/* The INIT/SIPI stand-in: hypervisor sets the AP up at the trampoline. */
void
start_ap(int cpu)
{
	bool pae = cpu == PAE_CPU;

	ap_boot[cpu].mode = pae ? 32 : 64;
	ap_boot[cpu].cr3 = pae ? paging_pae_root() : (uint32_t)paging_root(cpu);
	/* The PAE vCPU runs on the identity map: give it a physical stack. */
	ap_boot[cpu].stack = (uint64_t)(stacks[cpu] + GUEST_STACK_SIZE);
	if (pae)
		ap_boot[cpu].stack = kva_to_phys(stacks[cpu] + GUEST_STACK_SIZE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	outl(TVM_PORT_SPINUP, TVM_SPINUP((uint32_t)cpu, (uint32_t)(uintptr_t)ap_trampoline));
}

void
ap_main(int cpu)
{
	struct percpu *pc = &layout.percpu[cpu];

	pc->cr3 = read_cr3();
	pc->mode = 64;
	console_put_vcpu_line(cpu, "up in long mode");
	work_loop(pc);
}

void
kmain(const struct tvm_boot_info *bi)
{
	struct percpu *pc = &layout.percpu[0];

	console_puts("testvm demo guest: BSP in long mode\n");
	ncpus = bi->magic == TVM_BOOT_MAGIC ? (int)bi->ncpus : 1;
	if (ncpus > GUEST_MAXCPU)
		ncpus = GUEST_MAXCPU;
	layout.ncpus = ncpus;
	for (int cpu = 0; cpu < ncpus; cpu++)
		name_vcpu(cpu);

	paging_build(ncpus);
	write_cr3(paging_root(0));
	pc->cr3 = read_cr3();
	pc->mode = 64;

	layout.mmio_id = *(volatile uint32_t *)(MMIO_VA + TVM_MMIO_REG_ID);
	for (int cpu = 1; cpu < ncpus; cpu++)
		if (cpu != PARKED_CPU)
			start_ap(cpu);
	console_puts("testvm demo guest: running\n");
	work_loop(pc);
}
