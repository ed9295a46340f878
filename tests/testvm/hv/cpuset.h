/*
 * Operations on vmm.ko's cpusets (struct tvm_cpuset, tvm_proto.h): bhyve
 * runs more than 64 vCPUs, so one word is not enough.
 */
#ifndef TESTVM_CPUSET_H
#define TESTVM_CPUSET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tvm_proto.h"

static inline bool
cpuset_has(struct tvm_cpuset *s, int id)
{
	return (atomic_load(&s->w[id / 64]) >> (id % 64)) & 1;
}

static inline void
cpuset_add(struct tvm_cpuset *s, int id)
{
	atomic_fetch_or(&s->w[id / 64], 1ULL << (id % 64));
}

static inline void
cpuset_del(struct tvm_cpuset *s, int id)
{
	atomic_fetch_and(&s->w[id / 64], ~(1ULL << (id % 64)));
}

/* dst = src, word by word (vm_suspend_cpu(-1): every active vCPU). */
static inline void
cpuset_copy(struct tvm_cpuset *dst, struct tvm_cpuset *src)
{
	for (int i = 0; i < TVM_CPUSET_WORDS; i++)
		atomic_store(&dst->w[i], atomic_load(&src->w[i]));
}

static inline void
cpuset_clear(struct tvm_cpuset *s)
{
	for (int i = 0; i < TVM_CPUSET_WORDS; i++)
		atomic_store(&s->w[i], 0);
}

#endif /* TESTVM_CPUSET_H */
