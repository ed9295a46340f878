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
 * The test VM's stand-in (with --bootrom): a 128 KiB memfd whose upper
 * 64 KiB are mapped into the guest read-only at the top of 4 GiB (segoff
 * 64 KiB), and a node $TESTVM_DIR/vmm.io/NAME.bootrom (a symlink to the
 * memfd through /proc) that another process opens and maps the same way.
 * The ROM holds a signature at its start and, at the reset vector,
 * real-mode code a debugger can disassemble: cli; hlt; jmp back to hlt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testvm.h"

#define BOOTROM_SEG_SIZE 0x20000ULL		/* the segment: 128 KiB */
#define BOOTROM_SIZE	0x10000ULL		/* mapped: its upper 64 KiB */
#define BOOTROM_SEGOFF	(BOOTROM_SEG_SIZE - BOOTROM_SIZE)
#define BOOTROM_SLOT	2			/* 0, 1: system memory (vm.c) */

static char node_path[PATH_MAX];

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
	char io_dir[PATH_MAX - 64], target[64];
	struct kvm_userspace_memory_region r;
	uint8_t *rom;

	vm->bootrom_size = BOOTROM_SIZE;
	vm->bootrom_seg_size = BOOTROM_SEG_SIZE;
	vm->bootrom_segoff = BOOTROM_SEGOFF;
	vm->bootrom_gpa = TVM_BOOTROM_GPA;	/* = 4 GiB - BOOTROM_SIZE */
	vm->bootrom_fd = memfd_create("testvm:bootrom", MFD_CLOEXEC);
	if (vm->bootrom_fd < 0 ||
	    ftruncate(vm->bootrom_fd, (off_t)BOOTROM_SEG_SIZE) < 0)
		die("boot ROM: %s", strerror(errno));
	rom = mmap(NULL, BOOTROM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
	    vm->bootrom_fd, BOOTROM_SEGOFF);
	if (rom == MAP_FAILED)
		die("mmap boot ROM: %s", strerror(errno));
	bootrom_fill(rom, BOOTROM_SIZE);	/* the lower half stays zero */

	r = (struct kvm_userspace_memory_region){
		.slot = BOOTROM_SLOT,
		.flags = KVM_MEM_READONLY,
		.guest_phys_addr = vm->bootrom_gpa,
		.memory_size = BOOTROM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)rom,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		die("boot ROM memory slot: %s", strerror(errno));

	/* The devmem node: $dir/vmm.io/NAME.bootrom. */
	if ((size_t)snprintf(io_dir, sizeof(io_dir), "%s/vmm.io", dir) >=
	    sizeof(io_dir) - 64)
		die("%s: path too long", dir);
	if (mkdir(io_dir, 0755) < 0 && errno != EEXIST)
		die("%s: %s", io_dir, strerror(errno));
	if ((size_t)snprintf(node_path, sizeof(node_path), "%s/%s.bootrom",
	    io_dir, vm->name) >= sizeof(node_path))
		die("%s: path too long", io_dir);
	snprintf(target, sizeof(target), "/proc/%d/fd/%d", (int)getpid(),
	    vm->bootrom_fd);
	unlink(node_path);	/* left by a VM of this name that was killed */
	if (symlink(target, node_path) < 0)
		die("%s: %s", node_path, strerror(errno));
}

void
bootrom_cleanup(void)
{
	if (node_path[0] != '\0')
		unlink(node_path);
	node_path[0] = '\0';
}
