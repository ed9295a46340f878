/**
 * The contract between the protocol layer (rsp/) and whatever it debugs.
 *
 * rsp/ knows nothing of bhyve: it turns packets into calls on a {@link DebugTarget} and the
 * results back into packets. vmm/ implements the interface for a bhyve VM; tests may implement
 * it with a fake. Optional capabilities are optional members, so the qSupported and `vCont?`
 * replies are computed from what the target really has and never advertise what is missing.
 *
 * @module
 */

/** One register as the debugger sees it; the target's single table drives `g`, `p` and target.xml. */
export interface RegisterInfo {
  /** gdb's name, e.g. "rax", "eflags", "fs_base". */
  name: string;
  /** Width in bits; values travel little-endian in bitsize/8 bytes. */
  bitsize: number;
  /** gdb register number: the `p` argument and the position in target.xml. */
  regnum: number;
  /** target.xml type, e.g. "int64", "code_ptr", "data_ptr", "i386_eflags", "i387_ext". */
  type: string;
  /** target.xml group, e.g. "general", "system", "float", "vector". */
  group?: string;
  /** Whether the register is part of the `g` packet (the core set gdb expects there). */
  inG: boolean;
}

/** One `<feature>` of target.xml. */
export interface FeatureInfo {
  /** gdb's standard feature name, e.g. "org.gnu.gdb.i386.core", so gdb and lldb label it. */
  name: string;
  /** Type definitions (`<flags>`, `<vector>`, `<union>` …) the registers refer to, as XML. */
  typesXml?: string;
  registers: readonly RegisterInfo[];
}

/** What target.xml says: an architecture and its features in register-number order. */
export interface TargetDescription {
  /** e.g. "i386:x86-64". */
  architecture: string;
  features: readonly FeatureInfo[];
}

/** A thread as the debugger sees it (a vCPU). */
export interface ThreadInfo {
  /** Thread id on the wire, 1 or more (gdb reserves 0 and -1). */
  id: number;
  /** Short name, e.g. "vCPU 2". */
  name: string;
  /** What qThreadExtraInfo shows, e.g. "vCPU 2, suspended, long mode". */
  extra: string;
}

/**
 * Why a thread stopped: drives the stop reply's signal and fields, so the signal follows what
 * happened (SIGTRAP for a step or a breakpoint, SIGINT only for an interrupt), never the attach.
 */
export type StopReason =
  /** Ctrl-C (SIGINT), or the attach itself (reported as SIGTRAP). */
  | { type: "interrupt" }
  /** One instruction executed: SIGTRAP. */
  | { type: "step" }
  /** A software breakpoint (Z0) was hit: SIGTRAP with `swbreak:;`. */
  | { type: "swbreak" }
  /** A hardware breakpoint (Z1) was hit: SIGTRAP with `hwbreak:;`. */
  | { type: "hwbreak" }
  /** A watchpoint (Z2/Z3/Z4) was hit at `address`: SIGTRAP with `watch:`/`rwatch:`/`awatch:`. */
  | { type: "watch" | "rwatch" | "awatch"; address: bigint }
  /** What was asked could not be done; nothing moved. `message` says why, in words. */
  | { type: "refused"; message: string };

/** Why the target is not running any more. */
export type StopEvent =
  | {
    kind: "stopped";
    thread: number;
    signal: number;
    /** What made it stop, when the target knows (a step, a breakpoint hit, a refusal ...). */
    reason?: StopReason;
    /** Text for the user, shown by the client before it reports the stop (ends with "\n"). */
    console?: string;
  }
  | { kind: "exited"; status: number; message: string };

/** Z0..Z4: software and hardware breakpoints, write, read and access watchpoints. */
export type BreakpointKind = "sw" | "hw" | "write" | "read" | "access";

/** One breakpoint or watchpoint as a `Z`/`z` packet names it. */
export interface Breakpoint {
  kind: BreakpointKind;
  /** Guest virtual address, as the selected vCPU sees it. */
  address: bigint;
  /** The packet's kind field: bytes watched, or the breakpoint instruction's length. */
  length: number;
}

/** Things a debugger may ask for that a target may be unable to do. */
/** A range step's addresses: [start, end). */
export interface StepRange {
  start: bigint;
  end: bigint;
}

export type Capability = "step" | "breakpoint" | "write-memory" | "write-register";

/**
 * A failure the debugger should see as an `Enn` reply (with the message, where the client
 * accepts error-message+); the session goes on.
 */
export class TargetError extends Error {
  override name = "TargetError";
  /** The errno-style code put in `Enn` (e.g. 14 for EFAULT). */
  readonly code: number;
  constructor(message: string, code: number, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** The target has vanished (the VM was destroyed): the session reports an exit and ends. */
export class TargetGoneError extends Error {
  override name = "TargetGoneError";
}

/**
 * What the protocol layer needs from a debuggee. Reads are synchronous (they are quick, and
 * this keeps the hot path free of promises); run control is asynchronous.
 */
export interface DebugTarget {
  /** The register table, grouped into target.xml features. */
  description(): TargetDescription;
  /** Current threads (active vCPUs), in id order. */
  threads(): ThreadInfo[];

  /**
   * Every register of `thread`, indexed by regnum; `undefined` marks a register the target
   * cannot read (sent as `x` digits in `g`, an error for `p`), never as zeros.
   */
  readRegisters(thread: number): (Uint8Array | undefined)[];
  /** One register; `undefined` if the target cannot read it. */
  readRegister(thread: number, regnum: number): Uint8Array | undefined;

  /**
   * Up to `length` bytes at `address` as `thread` sees it (virtual, through its page tables,
   * unless the target is in physical mode). A shorter result means the read hit an unmapped
   * or unreadable page; if nothing at all can be read, throws {@link TargetError}.
   */
  readMemory(thread: number, address: bigint, length: number): Uint8Array;

  /**
   * Writes `data` at `address` as `thread` sees it, page by page, never past a page that does
   * not translate or is not RAM. Throws {@link TargetError} saying why, and how many bytes were
   * written before it, when not all of `data` could be. Absent or refusing (see
   * {@link unsupported}) unless writes were allowed.
   */
  writeMemory?(thread: number, address: bigint, data: Uint8Array): void;
  /**
   * Sets one register of `thread` (`value` little-endian, bitsize/8 bytes). Throws
   * {@link TargetError} when the register cannot be written.
   */
  writeRegister?(thread: number, regnum: number, value: Uint8Array): void;

  /** Stops every thread (attach, Ctrl-C); resolves once all are parked. */
  stop(): Promise<StopEvent>;
  /**
   * Lets threads run again: those in `threads` (vCont per-thread actions, scheduler-locking),
   * or every thread when `threads` is undefined. The others stay held.
   */
  resume(threads?: readonly number[]): Promise<void>;
  /**
   * Executes one instruction of `thread`; the others stay held. Resolves with the stop (reason
   * "step", a breakpoint or watchpoint hit, or "refused" with the words when it cannot).
   * With `range` (only when {@link rangeStepping}), goes on stepping while the pc stays in
   * [start, end), until `signal` aborts (Ctrl-C: the stop says interrupt).
   * Absent when the target cannot step at all ({@link unsupported} says why).
   */
  step?(thread: number, signal: AbortSignal, range?: StepRange): Promise<StopEvent>;
  /** Whether {@link step} takes a range (`vCont;r`, which gdb then uses for step and next). */
  readonly rangeStepping?: boolean;
  /** `Z`: throws {@link TargetError} with the reason in words when it cannot be honoured. */
  insertBreakpoint?(bp: Breakpoint): void;
  /** `z`: removing one that is not there is not an error. */
  removeBreakpoint?(bp: Breakpoint): void;
  /**
   * While running: resolves when the target stops on its own (a breakpoint or watchpoint hit,
   * a refusal, or the VM vanishing). Rejects with an AbortError when `signal` aborts (Ctrl-C).
   */
  waitForStop(signal: AbortSignal): Promise<StopEvent>;
  /** Undoes the attach: resumes exactly what this debugger stopped, and releases the target. */
  detach(): Promise<void>;

  /** Why `capability` is unavailable, in words for the user; undefined if it is available. */
  unsupported(capability: Capability): string | undefined;

  /**
   * Runs a `monitor` command (qRcmd) and returns its console output. A long command may
   * `print` along the way (sent at once as `O` packets, which also keeps the client from
   * timing out while it waits).
   */
  monitor?(
    command: string,
    thread: number,
    print?: (text: string) => Promise<void>,
  ): string | Promise<string>;
}
