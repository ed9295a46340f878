/*
 * The demo guest's page tables: everything a debugger's translation must
 * get right that KVM here can run.
 *
 * Long-mode vCPUs each get their own PML4 (their CR3 differs) sharing:
 *   - IDENT_VBASE and DMAP_VBASE: phys [0, 1 GiB) on one 1 GiB page each
 *     if CPUID has PDPE1GB, else on the kernel's 2 MiB directory,
 *   - KERNEL_VBASE: phys [0, 1 GiB) on 2 MiB pages,
 * and a per-vCPU 4 KiB window at WINDOW_VBASE where PRIVATE_VA is the
 * vCPU's own private page: one virtual address, different data per vCPU.
 *
 * A spare PML4 that no vCPU loads maps IDENT, DMAP and KERNEL on 1 GiB
 * pages, so a debugger's 1 GiB walk is testable where KVM cannot run one.
 *
 * The 32-bit vCPU gets a 4-entry PAE PDPT: [0, 1 GiB) identity on 2 MiB
 * pages and a 4 KiB window at PAE_WINDOW_VBASE.  A spare 2-level 32-bit
 * directory maps the same with 4 MiB pages.  No entry has the U bit: a
 * cpl-3 translation faults everywhere.
 */
#include "guest.h"

#define PTE_P		0x001ULL
#define PTE_RW		0x002ULL
#define PTE_PWT		0x008ULL
#define PTE_PCD		0x010ULL
#define PTE_PS		0x080ULL
#define PTE_TABLE	(PTE_P | PTE_RW)
#define PTE_LARGE	(PTE_P | PTE_RW | PTE_PS)
#define PTE_UNCACHED	(PTE_P | PTE_RW | PTE_PWT | PTE_PCD)
#define GIB		(1ULL << 30)

#define IDX(va, level)	(((uint64_t)(va) >> (12 + 9 * (level))) & 0x1ff)

typedef uint64_t table_t[512] __attribute__((aligned(4096)));

static table_t pml4[GUEST_MAXCPU];
static table_t window_pdpt[GUEST_MAXCPU], window_pd[GUEST_MAXCPU];
static table_t window_pt[GUEST_MAXCPU];
static table_t ident_pdpt, dmap_pdpt, kernel_pdpt, kernel_pd;
static table_t giant_pml4, giant_low_pdpt, giant_dmap_pdpt, giant_kernel_pdpt;

static uint64_t pae_pdpt[4] __attribute__((aligned(32)));
static table_t pae_pd_low, pae_pd_window, pae_pt_window;
static uint32_t legacy_pd[1024] __attribute__((aligned(4096)));
static uint32_t legacy_pt_window[1024] __attribute__((aligned(4096)));

static uint64_t
phys(const void *table)
{
	return kva_to_phys(table);
}

/* The three 4 KiB pages of a window: private page, MMIO device, APIC. */
static void
fill_window(uint64_t *pt, int cpu)
{
	pt[0] = (PRIVATE_PHYS + (uint64_t)cpu * PRIVATE_STRIDE) | PTE_TABLE;
	pt[1] = TVM_MMIO_GPA | PTE_UNCACHED;
	pt[2] = TVM_LAPIC_GPA | PTE_UNCACHED;
}

static bool
cpu_has_gbpages(void)
{
	uint32_t a = 0x80000001, b, c = 0, d;

	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return (d >> 26) & 1;
}

static void
build_shared(bool gbpages)
{
	for (uint64_t i = 0; i < 512; i++)
		kernel_pd[i] = (i << 21) | PTE_LARGE;		/* 2 MiB pages */
	kernel_pdpt[IDX(KERNEL_VBASE, 2)] = phys(kernel_pd) | PTE_TABLE;
	ident_pdpt[IDX(IDENT_VBASE, 2)] = gbpages ? 0 | PTE_LARGE :
	    phys(kernel_pd) | PTE_TABLE;
	dmap_pdpt[IDX(DMAP_VBASE, 2)] = ident_pdpt[IDX(IDENT_VBASE, 2)];
}

static void
build_giant(void)
{
	giant_pml4[IDX(IDENT_VBASE, 3)] = phys(giant_low_pdpt) | PTE_TABLE;
	giant_pml4[IDX(DMAP_VBASE, 3)] = phys(giant_dmap_pdpt) | PTE_TABLE;
	giant_pml4[IDX(KERNEL_VBASE, 3)] = phys(giant_kernel_pdpt) | PTE_TABLE;
	giant_low_pdpt[IDX(IDENT_VBASE, 2)] = 0 | PTE_LARGE;
	giant_dmap_pdpt[IDX(DMAP_VBASE, 2)] = 0 | PTE_LARGE;
	giant_kernel_pdpt[IDX(KERNEL_VBASE, 2)] = 0 | PTE_LARGE;
}

static void
build_long_mode(int cpu)
{
	uint64_t *root = pml4[cpu];

	root[IDX(IDENT_VBASE, 3)] = phys(ident_pdpt) | PTE_TABLE;
	root[IDX(DMAP_VBASE, 3)] = phys(dmap_pdpt) | PTE_TABLE;
	root[IDX(KERNEL_VBASE, 3)] = phys(kernel_pdpt) | PTE_TABLE;
	root[IDX(WINDOW_VBASE, 3)] = phys(window_pdpt[cpu]) | PTE_TABLE;
	window_pdpt[cpu][IDX(WINDOW_VBASE, 2)] = phys(window_pd[cpu]) | PTE_TABLE;
	window_pd[cpu][IDX(WINDOW_VBASE, 1)] = phys(window_pt[cpu]) | PTE_TABLE;
	fill_window(window_pt[cpu], cpu);
}

static void
build_pae(void)
{
	/* PAE PDPTEs take only P (RW/US are reserved there). */
	pae_pdpt[0] = phys(pae_pd_low) | PTE_P;
	pae_pdpt[PAE_WINDOW_VBASE >> 30] = phys(pae_pd_window) | PTE_P;
	for (uint64_t i = 0; i < 512; i++)
		pae_pd_low[i] = (i << 21) | PTE_LARGE;
	pae_pd_window[(PAE_WINDOW_VBASE >> 21) & 0x1ff] =
	    phys(pae_pt_window) | PTE_TABLE;
	fill_window(pae_pt_window, PAE_CPU);
}

/* Classic 2-level 32-bit paging: 4 MiB pages (PS) and one 4 KiB table. */
static void
build_legacy32(void)
{
	for (uint32_t i = 0; i < 256; i++)
		legacy_pd[i] = (i << 22) | (uint32_t)PTE_LARGE;
	legacy_pd[PAE_WINDOW_VBASE >> 22] =
	    (uint32_t)phys(legacy_pt_window) | (uint32_t)PTE_TABLE;
	legacy_pt_window[0] = (uint32_t)(PRIVATE_PHYS +
	    PAE_CPU * PRIVATE_STRIDE) | (uint32_t)PTE_TABLE;
	legacy_pt_window[1] = (uint32_t)TVM_MMIO_GPA | (uint32_t)PTE_UNCACHED;
	legacy_pt_window[2] = (uint32_t)TVM_LAPIC_GPA | (uint32_t)PTE_UNCACHED;
}

void
paging_build(int ncpus)
{
	bool gbpages = cpu_has_gbpages();

	layout.live_gbpages = gbpages;
	build_shared(gbpages);
	build_giant();
	layout.giant_root = phys(giant_pml4);
	for (int cpu = 0; cpu < ncpus; cpu++)
		build_long_mode(cpu);
	build_pae();
	layout.pae_root = phys(pae_pdpt);
	build_legacy32();
	layout.legacy32_root = phys(legacy_pd);
}

uint64_t
paging_root(int cpu)
{
	return phys(pml4[cpu]);
}

uint32_t
paging_pae_root(void)
{
	return (uint32_t)phys(pae_pdpt);
}
