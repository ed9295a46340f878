/**
 * What the core-file writer needs from a machine: the interface its user (vmm/) implements.
 *
 * The writer knows ELF and the layout QEMU's `dump-guest-memory` writes, not bhyve: it gets
 * each vCPU's state, the RAM ranges by guest-physical address, optionally the guest-virtual
 * mappings of one vCPU's page tables, and a way to copy RAM.
 *
 * @module
 */

/** A segment register (or LDTR, TR, GDTR, IDTR) as QEMU's QEMUCPUSegment carries it. */
export interface SegmentState {
  selector: number;
  limit: number;
  /** Attribute bits in the descriptor's high-dword positions (type at bit 8 … G at bit 23). */
  flags: number;
  base: bigint;
}

/** One vCPU, as the notes record it. */
export interface CpuState {
  /** The vCPU's number; the NT_PRSTATUS pr_pid is this plus one (QEMU's cpu index + 1). */
  vcpu: number;
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
  cs: SegmentState;
  ds: SegmentState;
  es: SegmentState;
  fs: SegmentState;
  gs: SegmentState;
  ss: SegmentState;
  ldt: SegmentState;
  tr: SegmentState;
  gdt: SegmentState;
  idt: SegmentState;
  /** cr0 … cr4 (cr1 is always 0). */
  cr: readonly [bigint, bigint, bigint, bigint, bigint];
  kernelGsBase: bigint;
}

/** A guest-physical RAM range: `length` bytes at `gpa`. */
export interface RamRange {
  gpa: bigint;
  length: bigint;
}

/** `length` bytes at guest-virtual `gva` map guest-physical `gpa` onwards. */
export interface VirtualMapping {
  gva: bigint;
  gpa: bigint;
  length: bigint;
}

/** A machine to save. */
export interface CoreSource {
  /** Every vCPU, in vCPU order. */
  cpus: readonly CpuState[];
  /** RAM, sorted by gpa, not overlapping. */
  ranges: readonly RamRange[];
  /** With paging: the PT_LOADs by virtual address (QEMU's `-p`); else one per RAM range. */
  mappings?: readonly VirtualMapping[];
  /** Copies `into.length` bytes of RAM at `gpa` (inside one range). */
  read(gpa: bigint, into: Uint8Array): void;
  /**
   * Optional: `length` bytes of RAM at `gpa` (inside one range) as a view of the machine's
   * memory, no copy (on FreeBSD a mapping of the VM's memory). The writer only reads it, and
   * lets go of it once its chunk is written, before it returns.
   */
  view?(gpa: bigint, length: number): Uint8Array;
  /** Throws if the machine has gone away (called between chunks). */
  check?(): void;
}
