/**
 * The contract between the VM model (vmm/) and the library that reaches the hypervisor.
 *
 * vmm/ is written against {@link Vmmapi} and {@link VmHandle}, never against FFI: ffi/ implements
 * them over libvmmapi through `Deno.dlopen`, and unit tests implement them with a fake. The
 * interface hides the libvmmapi API generation (0103 passes `ctx, vcpu`; 0200 passes a
 * `struct vcpu *`): every call here names a vCPU by its number.
 *
 * Numbers are FreeBSD's (sys/amd64/include/vmm.h); see ../shared/docs/vmm-facts.md section 3.
 *
 * @module
 */
import type { RamImage } from "../emu/emulator.ts";

/** `enum vm_reg_name` (amd64). FS_BASE and later exist only on FreeBSD 15 and later. */
export const VmReg = {
  RAX: 0,
  RBX: 1,
  RCX: 2,
  RDX: 3,
  RSI: 4,
  RDI: 5,
  RBP: 6,
  R8: 7,
  R9: 8,
  R10: 9,
  R11: 10,
  R12: 11,
  R13: 12,
  R14: 13,
  R15: 14,
  CR0: 15,
  CR3: 16,
  CR4: 17,
  DR7: 18,
  RSP: 19,
  RIP: 20,
  RFLAGS: 21,
  ES: 22,
  CS: 23,
  SS: 24,
  DS: 25,
  FS: 26,
  GS: 27,
  LDTR: 28,
  TR: 29,
  IDTR: 30,
  GDTR: 31,
  EFER: 32,
  CR2: 33,
  PDPTE0: 34,
  PDPTE1: 35,
  PDPTE2: 36,
  PDPTE3: 37,
  INTR_SHADOW: 38,
  DR0: 39,
  DR1: 40,
  DR2: 41,
  DR3: 42,
  DR6: 43,
  ENTRY_INST_LENGTH: 44,
  FS_BASE: 45,
  GS_BASE: 46,
  KGS_BASE: 47,
  TPR: 48,
} as const;

/** `enum vm_reg_name` names by number, for error messages. */
export const VM_REG_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(VmReg).map(([name, id]) => [id, name]),
);

/** `enum vm_cap_type`. RDPID and later are absent before FreeBSD 15 (14.x ends at IPI_EXIT). */
export const VmCap = {
  HALT_EXIT: 0,
  MTRAP_EXIT: 1,
  PAUSE_EXIT: 2,
  UNRESTRICTED_GUEST: 3,
  ENABLE_INVPCID: 4,
  BPT_EXIT: 5,
  RDPID: 6,
  RDTSCP: 7,
  IPI_EXIT: 8,
  MASK_HWINTR: 9,
  RFLAGS_TF: 10,
} as const;

/** `enum vm_cpu_mode`. */
export const CpuMode = { REAL: 0, PROTECTED: 1, COMPATIBILITY: 2, LONG: 3 } as const;
export type CpuMode = typeof CpuMode[keyof typeof CpuMode];

/** `enum vm_paging_mode`. */
export const PagingMode = { FLAT: 0, BITS32: 1, PAE: 2, LEVEL4: 3, LEVEL5: 4 } as const;
export type PagingMode = typeof PagingMode[keyof typeof PagingMode];

/** `struct vm_guest_paging`: what vm_gla2gpa_nofault translates with. */
export interface GuestPaging {
  cr3: bigint;
  cpl: number;
  cpuMode: CpuMode;
  pagingMode: PagingMode;
}

/** `struct seg_desc`: a segment's hidden part (or GDTR/IDTR base and limit). */
export interface SegDesc {
  base: bigint;
  limit: number;
  access: number;
}

/** One guest-physical range from vm_mmap_getnext, with its memory segment. */
export interface MemoryRange {
  gpa: bigint;
  length: bigint;
  segid: number;
  segoff: bigint;
  prot: number;
  flags: number;
  /** The segment's name from vm_get_memseg: "" for system memory (RAM), e.g. "bootrom". */
  segmentName: string;
  /**
   * Whether this process could map it read-only: system memory through the VM's device fd,
   * a named device-memory segment through its own node (/dev/vmm.io/NAME.SEGNAME).
   */
  readable: boolean;
}

/** CPU topology from vm_get_topology. */
export interface Topology {
  sockets: number;
  cores: number;
  threads: number;
  maxcpus: number;
}

/** The libvmmapi API generation: 0103 (FreeBSD 13.x, .so.5) or 0200 (14.x and later, .so.6). */
export type ApiGeneration = "0103" | "0200";

/** How to open a VM. */
export interface OpenOptions {
  /** Map guest RAM read-write, for `--allow-write` (default: read-only). */
  writable?: boolean;
}

/** A loaded libvmmapi. */
export interface Vmmapi {
  readonly generation: ApiGeneration;
  /** The path or soname the library was loaded from. */
  readonly path: string;
  /**
   * vm_open: throws {@link VmmError} (ENOENT when no VM has that name). With `writable`, guest
   * RAM is mapped read-write (as libvmmapi's vm_map_gpa does) and the handle can write.
   */
  open(name: string, options?: OpenOptions): VmHandle;
  /**
   * The VM's device node (/dev/vmm/NAME on FreeBSD), which exists while the VM does: `w` mode
   * waits for it before it calls vm_open once.
   */
  devicePath?(name: string): string;
  /** Unloads the library; every handle must be closed first. */
  close(): void;
}

/**
 * One open VM. Every method throws {@link VmmError} when the C call fails. Reads of guest
 * memory copy into a caller's buffer, so nothing outside ffi/ ever holds a pointer into the
 * read-only mapping (a write there would crash the process).
 */
export interface VmHandle {
  readonly name: string;
  /** vm_active_cpus, as sorted vCPU numbers. */
  activeCpus(): number[];
  /** vm_debug_cpus: vCPUs parked for a debugger (by anyone, bhyve included). */
  debugCpus(): number[];
  /** vm_suspend_cpu: adds one vCPU to the debug set. */
  suspendCpu(vcpu: number): void;
  /** vm_resume_cpu: removes one vCPU from the debug set. */
  resumeCpu(vcpu: number): void;
  /** vm_get_register. */
  getRegister(vcpu: number, reg: number): bigint;
  /** vm_get_register_set: fills `values[i]` with register `regs[i]`, in one ioctl. */
  getRegisterSet(vcpu: number, regs: Int32Array, values: BigUint64Array): void;
  /** vm_get_seg_desc. */
  getSegDesc(vcpu: number, reg: number): SegDesc;
  /** vm_gla2gpa_nofault: the guest-physical address, or undefined if `gla` is not mapped. */
  gla2gpa(vcpu: number, paging: GuestPaging, gla: bigint, prot: number): bigint | undefined;
  /** vm_mmap_getnext over the whole space, plus each segment's name. */
  memoryRanges(): MemoryRange[];
  /** Copies `into.length` bytes of RAM at `gpa` (one readable range must hold them all). */
  readRam(gpa: bigint, into: Uint8Array): void;
  /**
   * Optional: `length` bytes of RAM at `gpa` (one readable range must hold them all) as a view
   * of the mapped memory, no copy, for the core writer's reads of whole GiBs. Read-only (a write
   * through it may fault), and usable only until the ranges are mapped anew or the VM closed.
   */
  viewRam?(gpa: bigint, length: number): Uint8Array;
  /**
   * Guest RAM (system memory) as a private copy-on-write image for the emulator: it reads the
   * guest's pages and keeps its own writes (emu/emulator.ts).
   */
  ramImage(): RamImage;
  /**
   * Copies `from` into RAM at `gpa` (one mapped range must hold it all). Absent, or throwing,
   * unless the VM was opened writable.
   */
  writeRam?(gpa: bigint, from: Uint8Array): void;
  /** vm_set_register. Setting RIP also moves vmm's nextrip: the vCPU resumes there. */
  setRegister?(vcpu: number, reg: number, value: bigint): void;
  /** vm_readwrite_kernemu_device (read): an in-kernel device register. */
  readKernemu(vcpu: number, gpa: bigint, size: 1 | 2 | 4 | 8): bigint;
  /** vm_get_capability. */
  getCapability(vcpu: number, cap: number): number;
  /** vm_get_topology. */
  topology(): Topology;
  /**
   * vmm's VMEXIT_USERSPACE counter for `vcpu` ("number of vm exits handled in userspace",
   * through vm_get_stats): it grows each time VM_RUN returns to bhyve's thread, a debug exit
   * included. Undefined when the kernel or library does not offer it.
   */
  userspaceExits?(vcpu: number): bigint | undefined;
  /**
   * vm_get_x2apic_state: whether bhyve lets the guest put this vCPU's local APIC in x2APIC
   * mode (bhyve -x). Undefined when the library does not offer the call.
   */
  x2apicAllowed?(vcpu: number): boolean | undefined;
  /** vm_close, after unmapping guest memory and closing vCPU handles. */
  close(): void;
}

/**
 * A failed libvmmapi call: the function, its arguments in words, and errno.
 *
 * @example
 * // vm_get_register(vCPU 2, RIP) failed: ENXIO (Device not configured)
 */
export class VmmError extends Error {
  override name = "VmmError";
  /** The C function, e.g. "vm_get_register". */
  readonly func: string;
  /** errno as the platform numbers it. */
  readonly errno: number;
  /** errno's portable name, e.g. "ENXIO" ("E<n>" when unknown). */
  readonly code: string;
  constructor(
    func: string,
    args: string,
    errno: number,
    code: string,
    text: string,
    options?: ErrorOptions,
  ) {
    super(`${func}(${args}) failed: ${code} (${text})`, options);
    this.func = func;
    this.errno = errno;
    this.code = code;
  }
}

/** errno names that mean the VM itself is gone (destroyed, or its device closed). */
export const GONE_CODES: ReadonlySet<string> = new Set(["ENXIO", "EBADF", "ENOENT"]);

/** Whether `error` says the VM has vanished. */
export function isGone(error: unknown): boolean {
  return error instanceof VmmError && GONE_CODES.has(error.code);
}
