/*
 * FreeBSD's libvmmapi interface, as far as the test VM implements it.
 *
 * Names, prototypes, enum values and struct layouts follow FreeBSD's
 * lib/libvmmapi/vmmapi.h and sys/amd64/include/vmm.h (see
 * /work/shared/docs/vmm-facts.md sections 2 and 3), so that code written
 * against FreeBSD's header runs unchanged against this library.
 *
 * One source, two API generations, chosen by VMMAPI_VERSION at compile time
 * exactly like FreeBSD's header:
 *   0103 (13.x, libvmmapi.so.5): per-vCPU calls take (struct vmctx *, int vcpu)
 *   0200 (14.x and later, libvmmapi.so.6): they take a struct vcpu * obtained
 *        from vm_vcpu_open().
 */
#ifndef TESTVM_VMMAPI_H
#define TESTVM_VMMAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#ifndef VMMAPI_VERSION
#define VMMAPI_VERSION	0200
#endif

typedef uint64_t vm_paddr_t;
typedef int64_t vm_ooffset_t;

/* amd64 userland cpuset_t: CPU_MAXSIZE = 4 * MAXCPU = 4096 bits. */
#define TVM_CPUSET_BYTES	512
typedef struct {
	uint64_t __bits[TVM_CPUSET_BYTES / 8];
} cpuset_t;

enum vm_reg_name {
	VM_REG_GUEST_RAX, VM_REG_GUEST_RBX, VM_REG_GUEST_RCX, VM_REG_GUEST_RDX,
	VM_REG_GUEST_RSI, VM_REG_GUEST_RDI, VM_REG_GUEST_RBP, VM_REG_GUEST_R8,
	VM_REG_GUEST_R9, VM_REG_GUEST_R10, VM_REG_GUEST_R11, VM_REG_GUEST_R12,
	VM_REG_GUEST_R13, VM_REG_GUEST_R14, VM_REG_GUEST_R15,
	VM_REG_GUEST_CR0,		/* 15 */
	VM_REG_GUEST_CR3, VM_REG_GUEST_CR4, VM_REG_GUEST_DR7,
	VM_REG_GUEST_RSP,		/* 19 */
	VM_REG_GUEST_RIP, VM_REG_GUEST_RFLAGS,
	VM_REG_GUEST_ES,		/* 22 */
	VM_REG_GUEST_CS, VM_REG_GUEST_SS, VM_REG_GUEST_DS, VM_REG_GUEST_FS,
	VM_REG_GUEST_GS, VM_REG_GUEST_LDTR, VM_REG_GUEST_TR,
	VM_REG_GUEST_IDTR,		/* 30 */
	VM_REG_GUEST_GDTR, VM_REG_GUEST_EFER, VM_REG_GUEST_CR2,
	VM_REG_GUEST_PDPTE0,		/* 34 */
	VM_REG_GUEST_PDPTE1, VM_REG_GUEST_PDPTE2, VM_REG_GUEST_PDPTE3,
	VM_REG_GUEST_INTR_SHADOW,	/* 38 */
	VM_REG_GUEST_DR0, VM_REG_GUEST_DR1, VM_REG_GUEST_DR2, VM_REG_GUEST_DR3,
	VM_REG_GUEST_DR6,		/* 43 */
	VM_REG_GUEST_ENTRY_INST_LENGTH,	/* 44: last one on 13.x and 14.x */
	VM_REG_GUEST_FS_BASE,		/* 45: 15/main only */
	VM_REG_GUEST_GS_BASE,
	VM_REG_GUEST_KGS_BASE,
	VM_REG_GUEST_TPR,		/* 48 */
	VM_REG_LAST_15
};

enum vm_cap_type {
	VM_CAP_HALT_EXIT, VM_CAP_MTRAP_EXIT, VM_CAP_PAUSE_EXIT,
	VM_CAP_UNRESTRICTED_GUEST, VM_CAP_ENABLE_INVPCID,
	VM_CAP_BPT_EXIT,		/* 5 */
	VM_CAP_RDPID, VM_CAP_RDTSCP,
	VM_CAP_IPI_EXIT,		/* 8: last one on 14.x */
	VM_CAP_MASK_HWINTR,		/* 9 */
	VM_CAP_RFLAGS_TF,		/* 10 */
	VM_CAP_MAX_15
};

enum vm_cpu_mode {
	CPU_MODE_REAL, CPU_MODE_PROTECTED, CPU_MODE_COMPATIBILITY, CPU_MODE_64BIT
};

enum vm_paging_mode {
	PAGING_MODE_FLAT, PAGING_MODE_32, PAGING_MODE_PAE, PAGING_MODE_64,
	PAGING_MODE_64_LA57
};

struct vm_guest_paging {		/* 24 bytes */
	uint64_t cr3;
	int cpl;
	enum vm_cpu_mode cpu_mode;
	enum vm_paging_mode paging_mode;
};

struct seg_desc {			/* 16 bytes */
	uint64_t base;
	uint32_t limit;
	uint32_t access;		/* VMX access-rights format */
};

/* Memory segment ids before 15 (15 numbers SYSMEM per NUMA domain). */
enum { VM_SYSMEM = 0, VM_BOOTROM = 1, VM_FRAMEBUFFER = 2, VM_PCIROM = 3 };

enum x2apic_state { X2APIC_DISABLED, X2APIC_ENABLED, X2APIC_STATE_LAST };

#define VM_MEMMAP_F_WIRED	0x01
#define VM_MEMMAP_F_IOMMU	0x02

struct vmctx;
struct vcpu;

#if VMMAPI_VERSION >= 0200
#define VCPU_ARGS	struct vcpu *vcpu
#else
#define VCPU_ARGS	struct vmctx *ctx, int vcpu
#endif

struct vmctx *vm_open(const char *name);
void vm_close(struct vmctx *ctx);
#if VMMAPI_VERSION >= 0200
struct vcpu *vm_vcpu_open(struct vmctx *ctx, int vcpuid);
void vm_vcpu_close(struct vcpu *vcpu);
int vm_vcpu_id(struct vcpu *vcpu);
int vm_suspend_all_cpus(struct vmctx *ctx);
#endif
int vm_get_register(VCPU_ARGS, int reg, uint64_t *retval);
int vm_set_register(VCPU_ARGS, int reg, uint64_t val);
int vm_get_register_set(VCPU_ARGS, unsigned int count, const int *regnums,
    uint64_t *regvals);
int vm_set_register_set(VCPU_ARGS, unsigned int count, const int *regnums,
    uint64_t *regvals);
int vm_get_seg_desc(VCPU_ARGS, int reg, struct seg_desc *seg_desc);
int vm_gla2gpa_nofault(VCPU_ARGS, struct vm_guest_paging *paging,
    uint64_t gla, int prot, uint64_t *gpa, int *fault);
int vm_mmap_getnext(struct vmctx *ctx, vm_paddr_t *gpa, int *segid,
    vm_ooffset_t *segoff, size_t *len, int *prot, int *flags);
int vm_get_memseg(struct vmctx *ctx, int ident, size_t *lenp, char *name,
    size_t namesiz);
int vm_get_device_fd(struct vmctx *ctx);
int vm_resume_all_cpus(struct vmctx *ctx);
int vm_suspend_cpu(VCPU_ARGS);
int vm_resume_cpu(VCPU_ARGS);
int vm_active_cpus(struct vmctx *ctx, cpuset_t *cpus);
int vm_suspended_cpus(struct vmctx *ctx, cpuset_t *cpus);
int vm_debug_cpus(struct vmctx *ctx, cpuset_t *cpus);
int vm_get_capability(VCPU_ARGS, enum vm_cap_type cap, int *retval);
int vm_set_capability(VCPU_ARGS, enum vm_cap_type cap, int val);
int vm_readwrite_kernemu_device(VCPU_ARGS, vm_paddr_t gpa, bool write,
    int size, uint64_t *value);
int vm_get_topology(struct vmctx *ctx, uint16_t *sockets, uint16_t *cores,
    uint16_t *threads, uint16_t *maxcpus);
int vm_get_x2apic_state(VCPU_ARGS, enum x2apic_state *s);
/* A pointer to a per-thread buffer of counters; NULL with errno on failure. */
uint64_t *vm_get_stats(VCPU_ARGS, struct timeval *ret_tv, int *ret_entries);
const char *vm_get_stat_desc(struct vmctx *ctx, int index);

#endif /* TESTVM_VMMAPI_H */
