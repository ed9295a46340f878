/**
 * libvmmapi API 0200 (FreeBSD 14.x and later, libvmmapi.so.6): per-vCPU calls take the
 * `struct vcpu *` that vm_vcpu_open returns. Prototypes from lib/libvmmapi/vmmapi.h.
 *
 * @module
 */

import { VM_SYMBOLS } from "./symbols_vm.ts";

/** The 0200 symbols this project calls. */
export const SYMBOLS_0200 = {
  ...VM_SYMBOLS,
  /** struct vcpu *vm_vcpu_open(struct vmctx *ctx, int vcpuid); */
  vm_vcpu_open: { parameters: ["pointer", "i32"], result: "pointer" },
  /** void vm_vcpu_close(struct vcpu *vcpu); */
  vm_vcpu_close: { parameters: ["pointer"], result: "void" },
  /** int vm_get_register(struct vcpu *vcpu, int reg, uint64_t *retval); */
  vm_get_register: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  /** int vm_set_register(struct vcpu *vcpu, int reg, uint64_t val); */
  vm_set_register: { parameters: ["pointer", "i32", "u64"], result: "i32" },
  /** int vm_get_register_set(struct vcpu *vcpu, unsigned int count, const int *regnums,
   *      uint64_t *regvals); */
  vm_get_register_set: { parameters: ["pointer", "u32", "buffer", "buffer"], result: "i32" },
  /** int vm_get_seg_desc(struct vcpu *vcpu, int reg, struct seg_desc *seg_desc); */
  vm_get_seg_desc: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  /** int vm_gla2gpa_nofault(struct vcpu *vcpu, struct vm_guest_paging *paging, uint64_t gla,
   *      int prot, uint64_t *gpa, int *fault); */
  vm_gla2gpa_nofault: {
    parameters: ["pointer", "buffer", "u64", "i32", "buffer", "buffer"],
    result: "i32",
  },
  /** int vm_suspend_cpu(struct vcpu *vcpu); */
  vm_suspend_cpu: { parameters: ["pointer"], result: "i32" },
  /** int vm_resume_cpu(struct vcpu *vcpu); */
  vm_resume_cpu: { parameters: ["pointer"], result: "i32" },
  /** int vm_suspend_all_cpus(struct vmctx *ctx); (declared for completeness; the run control
   *  suspends vCPU by vCPU so that it knows which ones it suspended) */
  vm_suspend_all_cpus: { parameters: ["pointer"], result: "i32", optional: true },
  /** int vm_get_capability(struct vcpu *vcpu, enum vm_cap_type cap, int *retval); */
  vm_get_capability: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  /** int vm_readwrite_kernemu_device(struct vcpu *vcpu, vm_paddr_t gpa, bool write, int size,
   *      uint64_t *value); */
  vm_readwrite_kernemu_device: {
    parameters: ["pointer", "u64", "bool", "i32", "buffer"],
    result: "i32",
  },
  /** uint64_t *vm_get_stats(struct vcpu *vcpu, struct timeval *ret_tv, int *ret_entries);
   *  (a per-thread buffer; NULL with errno on failure) */
  vm_get_stats: { parameters: ["pointer", "buffer", "buffer"], result: "pointer", optional: true },
  /** int vm_get_x2apic_state(struct vcpu *vcpu, enum x2apic_state *s); */
  vm_get_x2apic_state: { parameters: ["pointer", "buffer"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;
