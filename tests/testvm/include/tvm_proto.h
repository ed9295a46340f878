/*
 * The control protocol between libvmmapi (lib/) and the hypervisor (hv/).
 *
 * It plays the part of the ioctls on /dev/vmm/NAME.  KVM's vCPU ioctls work
 * only in the process that created the VM, so every request is carried to
 * the hypervisor over a SOCK_SEQPACKET unix socket at $TESTVM_DIR/NAME and
 * executed there, on the same terms as vmm.ko executes an ioctl: per-vCPU
 * requests first freeze the vCPU (kick it out of the guest and wait).
 *
 * One request message, one reply message, both fixed size.  The reply to
 * TVM_OP_HELLO carries the guest-RAM memfd as SCM_RIGHTS ancillary data,
 * TVM_OP_KSTATE the memfd of the shared struct tvm_kstate.
 */
#ifndef TVM_PROTO_H
#define TVM_PROTO_H

#include <stdatomic.h>
#include <stdint.h>

#define TVM_PROTO_MAGIC		0x54564d35u	/* bump on any layout change */
/* bhyve allows more than 64 vCPUs (cpuset_t is 1024 bits on 14 and later). */
#define TVM_MAXCPU		128
#define TVM_MAXREGS		64
#define TVM_DEFAULT_DIR		"/tmp/testvm-vmm"

enum tvm_op {
	TVM_OP_HELLO = 1,	/* -> val[0]=ncpus val[1]=lowmem val[2]=highmem, fd */
	TVM_OP_GET_REGS,	/* vcpu, count, regs[] -> val[] */
	TVM_OP_SET_REGS,	/* vcpu, count, regs[], arg[0..count) values */
	TVM_OP_GET_SEGDESC,	/* vcpu, regs[0] -> val[0]=base [1]=limit [2]=access */
	TVM_OP_GLA2GPA,		/* vcpu, paging, arg[0]=gla arg[1]=prot -> val[0]=gpa [1]=fault */
	TVM_OP_MMAP_GETNEXT,	/* arg[0]=gpa -> gpa segid segoff len prot flags */
	TVM_OP_GET_MEMSEG,	/* arg[0]=ident -> val[0]=len, val[1..] the name (NUL-terminated) */
	TVM_OP_SUSPEND_CPU,	/* vcpu (-1: all active) */
	TVM_OP_RESUME_CPU,	/* vcpu (-1: all) */
	TVM_OP_GET_CAP,		/* vcpu, arg[0]=cap -> val[0] */
	TVM_OP_SET_CAP,		/* vcpu, arg[0]=cap arg[1]=value */
	TVM_OP_KERNEMU,		/* vcpu, arg[0]=gpa arg[1]=write arg[2]=size arg[3]=value -> val[0] */
	TVM_OP_TOPOLOGY,	/* -> sockets cores threads maxcpus */
	TVM_OP_GET_STATS,	/* vcpu -> val[0..TVM_NSTATS) (vmm_stat counters) */
	TVM_OP_X2APIC_STATE,	/* vcpu -> val[0] = enum x2apic_state */
	TVM_OP_KSTATE,		/* -> fd: the shared struct tvm_kstate */
	TVM_OP_KICK,		/* vcpu: vm_suspend_cpu's notify; NO reply */
};

/*
 * The vmm_stat counters the test VM keeps, by index (vm_get_stat_desc).
 * FreeBSD registers dozens; a debugger needs only this one, found by its
 * description as on FreeBSD (its index depends on module load order there).
 */
enum { TVM_STAT_VMEXIT_USERSPACE, TVM_NSTATS };
#define TVM_STAT_DESC_VMEXIT_USERSPACE	"number of vm exits handled in userspace"

enum { TVM_CPUS_ACTIVE, TVM_CPUS_SUSPENDED, TVM_CPUS_DEBUG };

/*
 * vmm.ko's cpusets, wide enough for TVM_MAXCPU vCPUs.  Each word is atomic
 * on its own, which is all vmm.ko promises too (CPU_SET_ATOMIC).
 */
#define TVM_CPUSET_WORDS	((TVM_MAXCPU + 63) / 64)

struct tvm_cpuset {
	_Atomic uint64_t w[TVM_CPUSET_WORDS];
};

/*
 * The state that vmm.ko's run-control ioctls read and set in place, in one
 * page the hypervisor shares with every client (TVM_OP_KSTATE passes its
 * memfd).  On FreeBSD, vm_debug_cpus is a syscall of a microsecond or two
 * and vm_suspend_cpu's effect is one atomic bit set (vmm.c) followed by a
 * kick; carried over the socket instead, each took 0.1 to 4 ms here, and
 * `w` mode's race with bhyve's release of the boot vCPU would be judged
 * on the test VM's transport rather than on the tool.
 */
struct tvm_kstate {
	struct tvm_cpuset active;
	struct tvm_cpuset suspended;
	struct tvm_cpuset debug;
};

struct tvm_paging {		/* same layout as struct vm_guest_paging */
	uint64_t cr3;
	int32_t cpl;
	int32_t cpu_mode;
	int32_t paging_mode;
	int32_t pad;
};

struct tvm_req {
	uint32_t magic;		/* TVM_PROTO_MAGIC */
	uint32_t op;		/* enum tvm_op */
	int32_t vcpu;
	uint32_t count;		/* number of regs[] in use */
	struct tvm_paging paging;
	uint64_t arg[TVM_MAXREGS];
	int32_t regs[TVM_MAXREGS];
};

struct tvm_resp {
	int32_t error;		/* 0 or an errno value, as an ioctl returns */
	uint32_t pad;
	uint64_t val[TVM_MAXREGS];	/* 512 bytes: also holds a cpuset_t */
};

#endif /* TVM_PROTO_H */
