/**
 * libvmmapi API 0103 (FreeBSD 13.x, libvmmapi.so.5): per-vCPU calls take `ctx, int vcpu`;
 * there is no vm_vcpu_open and no vm_suspend_all_cpus (vm_suspend_cpu(ctx, -1) does that).
 * Prototypes from lib/libvmmapi/vmmapi.h on stable/13.
 *
 * @module
 */

import { VM_SYMBOLS } from "./symbols_vm.ts";

/** The 0103 symbols this project calls. */
export const SYMBOLS_0103 = {
  ...VM_SYMBOLS,
  /** int vm_get_register(struct vmctx *ctx, int vcpu, int reg, uint64_t *retval); */
  vm_get_register: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  /** int vm_set_register(struct vmctx *ctx, int vcpu, int reg, uint64_t val); */
  vm_set_register: { parameters: ["pointer", "i32", "i32", "u64"], result: "i32" },
  /** int vm_get_register_set(struct vmctx *ctx, int vcpu, unsigned int count,
   *      const int *regnums, uint64_t *regvals); */
  vm_get_register_set: {
    parameters: ["pointer", "i32", "u32", "buffer", "buffer"],
    result: "i32",
  },
  /** int vm_get_seg_desc(struct vmctx *ctx, int vcpu, int reg, struct seg_desc *seg_desc); */
  vm_get_seg_desc: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  /** int vm_gla2gpa_nofault(struct vmctx *ctx, int vcpuid, struct vm_guest_paging *paging,
   *      uint64_t gla, int prot, uint64_t *gpa, int *fault); */
  vm_gla2gpa_nofault: {
    parameters: ["pointer", "i32", "buffer", "u64", "i32", "buffer", "buffer"],
    result: "i32",
  },
  /** int vm_suspend_cpu(struct vmctx *ctx, int vcpu); (vcpu -1: every active vCPU) */
  vm_suspend_cpu: { parameters: ["pointer", "i32"], result: "i32" },
  /** int vm_resume_cpu(struct vmctx *ctx, int vcpu); */
  vm_resume_cpu: { parameters: ["pointer", "i32"], result: "i32" },
  /** int vm_get_capability(struct vmctx *ctx, int vcpu, enum vm_cap_type cap, int *retval); */
  vm_get_capability: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  /** int vm_readwrite_kernemu_device(struct vmctx *ctx, int vcpu, vm_paddr_t gpa, bool write,
   *      int size, uint64_t *value); */
  vm_readwrite_kernemu_device: {
    parameters: ["pointer", "i32", "u64", "bool", "i32", "buffer"],
    result: "i32",
  },
  /** uint64_t *vm_get_stats(struct vmctx *ctx, int vcpu, struct timeval *ret_tv,
   *      int *ret_entries); */
  vm_get_stats: {
    parameters: ["pointer", "i32", "buffer", "buffer"],
    result: "pointer",
    optional: true,
  },
  /** int vm_get_x2apic_state(struct vmctx *ctx, int vcpu, enum x2apic_state *s); */
  vm_get_x2apic_state: { parameters: ["pointer", "i32", "buffer"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;
