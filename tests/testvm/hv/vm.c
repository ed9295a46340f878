/*
 * The KVM VM and its memory.
 *
 * Guest RAM is one memfd whose file offset is the guest-physical address,
 * so that another process can mmap or pread/pwrite it exactly as it would
 * /dev/vmm/NAME on FreeBSD.  Like bhyve's PC layout, RAM is split around a
 * hole below 4 GiB: [0, lowmem) and [4 GiB, 4 GiB + highmem).  The hole
 * holds the MMIO devices; the memfd also spans it (it must reach 4 GiB +
 * highmem) but no guest access ever lands there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testvm.h"

/* Where KVM keeps the real-mode TSS and identity map (Intel only), in the hole. */
#define KVM_TSS_GPA		0xfffbd000ULL
#define KVM_IDENTITY_MAP_GPA	0xfffbc000ULL

static void
plan_memory(struct vm *vm, uint64_t mem_bytes)
{
	/*
	 * Small VMs keep their last 16 MiB above 4 GiB, so vm_mmap_getnext
	 * always reports two ranges with a hole between them, as a debugger
	 * must handle on any bhyve VM with more than 3 GiB.
	 */
	if (mem_bytes <= TVM_LOWMEM_MAX + TVM_HIGHMEM_MIN) {
		vm->lowmem = mem_bytes - TVM_HIGHMEM_MIN;
		vm->highmem = TVM_HIGHMEM_MIN;
	} else {
		vm->lowmem = TVM_LOWMEM_MAX;
		vm->highmem = mem_bytes - TVM_LOWMEM_MAX;
	}
	vm->mem_size = TVM_HIGHMEM_BASE + vm->highmem;
}

static int
set_slot(struct vm *vm, int slot, uint64_t gpa, uint64_t len)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = len,
		.userspace_addr = (uint64_t)(uintptr_t)(vm->mem + gpa),
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

int
vm_create_kvm(struct vm *vm, uint64_t mem_bytes)
{
	char memname[64];

	if (mem_bytes < (64ULL << 20))
		die("--mem must be at least 64M");
	plan_memory(vm, mem_bytes);

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		die("/dev/kvm: %s", strerror(errno));
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die("unexpected KVM API version");
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));

	snprintf(memname, sizeof(memname), "testvm:%s", vm->name);
	vm->mem_fd = memfd_create(memname, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (vm->mem_fd < 0 || ftruncate(vm->mem_fd, (off_t)vm->mem_size) < 0)
		die("guest memory: %s", strerror(errno));
	/* Clients share this fd: none may resize it under the guest. */
	fcntl(vm->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED,
	    vm->mem_fd, 0);
	if (vm->mem == MAP_FAILED)
		die("mmap guest memory: %s", strerror(errno));

	vm->kstate_fd = memfd_create("testvm:kstate", MFD_CLOEXEC);
	if (vm->kstate_fd < 0 ||
	    ftruncate(vm->kstate_fd, (off_t)sizeof(*vm->k)) < 0)
		die("vmm state page: %s", strerror(errno));
	vm->k = mmap(NULL, sizeof(*vm->k), PROT_READ | PROT_WRITE, MAP_SHARED,
	    vm->kstate_fd, 0);
	if (vm->k == MAP_FAILED)
		die("mmap vmm state page: %s", strerror(errno));

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_GPA) < 0)
		die("KVM_SET_TSS_ADDR: %s", strerror(errno));
	uint64_t idmap = KVM_IDENTITY_MAP_GPA;
	ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	/* In-kernel local APIC (and PIC/IOAPIC): vmm.ko's vlapic stand-in. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		die("KVM_CREATE_IRQCHIP: %s", strerror(errno));

	if (set_slot(vm, 0, 0, vm->lowmem) < 0 ||
	    set_slot(vm, 1, TVM_HIGHMEM_BASE, vm->highmem) < 0)
		die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

	vm->exit_efd = eventfd(0, EFD_CLOEXEC);
	if (vm->exit_efd < 0)
		die("eventfd: %s", strerror(errno));
	return 0;
}

/*
 * The in-kernel i8254, wired by KVM to IRQ 0 of its PIC and I/O APIC:
 * bhyve's vatpit lives in vmm.ko too.  Only a Linux guest wants it (it
 * calibrates and ticks on it); the demo guest never programs a timer.
 */
int
vm_create_pit(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		die("KVM_CREATE_PIT2: %s", strerror(errno));
	return 0;
}

bool
vm_gpa_is_ram(const struct vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len;

	if (end < gpa)
		return false;
	if (end <= vm->lowmem)
		return true;
	return gpa >= TVM_HIGHMEM_BASE && end <= TVM_HIGHMEM_BASE + vm->highmem;
}

/*
 * Ask main() to tear the VM down and exit with `code`.  The first request
 * wins: a breakpoint abort (4) is not overwritten by a later SIGTERM.
 */
void
vm_request_exit(struct vm *vm, int code, const char *why)
{
	int expected = 0;
	uint64_t one = 1;

	if (!atomic_compare_exchange_strong(&vm->exiting, &expected, 1))
		return;
	vm->exit_code = code;
	if (why != NULL)
		fprintf(stderr, "testvm %s: %s\n", vm->name, why);
	if (write(vm->exit_efd, &one, sizeof(one)) < 0) {
		/* main() also polls `exiting`; nothing else to do */
	}
}
