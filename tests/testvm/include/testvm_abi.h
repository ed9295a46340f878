/*
 * The contract between the test VM's hypervisor (hv/) and the guests it
 * loads (guest/): I/O ports, MMIO addresses and the boot-info block.
 *
 * Everything here is a guest-physical fact.  Virtual addresses belong to the
 * demo guest alone and live in guest/layout.h.  Included from C and from
 * assembly, so only #defines (and one struct guarded by __ASSEMBLER__).
 */
#ifndef TESTVM_ABI_H
#define TESTVM_ABI_H

#ifdef __ASSEMBLER__
#define TVM_U64(x)	x
#else
#define TVM_U64(x)	x##ULL
#endif

/* ---- I/O ports ------------------------------------------------------ */

/* 16550 COM1: bhyve's console.  Only THR (write) and LSR (read) matter. */
#define TVM_PORT_COM1		0x3f8
#define TVM_PORT_COM1_LSR	0x3fd

/*
 * Writing any value powers the VM off: the hypervisor exits with status 0,
 * as bhyve does on an ACPI power-off (VM_SUSPEND_POWEROFF).
 */
#define TVM_PORT_SHUTDOWN	0x501

/*
 * AP start-up.  A 32-bit write of TVM_SPINUP(vcpu, rip) stands for the
 * INIT/SIPI pair that bhyve turns into a VM_EXITCODE_SPINUP_AP exit on the
 * BSP's thread: the hypervisor puts vCPU `vcpu` in real mode at `rip`
 * (page aligned, below 1 MiB) and removes it from the debug set.
 */
#define TVM_PORT_SPINUP		0x502
#define TVM_SPINUP(vcpu, rip)	(((vcpu) << 24) | ((rip) & 0xff000))
#define TVM_SPINUP_VCPU(v)	(((v) >> 24) & 0xff)
#define TVM_SPINUP_RIP(v)	((v) & 0xff000)

/*
 * An INIT IPI to vCPU `val` (an AP): bhyve's VM_EXITCODE_IPI handler puts
 * the AP in the debug set (vm_suspend_cpu) and leaves it there until a SIPI
 * (TVM_PORT_SPINUP) resets it and resumes it.
 */
#define TVM_PORT_INIT		0x503

/* ---- Guest-physical map ---------------------------------------------- */

/*
 * RAM is split like a PC's: [0, lowmem) below the 32-bit hole and
 * [4 GiB, 4 GiB + highmem) above it.  MMIO lives only in the hole.
 */
#define TVM_HIGHMEM_BASE	TVM_U64(0x100000000)
#define TVM_LOWMEM_MAX		TVM_U64(0xc0000000)	/* 3 GiB */
#define TVM_HIGHMEM_MIN		(TVM_U64(16) << 20)	/* small VMs still get a high range */

/*
 * The userspace MMIO device (bhyve's PCI BARs and framebuffer registers
 * are emulated inside the bhyve process; this is their stand-in).
 * Every read has a side effect: it bumps the read counter.
 */
#define TVM_MMIO_GPA		TVM_U64(0xd0000000)
#define TVM_MMIO_SIZE		0x1000
#define TVM_MMIO_REG_ID		0x0	/* reads TVM_MMIO_ID */
#define TVM_MMIO_REG_READS	0x8	/* reads the number of reads so far, this one included */
#define TVM_MMIO_ID		0x544d4d31	/* an arbitrary constant ("TMM1") */

/*
 * The boot ROM: 64 KiB at the top of 4 GiB, a device-memory segment
 * ("bootrom") that starts with this signature (hv/bootrom.c).
 */
#define TVM_BOOTROM_GPA		TVM_U64(0xffff0000)
#define TVM_BOOTROM_SIGNATURE	"testvm boot ROM"

/*
 * The framebuffer (--fbuf): bhyve's fbuf device memory ("framebuffer"),
 * mapped at its BAR, the first address of bhyve's 32-bit PCI window.  The
 * test VM writes a signature at its start and TVM_FBUF_NPIXELS known
 * 32-bit pixels at TVM_FBUF_PIXELS_OFF (hv/fbuf.c).
 */
#define TVM_FBUF_GPA		TVM_U64(0xc0000000)
#define TVM_FBUF_SIGNATURE	"testvm framebuffer"
#define TVM_FBUF_PIXELS_OFF	0x40
#define TVM_FBUF_NPIXELS	8
#define TVM_FBUF_PIXEL(i)	(0xfb000000u + (uint32_t)(i) * 0x00010101u)

/* In-kernel local APIC (KVM's, standing in for vmm.ko's vlapic). */
#define TVM_LAPIC_GPA		TVM_U64(0xfee00000)

/* ---- What the demo loader leaves in low memory (like bhyveload) ------ */

#define TVM_BOOT_GDT_GPA	0x1000	/* null, code64 (0x08), data (0x10) */
#define TVM_BOOT_PML4_GPA	0x2000	/* identity map of [0, 1 GiB) ... */
#define TVM_BOOT_PDPT_GPA	0x3000
#define TVM_BOOT_PD_GPA		0x4000	/* ... with 2 MiB pages */
#define TVM_BOOT_INFO_GPA	0x6000	/* struct tvm_boot_info, address in %rdi */
#define TVM_BOOT_STACK_GPA	0x7ff0	/* initial %rsp */

#define TVM_BOOT_MAGIC		0x544f4f42u	/* "BOOT" */

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tvm_boot_info {
	uint32_t magic;		/* TVM_BOOT_MAGIC */
	uint32_t ncpus;		/* vCPUs 0 .. ncpus-1 exist */
	uint64_t lowmem;	/* bytes of RAM at [0, lowmem) */
	uint64_t highmem;	/* bytes of RAM at [4 GiB, 4 GiB + highmem) */
};
#endif

#endif /* TESTVM_ABI_H */
