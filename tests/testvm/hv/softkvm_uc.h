/*
 * The part of Unicorn's C API (unicorn.h, x86.h of Unicorn 2.1) that the
 * software CPU uses, loaded with dlopen at run time: the build needs no
 * Unicorn headers, and the library found first (TESTVM_UNICORN, the
 * repository's .cache/unicorn, Python's unicorn package, the system) is
 * the one used.  The numbers are Unicorn's stable ABI values.
 */
#ifndef SOFTKVM_UC_H
#define SOFTKVM_UC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct uc_struct uc_engine;
typedef struct uc_context uc_context;
typedef size_t uc_hook;
typedef int uc_err;

#define UC_ARCH_X86		4
#define UC_MODE_64		8
#define UC_PROT_READ		1
#define UC_PROT_EXEC		4
#define UC_PROT_ALL		7
#define UC_HOOK_INTR		1
#define UC_HOOK_INSN		2
#define UC_HOOK_MEM_UNMAPPED	112	/* read | write | fetch */
#define UC_HOOK_MEM_WRITE_PROT	256
#define UC_HOOK_MEM_READ	1024
#define UC_HOOK_MEM_WRITE	2048
#define UC_MEM_WRITE		17
#define UC_MEM_WRITE_UNMAPPED	20
#define UC_MEM_WRITE_PROT	22
#define UC_X86_INS_IN		218
#define UC_X86_INS_OUT		500
#define UC_CTL_TB_FLUSH_W	0x4000000a	/* UC_CTL_WRITE(UC_CTL_TB_FLUSH, 0) */
#define UC_CTL_TLB_FLUSH_W	0x4000000b	/* UC_CTL_WRITE(UC_CTL_TLB_FLUSH, 0) */
#define UC_CTL_TCG_BUFFER_SIZE_W 0x4400000d	/* UC_CTL_WRITE(UC_CTL_TCG_BUFFER_SIZE, 1) */

enum {
	UC_X86_REG_RAX = 35, UC_X86_REG_RBP = 36, UC_X86_REG_RBX = 37,
	UC_X86_REG_RCX = 38, UC_X86_REG_RDI = 39, UC_X86_REG_RDX = 40,
	UC_X86_REG_RIP = 41, UC_X86_REG_RSI = 43, UC_X86_REG_RSP = 44,
	UC_X86_REG_CR0 = 50, UC_X86_REG_CR2 = 52, UC_X86_REG_CR3 = 53,
	UC_X86_REG_CR4 = 54,
	UC_X86_REG_DR0 = 66, UC_X86_REG_DR6 = 72, UC_X86_REG_DR7 = 73,
	UC_X86_REG_R8 = 106,		/* R8..R15 follow in order */
	UC_X86_REG_GDTR = 243, UC_X86_REG_MSR = 248,
	UC_X86_REG_RFLAGS = 253,
};

typedef struct {
	uint16_t selector;
	uint64_t base;
	uint32_t limit;
	uint32_t flags;
} uc_x86_mmr;

typedef struct {
	uint32_t rid;
	uint64_t value;
} uc_x86_msr;

typedef uint32_t (*uc_cb_insn_in_t)(uc_engine *, uint32_t port, int size, void *);
typedef void (*uc_cb_insn_out_t)(uc_engine *, uint32_t port, int size,
    uint32_t value, void *);
typedef void (*uc_cb_hookintr_t)(uc_engine *, uint32_t intno, void *);
typedef uint64_t (*uc_cb_mmio_read_t)(uc_engine *, uint64_t off, unsigned size,
    void *);
typedef void (*uc_cb_mmio_write_t)(uc_engine *, uint64_t off, unsigned size,
    uint64_t value, void *);
typedef void (*uc_cb_hookmem_t)(uc_engine *, int type, uint64_t addr, int size,
    int64_t value, void *);
typedef bool (*uc_cb_eventmem_t)(uc_engine *, int type, uint64_t addr, int size,
    int64_t value, void *);

/* The entry points, filled by uc_load(). */
struct uc_api {
	const char *path;
	unsigned (*version)(unsigned *major, unsigned *minor);
	uc_err (*open)(int arch, int mode, uc_engine **uc);
	const char *(*strerror)(uc_err err);
	uc_err (*reg_read)(uc_engine *uc, int regid, void *value);
	uc_err (*reg_write)(uc_engine *uc, int regid, const void *value);
	uc_err (*mem_map_ptr)(uc_engine *uc, uint64_t addr, size_t size,
	    uint32_t perms, void *ptr);
	uc_err (*mmio_map)(uc_engine *uc, uint64_t addr, size_t size,
	    uc_cb_mmio_read_t rd, void *rd_data, uc_cb_mmio_write_t wr,
	    void *wr_data);
	uc_err (*hook_add)(uc_engine *uc, uc_hook *hh, int type, void *cb,
	    void *user_data, uint64_t begin, uint64_t end, ...);
	uc_err (*emu_start)(uc_engine *uc, uint64_t begin, uint64_t until,
	    uint64_t timeout, size_t count);
	uc_err (*emu_stop)(uc_engine *uc);
	uc_err (*ctl)(uc_engine *uc, int control, ...);
	uc_err (*context_alloc)(uc_engine *uc, uc_context **ctx);
	size_t (*context_size)(uc_engine *uc);
	uc_err (*context_save)(uc_engine *uc, uc_context *ctx);
	uc_err (*context_restore)(uc_engine *uc, uc_context *ctx);
	/* QEMU's x86_update_hflags, exported by libunicorn: see softkvm.c */
	void (*update_hflags)(void *env);
};

extern struct uc_api uc;

/* Load the library once; on failure say in one line where it looked. */
int uc_load(void);

#endif /* SOFTKVM_UC_H */
