/*
 * The software CPU's objects, shared by softkvm.c (descriptors and the
 * state ioctls) and softkvm_run.c (KVM_RUN and the exits).
 */
#ifndef SOFTKVM_INT_H
#define SOFTKVM_INT_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "softkvm_uc.h"

#define SK_MAXSLOTS	8
#define SK_MAXCPU	128	/* vmm.ko's VM_MAXCPU on 14 and later */
#define SK_TCG_BUFFER	(16u << 20)	/* per engine, for translated code */
#define SK_RUN_SIZE	8192	/* struct kvm_run, then the PIO data page */
#define SK_PIO_OFFSET	4096

enum sk_kind { SK_SYS = 1, SK_VM, SK_VCPU };

struct sk_obj {
	enum sk_kind kind;
	int fd;
};

struct sk_vm {
	struct sk_obj obj;
	struct kvm_userspace_memory_region slot[SK_MAXSLOTS];
	int nslots;
	struct sk_vcpu *vcpu[SK_MAXCPU];
};

/* What a hook decided, acted on once uc_emu_start has returned. */
enum sk_hook_exit { HX_NONE, HX_BREAKPOINT, HX_EXCEPTION, HX_UNMAPPED };

struct sk_vcpu {
	struct sk_obj obj;
	struct sk_vm *vm;
	int id;
	uc_engine *uc;
	uc_context *ctx;	/* scratch for the hidden state (softkvm.c) */
	uint8_t *env;		/* its CPU image: QEMU's CPUX86State prefix */
	struct kvm_run *run;

	/* KVM_RUN <-> emulation thread, all under `lock`. */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool go;		/* run the engine */
	bool busy;		/* inside uc_emu_start */
	bool posted;		/* an exit is ready in `run` */
	bool io_wait;		/* a hook waits for the hv's I/O answer */
	bool stopping;		/* uc_emu_stop was asked for a kick */
	bool completing;	/* finishing an MMIO instruction: no stops */
	bool intr;		/* the posted exit is a kick (EINTR) */
	bool halted;		/* HLT: only a kick leaves KVM_RUN */
	bool refresh;		/* stopped to drop translated code, not an exit */
	int64_t flushed_ns;	/* when translated code was last dropped */
	enum sk_hook_exit hook_exit;

	/*
	 * The last MMIO access (see softkvm_run.c): its data for Unicorn's
	 * 4-byte pieces of it, and for the access again if a stop made
	 * Unicorn restart the instruction after the device had seen it.
	 */
	struct {
		uint64_t gpa, rip, value;
		int size;
		bool write, replay;
	} io;
	uint32_t exception;
	uint64_t unmapped_gpa;

	/* State KVM keeps that the engine has no place for. */
	uint32_t guest_debug;
	uint32_t mp_state;
	uint64_t apic_base;
	struct kvm_vcpu_events events;
	struct kvm_lapic_state lapic;
};

/* softkvm_run.c */
int sk_vcpu_start(struct sk_vcpu *v);
int sk_run(struct sk_vcpu *v);
void sk_map_mmio(struct sk_vcpu *v, uint64_t gpa, uint64_t len);

#endif /* SOFTKVM_INT_H */
