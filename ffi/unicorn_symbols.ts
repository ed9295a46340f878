/**
 * libunicorn's symbol table (Unicorn 2.1 and later), with each C prototype beside its symbol,
 * and the constants of include/unicorn/unicorn.h and x86.h this project uses.
 *
 * uc_hook_add and uc_ctl are variadic in C; on amd64 (SysV) a variadic integer argument travels
 * exactly like a fixed one, so each is declared with the one extra argument this project passes.
 *
 * @module
 */

/** The symbols this project calls. */
export const UNICORN_SYMBOLS = {
  /** unsigned int uc_version(unsigned int *major, unsigned int *minor); */
  uc_version: { parameters: ["buffer", "buffer"], result: "u32" },
  /** uc_err uc_open(uc_arch arch, uc_mode mode, uc_engine **uc); */
  uc_open: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  /** uc_err uc_close(uc_engine *uc); */
  uc_close: { parameters: ["pointer"], result: "i32" },
  /** const char *uc_strerror(uc_err code); */
  uc_strerror: { parameters: ["i32"], result: "pointer" },
  /** uc_err uc_ctl(uc_engine *uc, uc_control_type control, ...); -- one int argument */
  uc_ctl: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  /** uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), uint64_t begin, uint64_t end); */
  uc_ctl_range: { name: "uc_ctl", parameters: ["pointer", "i32", "u64", "u64"], result: "i32" },
  /** uc_err uc_reg_write(uc_engine *uc, int regid, const void *value); */
  uc_reg_write: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  /** uc_err uc_reg_read(uc_engine *uc, int regid, void *value); */
  uc_reg_read: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  /** uc_err uc_mem_map_ptr(uc_engine *uc, uint64_t address, uint64_t size, uint32_t perms,
   *      void *ptr); */
  uc_mem_map_ptr: { parameters: ["pointer", "u64", "u64", "u32", "pointer"], result: "i32" },
  /** uc_err uc_mem_read(uc_engine *uc, uint64_t address, void *bytes, uint64_t size); */
  uc_mem_read: { parameters: ["pointer", "u64", "buffer", "u64"], result: "i32" },
  /** uc_err uc_mem_write(uc_engine *uc, uint64_t address, const void *bytes, uint64_t size); */
  uc_mem_write: { parameters: ["pointer", "u64", "buffer", "u64"], result: "i32" },
  /** uc_err uc_vmem_read(uc_engine *uc, uint64_t address, uc_prot prot, void *bytes,
   *      size_t size); */
  uc_vmem_read: { parameters: ["pointer", "u64", "i32", "buffer", "usize"], result: "i32" },
  /** uc_err uc_vmem_translate(uc_engine *uc, uint64_t address, uc_prot prot,
   *      uint64_t *paddress); */
  uc_vmem_translate: { parameters: ["pointer", "u64", "i32", "buffer"], result: "i32" },
  /** uc_err uc_emu_start(uc_engine *uc, uint64_t begin, uint64_t until, uint64_t timeout,
   *      size_t count); */
  uc_emu_start: { parameters: ["pointer", "u64", "u64", "u64", "usize"], result: "i32" },
  /** uc_err uc_emu_stop(uc_engine *uc); */
  uc_emu_stop: { parameters: ["pointer"], result: "i32" },
  /** uc_err uc_hook_add(uc_engine *uc, uc_hook *hh, int type, void *callback,
   *      void *user_data, uint64_t begin, uint64_t end, ...); -- UC_HOOK_INSN adds an int */
  uc_hook_add: {
    parameters: ["pointer", "buffer", "i32", "function", "pointer", "u64", "u64", "i32"],
    result: "i32",
  },
  /** uc_err uc_hook_del(uc_engine *uc, uc_hook hh); */
  uc_hook_del: { parameters: ["pointer", "usize"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type UnicornSymbols = Deno.DynamicLibrary<typeof UNICORN_SYMBOLS>["symbols"];

/** uc_arch / uc_mode. */
export const UC_ARCH_X86 = 4;
export const UC_MODE_32 = 1 << 2;
export const UC_MODE_64 = 1 << 3;

/** uc_err values this project names. */
export const UcErr = {
  OK: 0,
  READ_UNMAPPED: 6,
  WRITE_UNMAPPED: 7,
  FETCH_UNMAPPED: 8,
  INSN_INVALID: 10,
  EXCEPTION: 21,
} as const;

/** uc_prot. */
export const UC_PROT_READ = 1;
export const UC_PROT_WRITE = 2;
export const UC_PROT_EXEC = 4;
export const UC_PROT_ALL = 7;

/** uc_hook_type bits. */
export const UcHook = {
  INTR: 1 << 0,
  INSN: 1 << 1,
  CODE: 1 << 2,
  BLOCK: 1 << 3,
  MEM_READ_UNMAPPED: 1 << 4,
  MEM_WRITE_UNMAPPED: 1 << 5,
  MEM_FETCH_UNMAPPED: 1 << 6,
  MEM_READ: 1 << 10,
  MEM_WRITE: 1 << 11,
  INSN_INVALID: 1 << 14,
} as const;

/** uc_mem_type. */
export const UcMem = { READ: 16, WRITE: 17, FETCH: 18 } as const;

/** uc_ctl(UC_CTL_WRITE(UC_CTL_CPU_MODEL, 1), model): (type | nr << 26 | rw << 30). */
export const UC_CTL_CPU_MODEL_WRITE = 7 | (1 << 26) | (1 << 30);

/** uc_ctl(UC_CTL_WRITE(UC_CTL_TB_FLUSH, 0)): drop every translated block. */
export const UC_CTL_TB_FLUSH_WRITE = 10 | (1 << 30);
/** uc_ctl(UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), begin, end): drop the blocks in a range. */
export const UC_CTL_TB_REMOVE_CACHE_WRITE = 9 | (2 << 26) | (1 << 30);

/** uc_cpu_x86: the model whose CPUID the emulated instructions see. */
export const UC_CPU_X86_HASWELL = 19;

/** uc_x86_reg numbers (x86.h). */
export const UcX86Reg = {
  RAX: 35,
  RBX: 37,
  RCX: 38,
  RDX: 40,
  RSI: 43,
  RDI: 39,
  RBP: 36,
  RSP: 44,
  R8: 106,
  R9: 107,
  R10: 108,
  R11: 109,
  R12: 110,
  R13: 111,
  R14: 112,
  R15: 113,
  RIP: 41,
  RFLAGS: 253,
  CS: 11,
  SS: 49,
  DS: 17,
  ES: 28,
  FS: 32,
  GS: 33,
  CR0: 50,
  CR2: 52,
  CR3: 53,
  CR4: 54,
  DR0: 66,
  DR1: 67,
  DR2: 68,
  DR3: 69,
  DR6: 72,
  DR7: 73,
  IDTR: 242,
  GDTR: 243,
  LDTR: 244,
  TR: 245,
  MSR: 248,
  FS_BASE: 250,
  GS_BASE: 251,
} as const;

/** The 32-bit registers, which a UC_MODE_32 engine takes instead of the 64-bit ones. */
export const UcX86Reg32 = {
  EAX: 19,
  EBX: 21,
  ECX: 22,
  EDX: 24,
  ESI: 29,
  EDI: 23,
  EBP: 20,
  ESP: 30,
  EIP: 26,
  EFLAGS: 25,
} as const;

/** uc_x86_insn numbers for UC_HOOK_INSN. */
export const UcX86Insn = {
  CPUID: 113,
  IN: 218,
  OUT: 500,
  RDTSC: 608,
  RDTSCP: 609,
  SYSCALL: 699,
  SYSENTER: 700,
} as const;

/** Callback types (uc_cb_hookcode_t, uc_cb_hookintr_t, uc_cb_hookmem_t, uc_cb_eventmem_t…). */
export const CODE_CALLBACK = {
  parameters: ["pointer", "u64", "u32", "pointer"],
  result: "void",
} as const satisfies Deno.UnsafeCallbackDefinition;
export const INTR_CALLBACK = {
  parameters: ["pointer", "u32", "pointer"],
  result: "void",
} as const satisfies Deno.UnsafeCallbackDefinition;
export const MEM_CALLBACK = {
  parameters: ["pointer", "i32", "u64", "i32", "i64", "pointer"],
  result: "void",
} as const satisfies Deno.UnsafeCallbackDefinition;
export const EVENTMEM_CALLBACK = {
  parameters: ["pointer", "i32", "u64", "i32", "i64", "pointer"],
  result: "bool",
} as const satisfies Deno.UnsafeCallbackDefinition;
/** uc_cb_insn_syscall_t and friends: (uc, user_data); cpuid's returns int (1 = skip). */
export const INSN_CALLBACK = {
  parameters: ["pointer", "pointer"],
  result: "i32",
} as const satisfies Deno.UnsafeCallbackDefinition;
/** uc_cb_insn_in_t: uint32_t (uc, port, size, user_data). */
export const IN_CALLBACK = {
  parameters: ["pointer", "u32", "i32", "pointer"],
  result: "u32",
} as const satisfies Deno.UnsafeCallbackDefinition;
/** uc_cb_insn_out_t: void (uc, port, size, value, user_data). */
export const OUT_CALLBACK = {
  parameters: ["pointer", "u32", "i32", "u32", "pointer"],
  result: "void",
} as const satisfies Deno.UnsafeCallbackDefinition;
