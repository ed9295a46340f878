/**
 * The libvmmapi calls on the whole VM (`struct vmctx *`), the same in API 0103 (FreeBSD 13.x)
 * and 0200 (14.x and later); each generation's table adds its per-vCPU calls.
 * Prototypes from lib/libvmmapi/vmmapi.h.
 *
 * @module
 */

/** The VM-wide symbols this project calls. */
export const VM_SYMBOLS = {
  /** struct vmctx *vm_open(const char *name); */
  vm_open: { parameters: ["buffer"], result: "pointer" },
  /** void vm_close(struct vmctx *ctx); */
  vm_close: { parameters: ["pointer"], result: "void" },
  /** int vm_mmap_getnext(struct vmctx *ctx, vm_paddr_t *gpa, int *segid, vm_ooffset_t *segoff,
   *      size_t *len, int *prot, int *flags); */
  vm_mmap_getnext: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  /** int vm_get_memseg(struct vmctx *ctx, int ident, size_t *lenp, char *name,
   *      size_t namesiz); */
  vm_get_memseg: { parameters: ["pointer", "i32", "buffer", "buffer", "usize"], result: "i32" },
  /** int vm_get_device_fd(struct vmctx *ctx); */
  vm_get_device_fd: { parameters: ["pointer"], result: "i32" },
  /** int vm_active_cpus(struct vmctx *ctx, cpuset_t *cpus); */
  vm_active_cpus: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int vm_suspended_cpus(struct vmctx *ctx, cpuset_t *cpus); */
  vm_suspended_cpus: { parameters: ["pointer", "buffer"], result: "i32" },
  /** int vm_debug_cpus(struct vmctx *ctx, cpuset_t *cpus); */
  vm_debug_cpus: { parameters: ["pointer", "buffer"], result: "i32" },
  /** const char *vm_get_stat_desc(struct vmctx *ctx, int index); (NULL past the last) */
  vm_get_stat_desc: { parameters: ["pointer", "i32"], result: "pointer", optional: true },
  /** int vm_get_topology(struct vmctx *ctx, uint16_t *sockets, uint16_t *cores,
   *      uint16_t *threads, uint16_t *maxcpus); */
  vm_get_topology: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;
