/*
 * The hypervisor's shared state.  One process owns one VM, like bhyve:
 * main.c wires the pieces, vm.c makes the KVM VM and its memory, vcpu.c runs
 * one thread per vCPU, devices.c answers the guest's I/O, loader.c puts a
 * guest in memory, control.c serves other processes, regs.c and paging.c
 * carry out their register and translation requests.
 */
#ifndef TESTVM_H
#define TESTVM_H

#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpuset.h"
#include "testvm_abi.h"
#include "tvm_proto.h"
#include "vmmapi.h"

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;				/* KVM vCPU fd */
	struct kvm_run *run;
	pthread_t thread;

	/*
	 * vmm.ko's vCPU state machine, reduced to what a debugger sees:
	 * `running` while the thread is inside KVM_RUN, `frozen` while a
	 * request from another process owns the vCPU (VCPU_FROZEN).
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running;
	bool frozen;

	/* Capabilities (per vCPU, like vm_set_capability). */
	int cap_mtrap;
	int cap_bpt;
	int cap_mask_hwintr;
	int cap_halt, cap_pause;

	/* An AP waiting for its SIPI (vm->lapic_sipi only). */
	bool awaiting_sipi;

	/*
	 * The last exit (I/O or MMIO) is emulated but KVM completes it (RIP,
	 * and RAX for an `in`) only at the next KVM_RUN, as vmm.ko applies
	 * bhyve's result at the next VM_RUN.  Owned by the vCPU thread.
	 */
	bool exit_pending;
	/* vmm_stat VMEXIT_USERSPACE: every return of "VM_RUN" to the thread. */
	_Atomic uint64_t userspace_exits;
};

struct vm {
	const char *name;
	int ncpus;
	int vmm_version;		/* 13, 14 or 15: start-up, registers, caps */
	int spinup_delay_ms;
	int setup_ms;			/* 14+: bhyve's set-up before it resumes the BSP */
	int io_delay_ms;		/* userspace emulation time of an MMIO read */
	int x2apic_vcpu;		/* this vCPU's local APIC starts in x2APIC mode (-1: none) */
	/*
	 * APs are started by the guest's INIT/SIPI through the in-kernel local
	 * APIC (a Linux guest), not through the spin-up port (the demo guest).
	 */
	bool lapic_sipi;

	int kvm_fd, vm_fd;
	int mem_fd;			/* memfd, offset = guest-physical address */
	uint8_t *mem;			/* the whole memfd, mapped */
	uint64_t mem_size;		/* = top of the highest RAM range */
	uint64_t lowmem, highmem;	/* RAM [0, lowmem) and [4G, 4G+highmem) */

	struct vcpu vcpu[TVM_MAXCPU];

	/* vmm.ko's cpusets, in a page shared with the clients (tvm_proto.h). */
	struct tvm_kstate *k;
	int kstate_fd;

	/* Devices. */
	int serial_fd;
	_Atomic uint64_t mmio_reads;

	/* Exit request: any thread sets it, main() cleans up and exits. */
	_Atomic int exiting;
	int exit_code;
	int exit_efd;
};

/* vm.c */
int vm_create_kvm(struct vm *vm, uint64_t mem_bytes);
int vm_create_pit(struct vm *vm);
bool vm_gpa_is_ram(const struct vm *vm, uint64_t gpa, uint64_t len);
void vm_request_exit(struct vm *vm, int code, const char *why);

/* vcpu.c */
int vcpu_create(struct vm *vm, int id);
int vcpu_start_threads(struct vm *vm);
void vcpu_freeze(struct vcpu *v);
void vcpu_unfreeze(struct vcpu *v);
void vcpu_kick(struct vcpu *v);
int vcpu_suspend(struct vm *vm, int id);
int vcpu_resume(struct vm *vm, int id);
void vcpu_spinup_ap(struct vcpu *bsp, int target, uint64_t rip);
void vcpu_init_ap(struct vcpu *from, int target);
int vcpu_get_cap(struct vcpu *v, int cap, int *val);
int vcpu_set_cap(struct vcpu *v, int cap, int val);

/* regs.c: callers hold the vCPU frozen */
int regs_get(struct vcpu *v, int reg, uint64_t *val);
int regs_set(struct vcpu *v, int reg, uint64_t val);
int regs_get_segdesc(struct vcpu *v, int reg, struct seg_desc *desc);
int regs_set_realmode_start(struct vcpu *v, uint64_t rip);

/* diagnose.c */
void diagnose_internal_error(struct vcpu *v, const struct kvm_regs *r,
    const struct kvm_sregs *s);
int insn_bytes_at_rip(struct vcpu *v, const struct kvm_regs *r,
    const struct kvm_sregs *s, uint8_t *out);

/* emulate.c */
bool emulate_fence(struct vcpu *v);

/* paging.c */
int paging_gla2gpa(struct vm *vm, const struct tvm_paging *paging,
    uint64_t gla, int prot, uint64_t *gpa, int *fault);
void paging_from_sregs(const struct kvm_sregs *s, struct tvm_paging *p);

/* devices.c */
void dev_serial_open(struct vm *vm, const char *path);
int dev_pio(struct vcpu *v);
int dev_mmio(struct vcpu *v);
int dev_kernemu(struct vcpu *v, uint64_t gpa, bool write, int size,
    uint64_t *value);
bool dev_x2apic_mode(struct vcpu *v);
int dev_set_x2apic_mode(struct vcpu *v);

/* loader.c */
struct elf_file {
	const char *path;
	const uint8_t *img;	/* the whole file, mapped read-only */
	size_t len;
};
int elf_open(struct elf_file *f, const char *path);
void elf_close(struct elf_file *f);
uint64_t elf_load(struct vm *vm, const struct elf_file *f);
const void *elf_find_note(const struct elf_file *f, const char *owner,
    uint32_t type, size_t *desc_len);
struct kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code64);
int load_demo_guest(struct vm *vm, const char *elf_path);

/* pvh.c: a Linux vmlinux through the PVH entry */
int load_linux_guest(struct vm *vm, const char *vmlinux, const char *cmdline);

/* startup.c: bhyve's start-up sequence, per FreeBSD version */
bool startup_in_debug_set(const struct vm *vm, int id);
void startup_release_bsp(struct vm *vm);
void startup_park_wait(const struct vm *vm);

/*
 * devmem.c: device-memory segments (vm_create_devmem), each mapped into the
 * guest once and readable by other processes through its devmem node.
 */
#define TVM_MAXDEVMEM	2
/* 15 numbers eight SYSMEM segments (NUMA domains) first (sys/dev/vmm/vmm_mem.h). */
#define VM_BOOTROM_15		8
#define VM_FRAMEBUFFER_15	9
struct devmem {
	const char *name;		/* vm_get_memseg's name, and the node's suffix */
	int segid;
	int fd;				/* memfd: offset = offset within the segment */
	uint64_t seg_size;
	uint64_t gpa, len, segoff;	/* the one mapping */
	int prot;
	char node[PATH_MAX];		/* $TESTVM_DIR/vmm.io/NAME.SEGNAME */
};
uint8_t *devmem_create(struct vm *vm, struct devmem *d, const char *dir);
const struct devmem *devmem_by_segid(int segid);
int devmem_list(const struct devmem **out, int max);
void devmem_cleanup(void);

/* bootrom.c: the boot ROM segment at the top of 4 GiB */
void bootrom_create(struct vm *vm, const char *dir);

/* fbuf.c: the framebuffer segment at its BAR below 4 GiB */
void fbuf_create(struct vm *vm, const char *dir);

/* acpi.c: RSDP, XSDT and MADT; returns the RSDP's address */
uint64_t acpi_build(struct vm *vm, uint64_t gpa, uint64_t size);

/* control.c */
int control_listen(struct vm *vm, const char *dir);
void control_start(struct vm *vm);
void control_cleanup(void);

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* Last: where /dev/kvm is missing, KVM calls go to the software CPU. */
#include "softkvm.h"

#endif /* TESTVM_H */
