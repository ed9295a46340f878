/*
 * Booting a stock Linux vmlinux through its PVH entry (--linux).
 *
 * PVH is the one boot protocol an uncompressed vmlinux ELF offers to a
 * hypervisor without a firmware: the kernel names a 32-bit entry point in a
 * Xen ELF note (XEN_ELFNOTE_PHYS32_ENTRY) and expects to be entered there in
 * flat 32-bit protected mode, paging off, with %ebx pointing at an
 * hvm_start_info that carries the command line, the memory map and the ACPI
 * RSDP.  It is what QEMU does with `-kernel vmlinux`, so the two VMs start
 * the same kernel the same way and debuggers can compare them.  The kernel
 * turns on long mode itself (CR4.PAE, CR3, EFER.LME, CR0.PG), which is also
 * the only way into paging that kvm_pvm on the dev machines accepts.
 *
 * Everything the protocol needs lives below 1 MiB, which Linux keeps
 * reserved for the whole boot: nothing here is overwritten before use.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "testvm.h"

#define XEN_ELFNOTE_PHYS32_ENTRY	18
#define HVM_START_MAGIC			0x336ec578u

/* hvm_memmap_table_entry types (the E820 numbers). */
#define MEMMAP_RAM		1
#define MEMMAP_RESERVED		2

/* Low-memory layout of the Linux boot (all below 1 MiB). */
#define PVH_GDT_GPA		0x1000	/* null, code32 (0x08), data (0x10) */
#define PVH_START_INFO_GPA	0x6000
#define PVH_MEMMAP_GPA		0x6040
#define PVH_CMDLINE_GPA		0x7000
#define PVH_CMDLINE_MAX		2048	/* Linux's COMMAND_LINE_SIZE on x86 */
#define PVH_ACPI_GPA		0xe0000	/* where a PC BIOS keeps its tables */
#define PVH_ACPI_SIZE		0x10000

/* The firmware-ish top of the hole: I/O APIC, local APIC, KVM's TSS page. */
#define HOLE_DEVICES_GPA	0xfec00000ULL

#define GDT_CODE32	0x00cf9a000000ffffULL
#define GDT_DATA32	0x00cf92000000ffffULL

#define CR0_PE	0x1ULL
#define CR0_ET	0x10ULL

/* Linux's include/xen/interface/hvm/start_info.h, version 1. */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

/* The 32-bit entry from the kernel's Xen note (4 or 8 bytes wide). */
static uint32_t
pvh_entry(const struct elf_file *f)
{
	size_t len;
	const void *desc = elf_find_note(f, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &len);
	uint32_t entry;

	if (desc == NULL || len < 4)
		die("%s: no PVH entry (XEN_ELFNOTE_PHYS32_ENTRY note); "
		    "the kernel needs CONFIG_PVH", f->path);
	memcpy(&entry, desc, sizeof(entry));
	return entry;
}

/*
 * The memory map Linux builds its e820 table from.  It reports the same RAM
 * as vm_mmap_getnext, with the legacy VGA/BIOS area (our ACPI tables) and the
 * device pages at the top of the hole reserved, as a PC firmware would.
 */
static uint32_t
write_memmap(struct vm *vm)
{
	struct hvm_memmap_table_entry m[] = {
		{ 0, 0xa0000, MEMMAP_RAM, 0 },
		{ 0xa0000, 0x100000 - 0xa0000, MEMMAP_RESERVED, 0 },
		{ 0x100000, vm->lowmem - 0x100000, MEMMAP_RAM, 0 },
		{ HOLE_DEVICES_GPA, TVM_HIGHMEM_BASE - HOLE_DEVICES_GPA,
		    MEMMAP_RESERVED, 0 },
		{ TVM_HIGHMEM_BASE, vm->highmem, MEMMAP_RAM, 0 },
	};

	memcpy(vm->mem + PVH_MEMMAP_GPA, m, sizeof(m));
	return sizeof(m) / sizeof(m[0]);
}

static void
write_start_info(struct vm *vm, const char *cmdline, uint64_t rsdp)
{
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = PVH_CMDLINE_GPA,
		.rsdp_paddr = rsdp,
		.memmap_paddr = PVH_MEMMAP_GPA,
	};

	if (strlen(cmdline) >= PVH_CMDLINE_MAX)
		die("--cmdline is longer than %d bytes", PVH_CMDLINE_MAX - 1);
	strcpy((char *)vm->mem + PVH_CMDLINE_GPA, cmdline);
	si.memmap_entries = write_memmap(vm);
	memcpy(vm->mem + PVH_START_INFO_GPA, &si, sizeof(si));
}

/* The PVH entry state: flat 32-bit segments, CR0.PE only, %ebx = start_info. */
static void
set_bsp_pvh_state(struct vm *vm, uint32_t entry)
{
	struct vcpu *bsp = &vm->vcpu[0];
	struct kvm_sregs s;
	struct kvm_regs r = {
		.rip = entry, .rbx = PVH_START_INFO_GPA, .rflags = 0x2,
	};
	uint64_t gdt[3] = { 0, GDT_CODE32, GDT_DATA32 };

	memcpy(vm->mem + PVH_GDT_GPA, gdt, sizeof(gdt));
	if (ioctl(bsp->fd, KVM_GET_SREGS, &s) < 0)
		die("KVM_GET_SREGS: %s", strerror(errno));
	s.cs = flat_segment(0x08, 0xb, false);
	s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(0x10, 0x3, false);
	/* The protocol asks for a usable 32-bit TSS in TR, base 0, limit 0x67. */
	s.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xb, .present = 1 };
	s.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 0x2, .present = 1 };
	s.gdt.base = PVH_GDT_GPA;
	s.gdt.limit = sizeof(gdt) - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = CR0_PE | CR0_ET;
	s.cr3 = s.cr4 = 0;
	s.efer = 0;
	if (ioctl(bsp->fd, KVM_SET_SREGS, &s) < 0 ||
	    ioctl(bsp->fd, KVM_SET_REGS, &r) < 0)
		die("setting the BSP's PVH entry state: %s", strerror(errno));
}

int
load_linux_guest(struct vm *vm, const char *vmlinux, const char *cmdline)
{
	struct elf_file f;
	uint32_t entry;
	uint64_t rsdp;

	elf_open(&f, vmlinux);
	entry = pvh_entry(&f);
	elf_load(vm, &f);
	elf_close(&f);

	rsdp = acpi_build(vm, PVH_ACPI_GPA, PVH_ACPI_SIZE);
	write_start_info(vm, cmdline, rsdp);
	vm_create_pit(vm);
	set_bsp_pvh_state(vm, entry);
	return 0;
}
