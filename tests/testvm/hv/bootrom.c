/*
 * The boot ROM segment.
 *
 * bhyve loads its firmware (-l bootrom) into a device-memory segment named
 * "bootrom" and maps it read/execute just below 4 GiB, so that the reset
 * vector 0xfffffff0 lands in it (usr.sbin/bhyve/bootrom.c).  Device memory
 * is not system memory: /dev/vmm/NAME does not map it.  vmm.ko gives each
 * such segment its own node, /dev/vmm.io/NAME.SEGNAME, mapped at the
 * offset within the segment (sys/dev/vmm/vmm_dev.c, devmem_create_cdev).
 *
 * bhyve's segment is larger than the ROM image, which bootrom_alloc places
 * at the segment's top: the mapping's offset within the segment (segoff) is
 * not 0, and a reader must map the node at that offset.
 *
 * The test VM's stand-in (with --bootrom): a 128 KiB segment whose upper
 * 64 KiB are mapped into the guest read-only at the top of 4 GiB (segoff
 * 64 KiB), with its node $TESTVM_DIR/vmm.io/NAME.bootrom (devmem.c).
 * The ROM holds a signature at its start and, at the reset vector,
 * real-mode code a debugger can disassemble: cli; hlt; jmp back to hlt.
 */
#include <string.h>
#include <sys/mman.h>

#include "testvm.h"

#define BOOTROM_SEG_SIZE 0x20000ULL		/* the segment: 128 KiB */
#define BOOTROM_SIZE	0x10000ULL		/* mapped: its upper 64 KiB */

static struct devmem bootrom;

static void
bootrom_fill(uint8_t *rom, uint64_t size)
{
	static const uint8_t reset[] = {
		0xfa,			/* cli */
		0xf4,			/* hlt */
		0xeb, 0xfd,		/* jmp (back to hlt) */
	};

	memset(rom, 0xff, size);	/* erased flash */
	strcpy((char *)rom, TVM_BOOTROM_SIGNATURE);
	memcpy(rom + size - 16, reset, sizeof(reset));	/* 0xfffffff0 */
}

void
bootrom_create(struct vm *vm, const char *dir)
{
	bootrom = (struct devmem){
		.name = "bootrom",
		.segid = vm->vmm_version >= 15 ? VM_BOOTROM_15 : VM_BOOTROM,
		.seg_size = BOOTROM_SEG_SIZE,
		.gpa = TVM_BOOTROM_GPA,		/* = 4 GiB - BOOTROM_SIZE */
		.len = BOOTROM_SIZE,
		.segoff = BOOTROM_SEG_SIZE - BOOTROM_SIZE,
		.prot = PROT_READ | PROT_EXEC,
	};
	/* The lower half of the segment stays zero. */
	bootrom_fill(devmem_create(vm, &bootrom, dir), BOOTROM_SIZE);
}
