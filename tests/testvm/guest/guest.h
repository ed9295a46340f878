/*
 * Shared declarations of the demo guest's C files.
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "testvm_abi.h"

struct percpu {
	volatile uint64_t counter;
	uint32_t id;
	volatile uint32_t mode;
	uint64_t cr3;
	char msg[PC_MSG_LEN];
};

struct guest_layout {
	uint64_t magic;
	uint32_t ncpus;
	volatile uint32_t start_ap;
	volatile uint32_t ap_spinup_sent;
	volatile uint32_t mmio_probe;
	volatile uint64_t mmio_last_reads;
	uint64_t mmio_id;
	uint64_t giant_root;
	uint32_t live_gbpages;
	volatile uint32_t pae_active;
	uint64_t pae_root;
	uint64_t legacy32_root;
	volatile uint32_t init_ap;
	volatile uint32_t init_sent;
	volatile uint32_t sipi_ap;
	volatile uint32_t sipi_sent;
	volatile uint32_t ap_mmio_probe;
	uint8_t pad[OFF_PERCPU - 0x5c];
	struct percpu percpu[GUEST_MAXCPU];
};

/* layout.h is the contract; make the compiler hold the structs to it. */
_Static_assert(offsetof(struct guest_layout, ncpus) == OFF_NCPUS, "ncpus");
_Static_assert(offsetof(struct guest_layout, start_ap) == OFF_START_AP, "start_ap");
_Static_assert(offsetof(struct guest_layout, ap_spinup_sent) == OFF_AP_SPINUP_SENT, "sent");
_Static_assert(offsetof(struct guest_layout, mmio_probe) == OFF_MMIO_PROBE, "probe");
_Static_assert(offsetof(struct guest_layout, mmio_last_reads) == OFF_MMIO_LAST_READS, "reads");
_Static_assert(offsetof(struct guest_layout, mmio_id) == OFF_MMIO_ID, "id");
_Static_assert(offsetof(struct guest_layout, giant_root) == OFF_GIANT_ROOT, "giant");
_Static_assert(offsetof(struct guest_layout, live_gbpages) == OFF_LIVE_GBPAGES, "gb");
_Static_assert(offsetof(struct guest_layout, pae_active) == OFF_PAE_ACTIVE, "pae");
_Static_assert(offsetof(struct guest_layout, pae_root) == OFF_PAE_ROOT, "pae root");
_Static_assert(offsetof(struct guest_layout, legacy32_root) == OFF_LEGACY32_ROOT, "legacy");
_Static_assert(offsetof(struct guest_layout, init_ap) == OFF_INIT_AP, "init");
_Static_assert(offsetof(struct guest_layout, init_sent) == OFF_INIT_SENT, "init sent");
_Static_assert(offsetof(struct guest_layout, sipi_ap) == OFF_SIPI_AP, "sipi");
_Static_assert(offsetof(struct guest_layout, sipi_sent) == OFF_SIPI_SENT, "sipi sent");
_Static_assert(offsetof(struct guest_layout, ap_mmio_probe) == OFF_AP_MMIO_PROBE, "ap probe");
_Static_assert(offsetof(struct guest_layout, percpu) == OFF_PERCPU, "percpu");
_Static_assert(sizeof(struct percpu) == PERCPU_SIZE, "percpu size");
_Static_assert(offsetof(struct percpu, mode) == PC_MODE, "mode");
_Static_assert(offsetof(struct percpu, cr3) == PC_CR3, "cr3");
_Static_assert(offsetof(struct percpu, msg) == PC_MSG, "msg");

/* What the assembly trampoline reads for each AP (boot.S). */
struct ap_boot {
	uint32_t mode;		/* 32: PAE protected mode, 64: long mode */
	uint32_t cr3;
	uint64_t stack;
};

extern struct guest_layout layout;
extern struct ap_boot ap_boot[GUEST_MAXCPU];
extern char ap_trampoline[];

/* console.c */
void console_puts(const char *s);
void console_put_vcpu_line(int cpu, const char *what);

/* paging.c */
void paging_build(int ncpus);
uint64_t paging_root(int cpu);		/* long-mode PML4, physical */
uint32_t paging_pae_root(void);		/* PAE PDPT, physical, below 4 GiB */

/* main.c */
void work_loop(struct percpu *pc);
void ap_main(int cpu);
void start_ap(int cpu);		/* the INIT/SIPI pair (spin-up port) */

/* ap_chores.c */
void ap_chores(struct percpu *pc);

static inline uint64_t
kva_to_phys(const void *p)
{
	return (uint64_t)p - KERNEL_VBASE;
}

static inline void
outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void
outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint64_t
read_cr3(void)
{
	uint64_t v;

	__asm__ volatile("mov %%cr3, %0" : "=r"(v));
	return v;
}

static inline void
write_cr3(uint64_t v)
{
	__asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}

#endif /* GUEST_H */
