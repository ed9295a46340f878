/*
 * libvmmapi for the test VM: FreeBSD's names, prototypes and errno
 * conventions (0, or -1 with errno), each call carried to the hypervisor.
 *
 * Built twice from this file (Makefile):
 *   VMMAPI_VERSION 0200 -> libvmmapi.so.6 (14.x/15): struct vcpu *, vm_vcpu_open
 *   VMMAPI_VERSION 0103 -> libvmmapi.so.5 (13.x):   (struct vmctx *, int vcpu),
 *                          no vm_vcpu_open, no vm_suspend_all_cpus
 * Register numbers: .so.5 stops at 44 (VM_REG_GUEST_ENTRY_INST_LENGTH) here
 * in the library, as any 13.x kernel does; for .so.6 the hypervisor decides
 * (--vmm-version 15, the default, accepts FS_BASE..TPR = 45..48; 14 stops
 * at 44).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "transport.h"

#pragma GCC visibility push(default)
#include "vmmapi.h"
#pragma GCC visibility pop

#if VMMAPI_VERSION >= 0200
struct vcpu {
	struct vmctx *ctx;
	int vcpuid;
};
#define VCTX	(vcpu->ctx)
#define VID	(vcpu->vcpuid)
#define LIB_REG_LAST	VM_REG_LAST_15
/* sizeof(cpuset_t) in FreeBSD 14+ userland: CPU_MAXSIZE 1024 bits. */
#define LIB_CPUSET_BYTES	128
#else
/* 13.x: CPU_MAXSIZE 256 bits. */
#define LIB_CPUSET_BYTES	32
#define VCTX	ctx
#define VID	vcpu
#define LIB_REG_LAST	(VM_REG_GUEST_ENTRY_INST_LENGTH + 1)
#endif

/* Turn a request's errno value into FreeBSD's return convention. */
static int
ret(int err)
{
	if (err == 0)
		return 0;
	errno = err;
	return -1;
}

static int
call(struct vmctx *ctx, enum tvm_op op, int vcpuid, struct tvm_req *req,
    struct tvm_resp *resp)
{
	if (ctx == NULL)
		return EINVAL;
	req->op = op;
	req->vcpu = vcpuid;
	return tvm_call(ctx, req, resp, NULL);
}

/* ---- VM handle ---------------------------------------------------------- */

/* Map the hypervisor's vmm state page (tvm_proto.h, struct tvm_kstate). */
static int
map_kstate(struct vmctx *ctx)
{
	struct tvm_req req = { .op = TVM_OP_KSTATE };
	struct tvm_resp resp;
	int fd, err = tvm_call(ctx, &req, &resp, &fd);
	void *p;

	if (err != 0)
		return err;
	if (fd < 0)
		return EIO;
	p = mmap(NULL, sizeof(*ctx->k), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return errno;
	ctx->k = p;
	return 0;
}

struct vmctx *
vm_open(const char *name)
{
	struct tvm_req req = { .op = TVM_OP_HELLO };
	struct tvm_resp resp;
	struct vmctx *ctx = calloc(1, sizeof(*ctx));
	int err;

	if (ctx == NULL)
		return NULL;
	pthread_mutex_init(&ctx->lock, NULL);
	ctx->sock = -1;
	ctx->memfd = -1;
	err = tvm_connect(name, &ctx->sock);
	if (err == 0)
		err = tvm_call(ctx, &req, &resp, &ctx->memfd);
	if (err == 0 && ctx->memfd < 0)
		err = EIO;
	if (err == 0)
		err = map_kstate(ctx);
	if (err != 0) {
		if (ctx->sock >= 0 && err != ENXIO)
			close(ctx->sock);
		free(ctx);
		errno = err == ENXIO ? ENOENT : err;	/* died while opening */
		return NULL;
	}
	ctx->ncpus = (int)resp.val[0];
	ctx->lowmem = resp.val[1];
	ctx->highmem = resp.val[2];
	return ctx;
}

void
vm_close(struct vmctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->sock >= 0)
		close(ctx->sock);
	if (ctx->memfd >= 0)
		close(ctx->memfd);
	if (ctx->k != NULL)
		munmap(ctx->k, sizeof(*ctx->k));
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

int
vm_get_device_fd(struct vmctx *ctx)
{
	return ctx->memfd;
}

#if VMMAPI_VERSION >= 0200
/* As in FreeBSD: only a malloc, errors show up on first use. */
struct vcpu *
vm_vcpu_open(struct vmctx *ctx, int vcpuid)
{
	struct vcpu *vcpu = malloc(sizeof(*vcpu));

	if (vcpu != NULL) {
		vcpu->ctx = ctx;
		vcpu->vcpuid = vcpuid;
	}
	return vcpu;
}

void
vm_vcpu_close(struct vcpu *vcpu)
{
	free(vcpu);
}

int
vm_vcpu_id(struct vcpu *vcpu)
{
	return vcpu->vcpuid;
}
#endif

/* ---- Registers ---------------------------------------------------------- */

static int
regs_request(struct vmctx *ctx, int vcpuid, enum tvm_op op, unsigned int count, const int *regnums,
    uint64_t *regvals)
{
	struct tvm_req req = { 0 };
	struct tvm_resp resp;

	for (unsigned int done = 0; done < count; ) {
		unsigned int n = count - done > TVM_MAXREGS ? TVM_MAXREGS :
		    count - done;

		for (unsigned int i = 0; i < n; i++) {
			if (regnums[done + i] < 0 || regnums[done + i] >= LIB_REG_LAST)
				return EINVAL;
			req.regs[i] = regnums[done + i];
			if (op == TVM_OP_SET_REGS)
				req.arg[i] = regvals[done + i];
		}
		req.count = n;
		int err = call(ctx, op, vcpuid, &req, &resp);
		if (err)
			return err;
		if (op == TVM_OP_GET_REGS)
			memcpy(regvals + done, resp.val, n * sizeof(uint64_t));
		done += n;
	}
	return 0;
}

int
vm_get_register(VCPU_ARGS, int reg, uint64_t *retval)
{
	return ret(regs_request(VCTX, VID, TVM_OP_GET_REGS, 1, &reg, retval));
}

int
vm_set_register(VCPU_ARGS, int reg, uint64_t val)
{
	return ret(regs_request(VCTX, VID, TVM_OP_SET_REGS, 1, &reg, &val));
}

int
vm_get_register_set(VCPU_ARGS, unsigned int count, const int *regnums,
    uint64_t *regvals)
{
	return ret(regs_request(VCTX, VID, TVM_OP_GET_REGS, count, regnums,
	    regvals));
}

int
vm_set_register_set(VCPU_ARGS, unsigned int count, const int *regnums,
    uint64_t *regvals)
{
	return ret(regs_request(VCTX, VID, TVM_OP_SET_REGS, count, regnums,
	    regvals));
}

int
vm_get_seg_desc(VCPU_ARGS, int reg, struct seg_desc *desc)
{
	struct tvm_req req = { .regs = { reg } };
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_GET_SEGDESC, VID, &req, &resp);

	if (err == 0) {
		desc->base = resp.val[0];
		desc->limit = (uint32_t)resp.val[1];
		desc->access = (uint32_t)resp.val[2];
	}
	return ret(err);
}

/* ---- Translation and memory ---------------------------------------------- */

int
vm_gla2gpa_nofault(VCPU_ARGS, struct vm_guest_paging *paging, uint64_t gla,
    int prot, uint64_t *gpa, int *fault)
{
	struct tvm_req req = {
		.paging = {
			.cr3 = paging->cr3, .cpl = paging->cpl,
			.cpu_mode = paging->cpu_mode,
			.paging_mode = paging->paging_mode,
		},
		.arg = { gla, (uint64_t)prot },
	};
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_GLA2GPA, VID, &req, &resp);

	if (err == 0) {
		*fault = (int)resp.val[1];
		if (!*fault)
			*gpa = resp.val[0];
	}
	return ret(err);
}

int
vm_mmap_getnext(struct vmctx *ctx, vm_paddr_t *gpa, int *segid,
    vm_ooffset_t *segoff, size_t *len, int *prot, int *flags)
{
	struct tvm_req req = { .arg = { *gpa } };
	struct tvm_resp resp;
	int err = call(ctx, TVM_OP_MMAP_GETNEXT, -1, &req, &resp);

	if (err == 0) {
		*gpa = resp.val[0];
		*segid = (int)resp.val[1];
		*segoff = (vm_ooffset_t)resp.val[2];
		*len = resp.val[3];
		*prot = (int)resp.val[4];
		*flags = (int)resp.val[5];
	}
	return ret(err);
}

int
vm_get_memseg(struct vmctx *ctx, int ident, size_t *lenp, char *name,
    size_t namesiz)
{
	struct tvm_req req = { .arg = { (uint64_t)(int64_t)ident } };
	struct tvm_resp resp;
	int err = call(ctx, TVM_OP_GET_MEMSEG, -1, &req, &resp);

	if (err == 0) {
		*lenp = resp.val[0];
		/* System memory is unnamed; device memory ("bootrom") is not. */
		if (name != NULL && namesiz > 0)
			snprintf(name, namesiz, "%s", (const char *)&resp.val[1]);
	}
	return ret(err);
}

/* ---- Run control ---------------------------------------------------------- */

static int
cpus_request(struct vmctx *ctx, enum tvm_op op, int vcpuid)
{
	struct tvm_req req = { 0 };
	struct tvm_resp resp;

	return call(ctx, op, vcpuid, &req, &resp);
}

#if VMMAPI_VERSION >= 0200
int
vm_suspend_all_cpus(struct vmctx *ctx)
{
	return ret(cpus_request(ctx, TVM_OP_SUSPEND_CPU, -1));
}
#endif

int
vm_resume_all_cpus(struct vmctx *ctx)
{
	return ret(cpus_request(ctx, TVM_OP_RESUME_CPU, -1));
}

/*
 * Whether the hypervisor still serves this handle: one poll(2), about what
 * an ioctl costs.  A VM that is gone answers ENXIO, as its socket would.
 */
static bool
vm_alive(struct vmctx *ctx)
{
	struct pollfd p = { .fd = ctx->sock };

	if (ctx->sock < 0 || ctx->k == NULL)
		return false;
	return poll(&p, 1, 0) == 0 || !(p.revents & (POLLHUP | POLLERR));
}

/*
 * 0103: vcpu == -1 means all; 0200 has vm_suspend_all_cpus for that.
 * vmm.ko's vm_suspend_cpu sets the vCPU's bit in debug_cpus, then notifies
 * the vCPU (an IPI if it is in the guest) and returns without waiting for
 * it to leave.  Here: the bit is set at once, in the shared page (a vCPU
 * thread checks it before each entry), and the kick is posted over the
 * socket, unanswered, so a batch of suspends does not wait for the
 * hypervisor's control thread to be scheduled once per vCPU.
 */
int
vm_suspend_cpu(VCPU_ARGS)
{
	struct vmctx *vctx = VCTX;
	int id = VID;
	struct tvm_req req = { .op = TVM_OP_KICK, .vcpu = id };

	if (vctx == NULL || id < 0)
		return ret(cpus_request(vctx, TVM_OP_SUSPEND_CPU, id));
	if (!vm_alive(vctx))
		return ret(ENXIO);
	if (id >= vctx->ncpus || id >= TVM_MAXCPU ||
	    !(atomic_load(&vctx->k->active.w[id / 64]) >> (id % 64) & 1))
		return ret(EINVAL);
	atomic_fetch_or(&vctx->k->debug.w[id / 64], 1ULL << (id % 64));
	return ret(tvm_post(vctx, &req));
}

int
vm_resume_cpu(VCPU_ARGS)
{
	return ret(cpus_request(VCTX, TVM_OP_RESUME_CPU, VID));
}

/* Read straight from the shared page, as vmm.ko's ioctl copies its cpuset out. */
static int
get_cpus(struct vmctx *ctx, int which, cpuset_t *cpus)
{
	struct tvm_cpuset *set;
	uint64_t words[LIB_CPUSET_BYTES / 8] = { 0 };

	_Static_assert(LIB_CPUSET_BYTES >= TVM_CPUSET_WORDS * 8, "cpuset_t size");
	if (ctx == NULL)
		return ret(EINVAL);
	if (!vm_alive(ctx))
		return ret(ENXIO);
	set = which == TVM_CPUS_ACTIVE ? &ctx->k->active :
	    which == TVM_CPUS_DEBUG ? &ctx->k->debug : &ctx->k->suspended;
	for (int i = 0; i < TVM_CPUSET_WORDS; i++)
		words[i] = atomic_load(&set->w[i]);
	memcpy(cpus, words, LIB_CPUSET_BYTES);
	return ret(0);
}

int
vm_active_cpus(struct vmctx *ctx, cpuset_t *cpus)
{
	return get_cpus(ctx, TVM_CPUS_ACTIVE, cpus);
}

int
vm_suspended_cpus(struct vmctx *ctx, cpuset_t *cpus)
{
	return get_cpus(ctx, TVM_CPUS_SUSPENDED, cpus);
}

int
vm_debug_cpus(struct vmctx *ctx, cpuset_t *cpus)
{
	return get_cpus(ctx, TVM_CPUS_DEBUG, cpus);
}

/* ---- Capabilities, devices, topology -------------------------------------- */

int
vm_get_capability(VCPU_ARGS, enum vm_cap_type cap, int *retval)
{
	struct tvm_req req = { .arg = { (uint64_t)cap } };
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_GET_CAP, VID, &req, &resp);

	if (err == 0)
		*retval = (int)resp.val[0];
	return ret(err);
}

int
vm_set_capability(VCPU_ARGS, enum vm_cap_type cap, int val)
{
	struct tvm_req req = { .arg = { (uint64_t)cap, (uint64_t)(int64_t)val } };
	struct tvm_resp resp;

	return ret(call(VCTX, TVM_OP_SET_CAP, VID, &req, &resp));
}

int
vm_readwrite_kernemu_device(VCPU_ARGS, vm_paddr_t gpa, bool write, int size,
    uint64_t *value)
{
	struct tvm_req req = {
		.arg = { gpa, write, (uint64_t)size, write ? *value : ~0ULL },
	};
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_KERNEMU, VID, &req, &resp);

	if (err == 0 && !write)
		*value = resp.val[0];
	return ret(err);
}

int
vm_get_x2apic_state(VCPU_ARGS, enum x2apic_state *state)
{
	struct tvm_req req = { 0 };
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_X2APIC_STATE, VID, &req, &resp);

	if (err == 0)
		*state = (enum x2apic_state)resp.val[0];
	return ret(err);
}

/* As FreeBSD's: the counters land in a per-thread buffer the caller reads. */
uint64_t *
vm_get_stats(VCPU_ARGS, struct timeval *ret_tv, int *ret_entries)
{
	static _Thread_local uint64_t stats[TVM_NSTATS];
	struct tvm_req req = { 0 };
	struct tvm_resp resp;
	int err = call(VCTX, TVM_OP_GET_STATS, VID, &req, &resp);

	if (err != 0) {
		errno = err;
		return NULL;
	}
	memcpy(stats, resp.val, sizeof(stats));
	if (ret_tv != NULL)
		gettimeofday(ret_tv, NULL);
	if (ret_entries != NULL)
		*ret_entries = TVM_NSTATS;
	return stats;
}

const char *
vm_get_stat_desc(struct vmctx *ctx, int index)
{
	(void)ctx;
	return index == TVM_STAT_VMEXIT_USERSPACE ?
	    TVM_STAT_DESC_VMEXIT_USERSPACE : NULL;
}

int
vm_get_topology(struct vmctx *ctx, uint16_t *sockets, uint16_t *cores,
    uint16_t *threads, uint16_t *maxcpus)
{
	struct tvm_req req = { 0 };
	struct tvm_resp resp;
	int err = call(ctx, TVM_OP_TOPOLOGY, -1, &req, &resp);

	if (err == 0) {
		*sockets = (uint16_t)resp.val[0];
		*cores = (uint16_t)resp.val[1];
		*threads = (uint16_t)resp.val[2];
		*maxcpus = (uint16_t)resp.val[3];
	}
	return ret(err);
}
