/**
 * The emulator room's interface: what executing a held vCPU's instructions takes and gives.
 *
 * vmm/ fills a {@link CpuState} from the held vCPU and hands it, with a {@link RamImage} of guest
 * RAM, to an {@link Emulator}; ffi/ implements both over libunicorn and a private copy-on-write
 * mapping of guest RAM, so nothing of the guest changes during a run. The {@link RunResult} says
 * where the run stopped and what it changed; vmm/ commits that (registers, bytes) to the vCPU.
 *
 * @module
 */
import type { EmulatedScalar, EmulatedSegment } from "../vmm/registers.ts";

/**
 * The general and control registers, by their gdb names: the rows of vmm/registers.ts, the one
 * register table, marked "scalar" (EMULATED_SCALARS lists them at run time).
 */
export type Scalar = EmulatedScalar;

/**
 * Segment registers with a hidden part (selector, base, limit, access rights): the rows marked
 * "segment" there (EMULATED_SEGMENTS).
 */
export type SegmentName = EmulatedSegment;

/** A segment register: its selector and vm_get_seg_desc's hidden part. */
export interface Segment {
  selector: number;
  base: bigint;
  limit: number;
  /** VMX-style access rights (type, S, DPL, P, AVL, L, D/B, G; bit 16 = unusable). */
  access: number;
}

/** GDTR / IDTR. */
export interface TableRegister {
  base: bigint;
  limit: number;
}

/** One vCPU's architectural state as the emulator takes and returns it. */
export interface CpuState {
  scalars: Record<Scalar, bigint>;
  segments: Record<SegmentName, Segment>;
  gdtr: TableRegister;
  idtr: TableRegister;
  /** IA32_KERNEL_GS_BASE where the kernel exposes it (FreeBSD 15); SWAPGS is refused without. */
  kernelGsBase?: bigint;
}

/** A breakpoint or watchpoint honoured during a run (the Z packet kinds). */
export interface EmuBreakpoint {
  kind: "sw" | "hw" | "write" | "read" | "access";
  address: bigint;
  length: number;
}

/** Why a run stopped. */
export type EmuStop =
  /** `count` instructions executed (a step). */
  | { kind: "count" }
  /** The next instruction is outside the request's `range` (a range step is done). */
  | { kind: "range" }
  /** The instruction or wall-time budget ran out. */
  | { kind: "budget"; what: "instructions" | "time" }
  /** The next instruction is at a breakpoint. */
  | { kind: "breakpoint"; breakpoint: EmuBreakpoint }
  /** The last instruction touched a watched range at `address`. */
  | { kind: "watch"; breakpoint: EmuBreakpoint; address: bigint }
  /** The next instruction cannot be emulated faithfully; it was not executed. */
  | { kind: "refused"; message: string };

/** What a run asks for. */
export interface RunRequest {
  state: CpuState;
  /** Stop after this many instructions (1 for a step). */
  count: number;
  /** Stop after this many milliseconds of emulation (checked between slices). */
  maxMs?: number;
  breakpoints?: readonly EmuBreakpoint[];
  /** Checked between slices of emulation: true stops the run (Ctrl-C). */
  interrupted?: () => boolean;
  /**
   * A range step (gdb's `vCont;r`): after the first instruction, stop before the first one
   * outside [start, end). `count` is then the budget.
   */
  range?: AddressRange;
}

/** [start, end) of code addresses. */
export interface AddressRange {
  start: bigint;
  end: bigint;
}

/** Guest-physical bytes the run wrote. */
export interface RamWrite {
  gpa: bigint;
  bytes: Uint8Array;
}

/** Where a run ended: always a clean instruction boundary. */
export interface RunResult {
  /** The state at the boundary where the run stopped. */
  state: CpuState;
  /** Instructions executed. */
  executed: number;
  stop: EmuStop;
  /** Every guest-physical byte range the executed instructions changed. */
  writes: RamWrite[];
}

/** One contiguous range of guest RAM. */
export interface RamRange {
  gpa: bigint;
  length: bigint;
}

/** Guest RAM as the emulator sees it: a private copy, so runs never touch the guest. */
export interface RamImage {
  readonly ranges: readonly RamRange[];
  /** Frees the private copy. */
  close(): void;
}

/** An x86 emulator over one {@link RamImage}. */
export interface Emulator {
  /** Executes from `request.state`; throws only for failures of the emulator itself. */
  run(request: RunRequest): Promise<RunResult>;
  close(): void;
}
