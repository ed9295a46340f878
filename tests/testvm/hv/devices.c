/*
 * Devices.
 *
 * Userspace devices (this process only, like bhyve's): the COM1 console,
 * the power-off, AP spin-up and INIT ports, and an MMIO device in the hole whose
 * reads have a side effect.  Another process can never reach them: their
 * state lives here and vm_readwrite_kernemu_device refuses their addresses.
 *
 * In-kernel devices: KVM's local APIC, readable by other processes through
 * vm_readwrite_kernemu_device, as vmm.ko's vlapic is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "testvm.h"

#define LSR_THRE_TEMT	0x60	/* transmitter always empty */

void
dev_serial_open(struct vm *vm, const char *path)
{
	vm->serial_fd = STDERR_FILENO;
	if (path == NULL)
		return;
	vm->serial_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND |
	    O_CLOEXEC, 0644);
	if (vm->serial_fd < 0)
		die("--serial %s: %s", path, strerror(errno));
}

static void
pio_out(struct vcpu *v, uint16_t port, uint32_t val)
{
	uint8_t c = (uint8_t)val;

	switch (port) {
	case TVM_PORT_COM1:
		if (write(v->vm->serial_fd, &c, 1) < 0) {
			/* a lost console byte is not worth stopping the guest */
		}
		break;
	case TVM_PORT_SHUTDOWN:
		vm_request_exit(v->vm, 0, "guest powered off");
		break;
	case TVM_PORT_SPINUP:
		vcpu_spinup_ap(v, TVM_SPINUP_VCPU(val), TVM_SPINUP_RIP(val));
		break;
	case TVM_PORT_INIT:
		vcpu_init_ap(v, (int)val);
		break;
	default:
		break;	/* unclaimed: ignored, like bhyve's default inout handler */
	}
}

static uint32_t
pio_in(uint16_t port)
{
	if (port == TVM_PORT_COM1_LSR)
		return LSR_THRE_TEMT;
	if (port >= TVM_PORT_COM1 && port < TVM_PORT_COM1 + 8)
		return 0;
	return 0xffffffff;	/* unclaimed: all ones */
}

int
dev_pio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		uint32_t val = 0;

		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&val, data, run->io.size);
			pio_out(v, run->io.port, val);
		} else {
			val = pio_in(run->io.port);
			memcpy(data, &val, run->io.size);
		}
	}
	return 0;
}

/* The userspace MMIO device: every read bumps the read counter. */
static uint64_t
mmio_dev_read(struct vm *vm, uint64_t off)
{
	uint64_t n = atomic_fetch_add(&vm->mmio_reads, 1) + 1;

	switch (off) {
	case TVM_MMIO_REG_ID:
		return TVM_MMIO_ID;
	case TVM_MMIO_REG_READS:
		return n;
	default:
		return 0;
	}
}

int
dev_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr;
	char why[96];

	if (gpa >= TVM_MMIO_GPA && gpa < TVM_MMIO_GPA + TVM_MMIO_SIZE) {
		if (!run->mmio.is_write) {
			/*
			 * --io-delay: an emulation that takes a while.  Until
			 * this thread's next KVM_RUN the guest's RIP stays at
			 * the load and its target register is not written.
			 */
			if (v->vm->io_delay_ms > 0) {
				fprintf(stderr, "testvm %s: vCPU %d: emulating an "
				    "MMIO read for %d ms\n", v->vm->name, v->id,
				    v->vm->io_delay_ms);
				usleep((useconds_t)v->vm->io_delay_ms * 1000);
			}
			uint64_t val = mmio_dev_read(v->vm, gpa - TVM_MMIO_GPA);
			memcpy(run->mmio.data, &val, run->mmio.len);
		}
		return 0;
	}
	/* bhyve: "Unhandled memory access", then the VM aborts. */
	snprintf(why, sizeof(why), "unhandled memory access to %#llx on vCPU %d",
	    (unsigned long long)gpa, v->id);
	vm_request_exit(v->vm, 4, why);
	return -1;
}

/*
 * vm_readwrite_kernemu_device: only in-kernel devices.  Of vmm.ko's three
 * (local APIC, I/O APIC, HPET) the test VM offers the local APIC, the one a
 * debugger reads; everything else, the userspace MMIO device included, is
 * EINVAL.  Register rules from vmm.ko's lapic_mmio_read/write: reads need a
 * 16-byte aligned offset (any width), writes are 4 bytes wide.  A write
 * stores the register; unlike vmm.ko it triggers no side effect (no IPI).
 * In x2APIC mode the registers are MSRs: vlapic_read answers a memory-
 * mapped access with 0 and no error, and a write is dropped.
 */
int
dev_kernemu(struct vcpu *v, uint64_t gpa, bool write, int size, uint64_t *value)
{
	struct kvm_lapic_state lapic;
	uint64_t off;
	uint32_t reg;

	if (gpa < TVM_LAPIC_GPA || gpa >= TVM_LAPIC_GPA + 0x1000)
		return EINVAL;
	off = (gpa - TVM_LAPIC_GPA) & ~3ULL;
	if (off & 0xf)
		return EINVAL;
	if (write && size != 4)
		return EINVAL;
	if (dev_x2apic_mode(v)) {
		if (!write)
			*value = 0;
		return 0;
	}
	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
		return EIO;
	if (!write) {
		memcpy(&reg, &lapic.regs[off], 4);
		*value = reg;
		return 0;
	}
	reg = (uint32_t)*value;
	memcpy(&lapic.regs[off], &reg, 4);
	return ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0 ? EIO : 0;
}

/* IA32_APIC_BASE: bit 11 enables the local APIC, bit 10 selects x2APIC. */
#define MSR_APICBASE		0x1b
#define APICBASE_BSP		(1ULL << 8)
#define APICBASE_X2APIC		(1ULL << 10)
#define APICBASE_ENABLED	(1ULL << 11)

struct one_msr {
	struct kvm_msrs head;
	struct kvm_msr_entry entry;
};

/* Is the vCPU's local APIC in x2APIC mode (vmm.ko: x2apic(vlapic))? */
bool
dev_x2apic_mode(struct vcpu *v)
{
	struct one_msr m = { .head.nmsrs = 1, .entry.index = MSR_APICBASE };

	if (ioctl(v->fd, KVM_GET_MSRS, &m) != 1)
		return false;
	return (m.entry.data & APICBASE_X2APIC) != 0;
}

/* --x2apic-vcpu: the local APIC starts in x2APIC mode, as firmware may leave it. */
int
dev_set_x2apic_mode(struct vcpu *v)
{
	struct one_msr m = { .head.nmsrs = 1, .entry.index = MSR_APICBASE };

	m.entry.data = TVM_LAPIC_GPA | APICBASE_ENABLED | APICBASE_X2APIC |
	    (v->id == 0 ? APICBASE_BSP : 0);
	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -1;
}
