/**
 * An in-memory DebugTarget for the protocol tests: an x86-64-like register table (the same
 * features gdb validates for i386:x86-64), a few mapped pages and scriptable run control.
 * It records every call so tests can check what the session asked for.
 *
 * @module
 */
import {
  type Breakpoint,
  type Capability,
  type DebugTarget,
  type FeatureInfo,
  type RegisterInfo,
  type StopEvent,
  type TargetDescription,
  TargetError,
  TargetGoneError,
  type ThreadInfo,
} from "../../rsp/target.ts";

const TYPES_CORE = `<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="ZF" start="6" end="6"/>
<field name="SF" start="7" end="7"/><field name="IF" start="9" end="9"/>
</flags>`;
const TYPES_SSE = `<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/></union>
<flags id="i386_mxcsr" size="4"><field name="IE" start="0" end="0"/></flags>`;

function table(): FeatureInfo[] {
  const core: RegisterInfo[] = [];
  const gp = [
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "rsp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
  ];
  let n = 0;
  const add = (list: RegisterInfo[], name: string, bitsize: number, type: string, group?: string) =>
    list.push({ name, bitsize, regnum: n++, type, inG: true, ...(group ? { group } : {}) });
  for (const name of gp) {
    add(core, name, 64, name === "rbp" || name === "rsp" ? "data_ptr" : "int64", "general");
  }
  add(core, "rip", 64, "code_ptr", "general");
  add(core, "eflags", 32, "i386_eflags", "general");
  for (const s of ["cs", "ss", "ds", "es", "fs", "gs"]) add(core, s, 32, "int32", "general");
  for (let i = 0; i < 8; i++) add(core, `st${i}`, 80, "i387_ext", "float");
  for (const f of ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]) {
    add(core, f, 32, "int", "float");
  }
  const sse: RegisterInfo[] = [];
  for (let i = 0; i < 16; i++) add(sse, `xmm${i}`, 128, "vec128", "vector");
  add(sse, "mxcsr", 32, "i386_mxcsr", "vector");
  const segments: RegisterInfo[] = [];
  const system: RegisterInfo[] = [];
  for (const name of ["fs_base", "gs_base"]) {
    segments.push({ name, bitsize: 64, regnum: n++, type: "int64", group: "system", inG: false });
  }
  for (const name of ["cr0", "cr3", "cr8"]) {
    system.push({ name, bitsize: 64, regnum: n++, type: "int64", group: "system", inG: false });
  }
  return [
    { name: "org.gnu.gdb.i386.core", typesXml: TYPES_CORE, registers: core },
    { name: "org.gnu.gdb.i386.sse", typesXml: TYPES_SSE, registers: sse },
    { name: "org.gnu.gdb.i386.segments", registers: segments },
    { name: "org.bhyve-gdbstub.fake.system", registers: system },
  ];
}

/** Start of the fake's mapped memory, and its size. */
export const MEMORY_BASE = 0x1000n;
export const MEMORY_SIZE = 0x3000;

export interface FakeOptions {
  threads?: number;
  /** When set, `step` is available (unsupported("step") is undefined). */
  canStep?: boolean;
  monitor?: boolean;
  /** When set, memory and register writes work (as with `--allow-write`). */
  allowWrite?: boolean;
  /** When set, breakpoints work, except access watchpoints (refused with a TargetError). */
  breakpoints?: boolean;
}

/** The fake target; `calls` records run-control and memory calls in order. */
export class FakeTarget implements DebugTarget {
  readonly calls: string[] = [];
  readonly memory = new Uint8Array(MEMORY_SIZE);
  readonly #description: TargetDescription;
  readonly #threadCount: number;
  readonly #canStep: boolean;
  readonly #allowWrite: boolean;
  readonly #breakpoints: boolean;
  insertBreakpoint?: (bp: Breakpoint) => void;
  removeBreakpoint?: (bp: Breakpoint) => void;
  /** Registers written, by thread and regnum: later reads return them. */
  readonly written = new Map<string, Uint8Array>();
  #running = false;
  #gone = false;
  #wakeup: ((event: StopEvent) => void) | undefined;
  monitor?: (command: string, thread: number) => string;
  step?: (thread: number, signal: AbortSignal) => Promise<StopEvent>;

  constructor(options: FakeOptions = {}) {
    this.#description = { architecture: "i386:x86-64", features: table() };
    this.#threadCount = options.threads ?? 2;
    this.#canStep = options.canStep ?? false;
    if (this.#canStep) {
      // One instruction: the thread stops at once, reporting a step.
      this.step = (thread: number) => {
        this.calls.push(`step ${thread}`);
        this.#checkGone();
        return Promise.resolve({ kind: "stopped", thread, signal: 5, reason: { type: "step" } });
      };
    }
    for (let i = 0; i < MEMORY_SIZE; i++) this.memory[i] = i & 0xff;
    this.#allowWrite = options.allowWrite ?? false;
    this.#breakpoints = options.breakpoints ?? false;
    if (this.#breakpoints) {
      this.insertBreakpoint = (bp: Breakpoint) => {
        if (bp.kind === "access") {
          throw new TargetError("Access watchpoints are not available: the fake has none", 1);
        }
        this.calls.push(`insert ${bp.kind} ${bp.address.toString(16)}`);
      };
      this.removeBreakpoint = (bp: Breakpoint) => {
        this.calls.push(`remove ${bp.kind} ${bp.address.toString(16)}`);
      };
    }
    if (options.monitor !== false) {
      this.monitor = (command: string, thread: number) => {
        if (command === "fail") throw new TargetError("monitor failed on purpose", 22);
        return `fake monitor: ${command} (vCPU ${thread})\n`;
      };
    }
  }

  get running(): boolean {
    return this.#running;
  }

  description(): TargetDescription {
    return this.#description;
  }

  threads(): ThreadInfo[] {
    this.#checkGone();
    return Array.from({ length: this.#threadCount }, (_, i) => ({
      id: i + 1,
      name: `vCPU ${i}`,
      extra: `vCPU ${i}, suspended, long mode`,
    }));
  }

  readRegisters(thread: number): (Uint8Array | undefined)[] {
    const count = this.#description.features.reduce((n, f) => n + f.registers.length, 0);
    return Array.from({ length: count }, (_, regnum) => this.readRegister(thread, regnum));
  }

  readRegister(thread: number, regnum: number): Uint8Array | undefined {
    this.#checkGone();
    const reg = this.#description.features.flatMap((f) => f.registers).find((r) =>
      r.regnum === regnum
    );
    if (reg === undefined || reg.name === "cr8") return undefined;
    const written = this.written.get(`${thread}:${regnum}`);
    if (written !== undefined) return written.slice();
    const bytes = new Uint8Array(reg.bitsize / 8);
    const view = new DataView(bytes.buffer);
    if (reg.name === "rip") view.setBigUint64(0, 0x1000n + BigInt(thread) * 0x10n, true);
    else if (reg.name === "rsp") view.setBigUint64(0, 0x2ff0n, true);
    else if (reg.name === "eflags") view.setUint32(0, 0x246, true);
    else if (reg.name === "cs") view.setUint32(0, 0x8, true);
    else if (reg.name === "cr3") view.setBigUint64(0, 0x5000n, true);
    else if (reg.bitsize === 64) view.setBigUint64(0, BigInt(regnum * 0x1111 + thread), true);
    return bytes;
  }

  readMemory(thread: number, address: bigint, length: number): Uint8Array {
    this.#checkGone();
    const end = MEMORY_BASE + BigInt(MEMORY_SIZE);
    if (address < MEMORY_BASE || address >= end) {
      throw new TargetError(
        `Cannot read guest memory: 0x${address.toString(16)} is not mapped on vCPU ${thread - 1}`,
        14,
      );
    }
    const start = Number(address - MEMORY_BASE);
    return this.memory.subarray(start, Math.min(MEMORY_SIZE, start + length));
  }

  stop(): Promise<StopEvent> {
    this.calls.push("stop");
    this.#checkGone();
    this.#running = false;
    return Promise.resolve({ kind: "stopped", thread: 1, signal: 5 });
  }

  resume(threads?: readonly number[]): Promise<void> {
    this.calls.push(threads === undefined ? "resume" : `resume ${threads.join(",")}`);
    this.#checkGone();
    this.#running = true;
    return Promise.resolve();
  }

  waitForStop(signal: AbortSignal): Promise<StopEvent> {
    this.calls.push("waitForStop");
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#wakeup = undefined;
        reject(new DOMException("waitForStop aborted", "AbortError"));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#wakeup = (event) => {
        signal.removeEventListener("abort", onAbort);
        this.#wakeup = undefined;
        resolve(event);
      };
    });
  }

  detach(): Promise<void> {
    this.calls.push("detach");
    this.#running = false;
    return Promise.resolve();
  }

  unsupported(capability: Capability): string | undefined {
    switch (capability) {
      case "step":
        return this.#canStep ? undefined : "Single-step is not available: the fake cannot step";
      case "breakpoint":
        return this.#breakpoints
          ? undefined
          : "Breakpoints are not available: the fake has no breakpoint exits";
      case "write-memory":
        return this.#allowWrite
          ? undefined
          : "Writing memory is not available: the fake is read-only";
      case "write-register":
        return this.#allowWrite
          ? undefined
          : "Writing registers is not available: the fake is read-only";
    }
  }

  writeMemory(thread: number, address: bigint, data: Uint8Array): void {
    this.calls.push(`writeMemory ${thread} ${address.toString(16)} ${data.length}`);
    const end = MEMORY_BASE + BigInt(MEMORY_SIZE);
    const fits = Number(address < MEMORY_BASE || address >= end ? 0n : end - address);
    this.memory.set(data.subarray(0, fits), Number(address - MEMORY_BASE));
    if (fits < data.length) {
      throw new TargetError(`Wrote ${fits} of ${data.length} bytes: the rest is not mapped`, 14);
    }
  }

  writeRegister(thread: number, regnum: number, value: Uint8Array): void {
    this.calls.push(`writeRegister ${thread} ${regnum}`);
    this.written.set(`${thread}:${regnum}`, value.slice());
  }

  /** Makes the running target stop on its own (as waitForStop would report). */
  stopOnOwn(event: StopEvent): void {
    this.#running = false;
    this.#wakeup?.(event);
  }

  /** Makes the target vanish: later calls throw TargetGoneError. */
  vanish(message = "the VM was destroyed"): void {
    this.#gone = true;
    this.#running = false;
    this.#wakeup?.({ kind: "exited", status: 0, message });
  }

  #checkGone(): void {
    if (this.#gone) throw new TargetGoneError("the VM is gone");
  }
}
