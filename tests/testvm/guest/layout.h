/*
 * The demo guest's memory layout: every address and value a test or a
 * debugger session may check.  Included by the guest's C and assembly.
 *
 * Mirrored in tests/testvm/layout.ts; testvm_test.ts compares the two and
 * checks both against build/guest.elf, so keep them in step.
 */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define GUEST_MAXCPU		8
#define GUEST_STACK_SIZE	16384	/* per vCPU */

/* ---- Virtual address space of the long-mode vCPUs (0, 1, 3, 4..7) ---- */

/* Kernel image: phys [0, 1 GiB) at -2 GiB, 2 MiB pages (shared). */
#define KERNEL_VBASE		0xffffffff80000000
/*
 * FreeBSD-style direct map of phys [0, 1 GiB) (shared).  IDENT and DMAP use
 * one 1 GiB page when the vCPU's CPUID has PDPE1GB, else 2 MiB pages
 * (layout.live_gbpages tells which).  The KVM on the dev machines (kvm_pvm,
 * shadow paging) lacks PDPE1GB, so 1 GiB pages also live in a spare root,
 * layout.giant_root, that no vCPU loads and tests walk with an explicit
 * cr3: there IDENT, DMAP and KERNEL are each one 1 GiB page.
 */
#define DMAP_VBASE		0xfffff80000000000
/* Identity map of phys [0, 1 GiB): the AP trampoline needs it. */
#define IDENT_VBASE		0x0
/* 4 KiB window; its page table is per vCPU. */
#define WINDOW_VBASE		0xffff800000000000
#define PRIVATE_VA		(WINDOW_VBASE + 0x0000)	/* this vCPU's private page */
#define MMIO_VA			(WINDOW_VBASE + 0x1000)	/* userspace MMIO device */
#define LAPIC_VA		(WINDOW_VBASE + 0x2000)	/* local APIC */

/* ---- Virtual address space of the 32-bit vCPU (2) --------------------- */

/*
 * vCPU 2 runs 32-bit protected-mode code and tries to turn on PAE paging.
 * The KVM on the dev machines (kvm_pvm) refuses paging outside long mode
 * with #GP; the guest catches it and stays in protected mode without
 * paging (layout.pae_active = 0, paging mode FLAT).  Either way the PAE
 * tables exist at layout.pae_root, and a spare 2-level 32-bit directory at
 * layout.legacy32_root, both mapping:
 *   [0, 1 GiB) identity (PAE: 2 MiB pages, 32-bit: 4 MiB pages), and
 *   a 4 KiB window at PAE_WINDOW_VBASE, with vCPU 2's private page first.
 */
#define PAE_WINDOW_VBASE	0xc0000000
#define PAE_PRIVATE_VA		(PAE_WINDOW_VBASE + 0x0000)
#define PAE_MMIO_VA		(PAE_WINDOW_VBASE + 0x1000)
#define PAE_LAPIC_VA		(PAE_WINDOW_VBASE + 0x2000)

/* ---- Physical placement ---------------------------------------------- */

#define TRAMPOLINE_PHYS		0x8000		/* AP start vector 0x08 */
#define KERNEL_PHYS		0x100000	/* .text and friends */
#define LAYOUT_PHYS		0x400000	/* struct guest_layout */
#define PRIVATE_PHYS		0x500000	/* private page of vCPU n at + n * 0x1000 */
#define PRIVATE_STRIDE		0x1000

#define LAYOUT_VA		(KERNEL_VBASE + LAYOUT_PHYS)
#define PRIVATE_PAGES_VA	(KERNEL_VBASE + PRIVATE_PHYS)

/* ---- struct guest_layout at LAYOUT_PHYS ------------------------------- */

#define GUEST_MAGIC		0x31304d5654534554	/* "TESTVM01" */
#define OFF_MAGIC		0x00	/* u64 GUEST_MAGIC */
#define OFF_NCPUS		0x08	/* u32 vCPUs the guest was told about */
#define OFF_START_AP		0x0c	/* u32 a test writes 1: BSP starts PARKED_CPU */
#define OFF_AP_SPINUP_SENT	0x10	/* u32 BSP sets 1 just before that spin-up */
#define OFF_MMIO_PROBE		0x14	/* u32 a test writes 1: BSP reads MMIO reads, clears */
#define OFF_MMIO_LAST_READS	0x18	/* u64 the MMIO read counter as the BSP last read it */
#define OFF_MMIO_ID		0x20	/* u64 MMIO ID register, read once at boot */
#define OFF_GIANT_ROOT		0x28	/* u64 phys of the spare 1 GiB-page PML4 */
#define OFF_LIVE_GBPAGES	0x30	/* u32 1 if the live tables use 1 GiB pages */
#define OFF_PAE_ACTIVE		0x34	/* u32 1 if vCPU 2 runs with PAE paging */
#define OFF_PAE_ROOT		0x38	/* u64 phys of the PAE PDPT (vCPU 2's tables) */
#define OFF_LEGACY32_ROOT	0x40	/* u64 phys of a spare 32-bit (2-level) directory */
#define OFF_INIT_AP		0x48	/* u32 a test writes AP n: another AP sends it an INIT */
#define OFF_INIT_SENT		0x4c	/* u32 that AP sets n once the INIT is sent */
#define OFF_SIPI_AP		0x50	/* u32 a test writes AP n: another AP sends it a SIPI */
#define OFF_SIPI_SENT		0x54	/* u32 that AP sets n once the SIPI is sent */
#define OFF_AP_MMIO_PROBE	0x58	/* u32 a test writes vCPU n (1..): AP n reads MMIO reads, clears */
#define OFF_PERCPU		0x80	/* struct percpu[GUEST_MAXCPU] */

#define PERCPU_SIZE		0x40
#define PC_COUNTER		0x00	/* u64 bumped on every tick */
#define PC_ID			0x08	/* u32 vCPU id (from the local APIC) */
#define PC_MODE			0x0c	/* u32 0 not started, 64 long mode, 32 protected mode */
#define PC_CR3			0x10	/* u64 the page-table root it loaded */
#define PC_MSG			0x18	/* char[40], e.g. "vcpu0 BSP long mode" */
#define PC_MSG_LEN		40

/* The AP the BSP starts only when start_ap becomes nonzero. */
#define PARKED_CPU		3
/* The AP that stays in 32-bit protected mode (PAE paging if the CPU lets it). */
#define PAE_CPU			2

/* Private page contents: "vcpuN private page\0". */

#endif /* GUEST_LAYOUT_H */
