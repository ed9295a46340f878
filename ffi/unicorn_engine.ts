/**
 * The {@link Emulator} over libunicorn: one engine per private RAM image, guest RAM mapped at
 * its guest-physical addresses, Unicorn's own MMU walking the guest's page tables from CR3.
 *
 * A run is sliced (so Ctrl-C and the wall-time budget are noticed between slices) and watched
 * by one code hook, which counts instructions, stops at breakpoints and refuses instructions
 * (emu/refusal.ts) before they execute; a write hook records the guest-physical bytes written
 * and notices watchpoints; exceptions and accesses outside RAM stop the run with a refusal.
 *
 * @module
 */
import type {
  CpuState,
  EmuBreakpoint,
  Emulator,
  EmuStop,
  RamWrite,
  RunRequest,
  RunResult,
  Scalar,
  Segment,
  SegmentName,
} from "../emu/emulator.ts";
import { SCALARS, SEGMENTS } from "../emu/emulator.ts";
import { refusal, repCountMask } from "../emu/refusal.ts";
import type { PrivateRam } from "./ram_image.ts";
import type { LoadedUnicorn } from "./unicorn.ts";
import {
  CODE_CALLBACK,
  EVENTMEM_CALLBACK,
  INTR_CALLBACK,
  MEM_CALLBACK,
  UC_ARCH_X86,
  UC_CPU_X86_HASWELL,
  UC_CTL_CPU_MODEL_WRITE,
  UC_CTL_TB_FLUSH_WRITE,
  UC_CTL_TB_REMOVE_CACHE_WRITE,
  UC_MODE_32,
  UC_MODE_64,
  UC_PROT_ALL,
  UC_PROT_EXEC,
  UC_PROT_READ,
  UcErr,
  UcHook,
  UcMem,
  UcX86Reg,
  UcX86Reg32,
  type UnicornSymbols,
} from "./unicorn_symbols.ts";

/** Registers Unicorn takes as plain 64-bit values, by their gdb names. */
const SCALAR_REGS: Partial<Record<Scalar, number>> = {
  rax: UcX86Reg.RAX,
  rbx: UcX86Reg.RBX,
  rcx: UcX86Reg.RCX,
  rdx: UcX86Reg.RDX,
  rsi: UcX86Reg.RSI,
  rdi: UcX86Reg.RDI,
  rbp: UcX86Reg.RBP,
  rsp: UcX86Reg.RSP,
  r8: UcX86Reg.R8,
  r9: UcX86Reg.R9,
  r10: UcX86Reg.R10,
  r11: UcX86Reg.R11,
  r12: UcX86Reg.R12,
  r13: UcX86Reg.R13,
  r14: UcX86Reg.R14,
  r15: UcX86Reg.R15,
  rip: UcX86Reg.RIP,
  eflags: UcX86Reg.RFLAGS,
  cr2: UcX86Reg.CR2,
  dr0: UcX86Reg.DR0,
  dr1: UcX86Reg.DR1,
  dr2: UcX86Reg.DR2,
  dr3: UcX86Reg.DR3,
  dr6: UcX86Reg.DR6,
  dr7: UcX86Reg.DR7,
};

/** In a UC_MODE_32 engine: the low halves (the upper ones are kept as they were). */
const SCALAR_REGS_32: Partial<Record<Scalar, number>> = {
  ...Object.fromEntries(
    Object.entries(SCALAR_REGS).filter(([name]) =>
      !/^r(ax|bx|cx|dx|si|di|bp|sp|ip|\d+)$/.test(name)
    ),
  ),
  rax: UcX86Reg32.EAX,
  rbx: UcX86Reg32.EBX,
  rcx: UcX86Reg32.ECX,
  rdx: UcX86Reg32.EDX,
  rsi: UcX86Reg32.ESI,
  rdi: UcX86Reg32.EDI,
  rbp: UcX86Reg32.EBP,
  rsp: UcX86Reg32.ESP,
  rip: UcX86Reg32.EIP,
  eflags: UcX86Reg32.EFLAGS,
};

const SEGMENT_REGS: Record<SegmentName, number> = {
  es: UcX86Reg.ES,
  cs: UcX86Reg.CS,
  ss: UcX86Reg.SS,
  ds: UcX86Reg.DS,
  fs: UcX86Reg.FS,
  gs: UcX86Reg.GS,
  ldtr: UcX86Reg.LDTR,
  tr: UcX86Reg.TR,
};

const MSR_EFER = 0xc000_0080;
const MSR_KERNEL_GS_BASE = 0xc000_0102;

/** Runs longer than this go in block mode (see #setMode). */
const BLOCK_MODE_FROM = 64;

interface Hook {
  handle: bigint;
  callback: Deno.UnsafeCallback;
}

/** A translated block whose instructions all passed the checks. */
interface KnownBlock {
  size: number;
  addresses: bigint[];
  /** A block that is one REP string instruction: its count register's mask. */
  repMask?: bigint;
}

/** Instructions per slice: between slices the run looks at Ctrl-C and the clock. */
const SLICE = 2_000_000;

const EXCEPTIONS: Record<number, string> = {
  0: "#DE (divide error)",
  1: "#DB (debug)",
  3: "#BP (breakpoint instruction)",
  4: "#OF (overflow)",
  5: "#BR (bound range)",
  6: "#UD (invalid opcode)",
  7: "#NM (device not available)",
  8: "#DF (double fault)",
  10: "#TS (invalid TSS)",
  11: "#NP (segment not present)",
  12: "#SS (stack fault)",
  13: "#GP (general protection)",
  14: "#PF (page fault)",
  16: "#MF (x87 error)",
  17: "#AC (alignment check)",
  18: "#MC (machine check)",
  19: "#XM (SIMD error)",
};

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/**
 * Opens an emulator over `ram` with `lib`: one engine for long mode and one for the other modes,
 * both over the same private RAM. (Unicorn's engine cannot be moved out of long mode by register
 * writes: EFER.LMA is read-only to WRMSR, and its hidden flags keep 64-bit code.)
 */
export function openUnicornEmulator(lib: LoadedUnicorn, ram: PrivateRam): Emulator {
  const engines = new Map<number, UnicornEmulator>();
  return {
    run(request) {
      const mode = (request.state.scalars.efer & 0x400n) !== 0n ? UC_MODE_64 : UC_MODE_32;
      let engine = engines.get(mode);
      if (engine === undefined) {
        engine = new UnicornEmulator(lib.symbols, ram, mode);
        engines.set(mode, engine);
      }
      return engine.run(request);
    },
    close() {
      for (const engine of engines.values()) engine.close();
      engines.clear();
    },
  };
}

class UnicornEmulator {
  #uc: UnicornSymbols;
  #ram: PrivateRam;
  #engine: Deno.PointerObject;
  #callbacks: Deno.UnsafeCallback[] = [];
  #u64 = new BigUint64Array(1);
  #mmr = new Uint8Array(24);
  #mmrView = new DataView(this.#mmr.buffer);
  #msr = new Uint8Array(16);
  #msrView = new DataView(this.#msr.buffer);
  #bytes = new Uint8Array(16);
  #verdicts = new Map<bigint, string | null>();
  /** A UC_MODE_64 engine (64-bit register ids), else UC_MODE_32 (32-bit ids, no R8-R15). */
  #wide: boolean;
  #scalarRegs: Partial<Record<Scalar, number>>;
  #pc: number;

  // The run in progress.
  #count = 0;
  #executed = 0;
  #current = -1n;
  /** Length of the instruction at #current. */
  #size = 0;
  #stop: EmuStop | undefined;
  #breakpoints = new Map<bigint, EmuBreakpoint>();
  #watches: EmuBreakpoint[] = [];
  #pendingWatch: { breakpoint: EmuBreakpoint; address: bigint } | undefined;
  #written = new Set<bigint>();
  #mode: "instruction" | "block" | undefined;
  #modeHooks: Hook[] = [];
  /** Callbacks of removed hooks, closed after the run (never inside one). */
  #retired: Deno.UnsafeCallback[] = [];
  /** Block mode: blocks whose instructions all passed the checks, by address. */
  #blocks = new Map<bigint, KnownBlock>();
  /** Block mode: the known block running now, and the instruction count before it. */
  #block: KnownBlock | undefined;
  #blockBase = 0;
  /** Block mode: the block that ran last (a REP instruction runs its block again). */
  #lastBlock = -1n;
  #discovering: (KnownBlock & { address: bigint; end: bigint; hook: Hook }) | undefined;
  #restart = false;
  #breakpointHooks: Hook[] = [];
  #readWatchHook: Hook | undefined;
  #watchPhysical = new Map<EmuBreakpoint, bigint>();
  #long = true;
  #knownKgs = false;
  #outside: string | undefined;
  #exception: number | undefined;

  constructor(uc: UnicornSymbols, ram: PrivateRam, mode: number) {
    this.#wide = mode === UC_MODE_64;
    this.#scalarRegs = this.#wide ? SCALAR_REGS : SCALAR_REGS_32;
    this.#pc = this.#wide ? UcX86Reg.RIP : UcX86Reg32.EIP;
    this.#uc = uc;
    this.#ram = ram;
    const out = new BigUint64Array(1);
    check(uc, uc.uc_open(UC_ARCH_X86, mode, out), "uc_open");
    this.#engine = Deno.UnsafePointer.create(out[0]!)!;
    // A model with the instructions a current guest expects (CPUID itself is refused).
    check(uc, uc.uc_ctl(this.#engine, UC_CTL_CPU_MODEL_WRITE, UC_CPU_X86_HASWELL), "uc_ctl");
    ram.ranges.forEach((range, i) => {
      check(
        uc,
        uc.uc_mem_map_ptr(this.#engine, range.gpa, range.length, UC_PROT_ALL, ram.pointers[i]!),
        `uc_mem_map_ptr(${hex(range.gpa)}, ${hex(range.length)})`,
      );
    });
    this.#hook(UcHook.INTR, INTR_CALLBACK, (_uc, intno) => this.#onInterrupt(intno));
    this.#hook(
      UcHook.MEM_READ_UNMAPPED | UcHook.MEM_WRITE_UNMAPPED | UcHook.MEM_FETCH_UNMAPPED,
      EVENTMEM_CALLBACK,
      (_uc, type, address, size) => {
        const what = type === UcMem.WRITE + 3
          ? "writes"
          : type === UcMem.FETCH + 3
          ? "fetches from"
          : "reads";
        this.#outside = `it ${what} ${hex(address)} (${size} bytes), outside guest RAM ` +
          "(device memory is emulated by bhyve)";
        return false;
      },
    );
  }

  #hook<D extends Deno.UnsafeCallbackDefinition>(
    type: number,
    definition: D,
    handler: Deno.UnsafeCallbackFunction<D["parameters"], D["result"]>,
  ): bigint {
    return this.#hookRange(type, definition, handler, 1n, 0n).handle;
  }

  /** A hook on [begin, end] only (begin > end: everywhere); the caller may remove it. */
  #hookRange<D extends Deno.UnsafeCallbackDefinition>(
    type: number,
    definition: D,
    handler: Deno.UnsafeCallbackFunction<D["parameters"], D["result"]>,
    begin: bigint,
    end: bigint,
  ): Hook {
    const callback = new Deno.UnsafeCallback(definition, handler);
    this.#callbacks.push(callback);
    const handle = new BigUint64Array(1);
    check(
      this.#uc,
      this.#uc.uc_hook_add(this.#engine, handle, type, callback.pointer, null, begin, end, 0),
      "uc_hook_add",
    );
    return { handle: handle[0]!, callback };
  }

  /** Removes a hook; its callback is closed once no run is under way. */
  #unhook(hook: Hook): void {
    this.#uc.uc_hook_del(this.#engine, hook.handle);
    this.#callbacks = this.#callbacks.filter((c) => c !== hook.callback);
    this.#retired.push(hook.callback);
  }

  /**
   * Instruction mode (a step, or watchpoints set): a hook on every instruction and every
   * write. Block mode (a continue): a hook on every translated block; the instructions of a
   * block are checked once, one by one, the first time it runs (#discover), and breakpoints
   * get hooks of their own. Switching drops the translated blocks, which carry their hooks.
   */
  #setMode(mode: "instruction" | "block"): void {
    if (this.#mode === mode) return;
    for (const hook of this.#modeHooks) this.#unhook(hook);
    this.#modeHooks = [];
    const [type, handler] = mode === "instruction"
      ? [UcHook.CODE, (a: bigint, n: number) => this.#onCode(a, n)]
      : [UcHook.BLOCK, (a: bigint, n: number) => this.#onBlock(a, n)];
    this.#modeHooks.push(
      this.#hookRange(type, CODE_CALLBACK, (_uc, address, size) => handler(address, size), 1n, 0n),
    );
    if (mode === "instruction" || this.#ram.copiedPages() === undefined) {
      this.#modeHooks.push(
        this.#hookRange(
          UcHook.MEM_WRITE,
          MEM_CALLBACK,
          (_uc, _type, address, size) => {
            this.#onWrite(address, size);
          },
          1n,
          0n,
        ),
      );
    }
    this.#uc.uc_ctl(this.#engine, UC_CTL_TB_FLUSH_WRITE, 0);
    this.#mode = mode;
  }

  /** Block mode: a block about to run. */
  #onBlock(address: bigint, size: number): void {
    if (this.#stop !== undefined || this.#executed >= this.#count) {
      this.#uc.uc_emu_stop(this.#engine);
      return;
    }
    const discovering = this.#discovering;
    if (discovering !== undefined && discovering.address === address) {
      this.#block = undefined; // its instructions are counted one by one
      return;
    }
    const known = this.#blocks.get(address);
    const again = this.#lastBlock === address;
    this.#lastBlock = address;
    if (known !== undefined && known.size === size) {
      if (again && known.repMask !== undefined && this.#repFinished(address, known.repMask)) {
        // The pass out of a finished REP instruction: no instruction (see #onCode).
        this.#block = { size, addresses: [] };
        this.#blockBase = this.#executed;
        return;
      }
      this.#block = known;
      this.#current = -1n;
      this.#blockBase = this.#executed;
      this.#executed += known.addresses.length;
      return;
    }
    // A block not seen yet: hook its instructions, drop its translation, run it again.
    this.#block = undefined;
    const end = address + BigInt(size);
    this.#discovering = {
      address,
      size,
      end,
      addresses: [],
      hook: this.#hookRange(
        UcHook.CODE,
        CODE_CALLBACK,
        (_uc, at, length) => {
          this.#onCode(at, length);
        },
        address,
        end - 1n,
      ),
    };
    this.#uc.uc_ctl_range(this.#engine, UC_CTL_TB_REMOVE_CACHE_WRITE, address, end);
    this.#restart = true;
    this.#uc.uc_emu_stop(this.#engine);
  }

  /** Block mode: a breakpoint's own hook, in a block already checked. */
  #onBreakpoint(address: bigint): void {
    const discovering = this.#discovering;
    if (
      this.#stop !== undefined || this.#block === undefined ||
      (discovering !== undefined && address >= discovering.address && address < discovering.end)
    ) return;
    const index = this.#block.addresses.indexOf(address);
    const before = this.#blockBase + index;
    if (index < 0 || before === 0) return; // the run's first instruction: step off it
    this.#executed = before;
    this.#stop = { kind: "breakpoint", breakpoint: this.#breakpoints.get(address)! };
    this.#uc.uc_emu_stop(this.#engine);
  }

  /** Block mode: an instruction of the block being discovered passed its checks. */
  #discovered(address: bigint, size: number): void {
    const discovering = this.#discovering;
    if (discovering === undefined || address < discovering.address) return;
    if (address >= discovering.end) return;
    discovering.addresses.push(address);
    if (address + BigInt(size) === discovering.end) {
      const known: KnownBlock = { size: discovering.size, addresses: discovering.addresses };
      const mask = known.addresses.length === 1 ? this.#repMask(address) : undefined;
      if (mask !== undefined) known.repMask = mask;
      this.#blocks.set(discovering.address, known);
      this.#unhook(discovering.hook);
      this.#discovering = undefined;
    }
  }

  /** The read hook, only while a read or access watchpoint is set (it slows every load). */
  #readHook(on: boolean): void {
    if (on && this.#readWatchHook === undefined) {
      this.#readWatchHook = this.#hookRange(
        UcHook.MEM_READ,
        MEM_CALLBACK,
        (_uc, _t, address, size) => {
          this.#watchHit(address, size, (w) => w.kind !== "write");
        },
        1n,
        0n,
      );
    } else if (!on && this.#readWatchHook !== undefined) {
      this.#unhook(this.#readWatchHook);
      this.#readWatchHook = undefined;
    }
  }

  /** A watchpoint that `kinds` accepts, at the virtual or physical address given, is hit. */
  #watchHit(address: bigint, size: number, kinds: (w: EmuBreakpoint) => boolean): void {
    if (this.#watches.length === 0 || this.#pendingWatch !== undefined) return;
    const end = address + BigInt(size);
    const hit = this.#watches.find((w) =>
      kinds(w) &&
      [w.address, this.#watchPhysical.get(w)].some((a) =>
        a !== undefined && address < a + BigInt(w.length) && a < end
      )
    );
    if (hit !== undefined) this.#pendingWatch = { breakpoint: hit, address: hit.address };
  }

  async run(request: RunRequest): Promise<RunResult> {
    this.#load(request.state);
    this.#count = request.count;
    this.#executed = 0;
    this.#stop = undefined;
    this.#pendingWatch = undefined;
    this.#written.clear();
    this.#watchPhysical.clear();
    this.#outside = undefined;
    this.#exception = undefined;
    this.#breakpoints.clear();
    this.#watches = [];
    for (const bp of request.breakpoints ?? []) {
      if (bp.kind === "sw" || bp.kind === "hw") this.#breakpoints.set(bp.address, bp);
      else this.#watches.push(bp);
    }
    for (const watch of this.#watches) {
      const physical = this.#translate(watch.address);
      if (physical !== undefined) this.#watchPhysical.set(watch, physical);
    }
    if (this.#watches.length > 0) this.#load(request.state); // no fault left pending
    this.#readHook(this.#watches.some((w) => w.kind !== "write"));
    const blockMode = request.count > BLOCK_MODE_FROM && this.#watches.length === 0;
    this.#setMode(blockMode ? "block" : "instruction");
    this.#block = undefined;
    this.#lastBlock = -1n;
    if (blockMode) {
      for (const address of this.#breakpoints.keys()) {
        this.#breakpointHooks.push(
          this.#hookRange(
            UcHook.CODE,
            CODE_CALLBACK,
            (_uc, at) => {
              this.#onBreakpoint(at);
            },
            address,
            address,
          ),
        );
        this.#uc.uc_ctl_range(this.#engine, UC_CTL_TB_REMOVE_CACHE_WRITE, address, address + 1n);
      }
    }
    this.#long = (request.state.scalars.efer & 0x400n) !== 0n &&
      (request.state.segments.cs.access & 0x2000) !== 0;
    this.#knownKgs = request.state.kernelGsBase !== undefined;
    const started = performance.now();
    while (this.#stop === undefined) {
      const rip = this.#reg(this.#pc);
      this.#current = -1n;
      const sliceEnd = Math.min(this.#count, this.#executed + SLICE);
      const limit = this.#count;
      this.#count = sliceEnd;
      this.#restart = false;
      const err = this.#uc.uc_emu_start(this.#engine, rip, 0n, 0n, 0n);
      this.#count = limit;
      this.#settle(err);
      if (this.#stop !== undefined) break;
      if (this.#restart && err === UcErr.OK) continue; // a block to check: run it again
      if (this.#executed >= this.#count) {
        this.#stop = { kind: "count" };
      } else if (request.interrupted?.()) {
        this.#stop = { kind: "refused", message: "interrupted (Ctrl-C)" };
      } else if (request.maxMs !== undefined && performance.now() - started > request.maxMs) {
        this.#stop = { kind: "budget", what: "time" };
      } else if (this.#executed < sliceEnd) {
        // Unicorn returned without a reason of ours: say so rather than loop.
        this.#stop = { kind: "refused", message: `the emulator stopped at ${hex(rip)}` };
      }
      // Let the event loop see a Ctrl-C between slices.
      if (this.#stop === undefined) await new Promise((r) => setTimeout(r, 0));
    }
    this.#finishRep();
    for (const hook of this.#breakpointHooks) this.#unhook(hook);
    this.#breakpointHooks = [];
    if (this.#discovering !== undefined) this.#unhook(this.#discovering.hook);
    this.#discovering = undefined;
    for (const callback of this.#retired) callback.close();
    this.#retired = [];
    const state = this.#save(request.state);
    return {
      state,
      executed: this.#executed,
      stop: this.#stop,
      writes: this.#collectWrites(blockMode),
    };
  }

  /**
   * A REP string instruction whose last iteration just ran is complete, but Unicorn leaves RIP
   * on it until its next (empty) pass; the CPU (and QEMU) move past it at once.
   */
  #finishRep(): void {
    if (this.#stop?.kind !== "count" || this.#current < 0n) return;
    if (this.#reg(this.#pc) !== this.#current) return;
    if (this.#repFinished(this.#current)) {
      this.#setReg(this.#pc, this.#current + BigInt(this.#size));
    }
  }

  /** Whether the REP string instruction at `address` (RIP) has its count at zero: done. */
  #repFinished(address: bigint, mask = this.#repMask(address)): boolean {
    if (mask === undefined) return false;
    const count = this.#reg(this.#wide ? UcX86Reg.RCX : UcX86Reg32.ECX);
    return (count & mask) === 0n;
  }

  #repMask(address: bigint): bigint | undefined {
    const bytes = this.#fetch(address);
    return bytes === undefined ? undefined : repCountMask(bytes, this.#long);
  }

  /** Turns how uc_emu_start ended into a stop, with RIP at a clean instruction boundary. */
  #settle(err: number): void {
    if (this.#exception !== undefined || this.#outside !== undefined) {
      const rip = this.#reg(this.#pc);
      const index = this.#block?.addresses.indexOf(rip) ?? -1;
      if (index >= 0) {
        // In a checked block: RIP is the instruction that faulted; those before it completed.
        this.#executed = this.#blockBase + index;
        const what = this.#outside ?? this.#describeException(this.#exception!);
        this.#stop = { kind: "refused", message: `${this.#describeInstruction(rip)}: ${what}` };
        return;
      }
      // An exception in the instruction the code hook let through: it did not complete.
      const inCurrent = this.#current >= 0n &&
        (this.#outside !== undefined || rip === this.#current);
      if (inCurrent) {
        this.#executed--;
        this.#setReg(this.#pc, this.#current);
      }
      const at = inCurrent ? this.#current : rip;
      if (!inCurrent && this.#executed >= this.#count) {
        this.#stop = { kind: "count" };
        return;
      }
      const what = this.#outside ?? this.#describeException(this.#exception!);
      this.#stop = {
        kind: "refused",
        message: `${this.#describeInstruction(at)}: ${what}`,
      };
      return;
    }
    if (err !== UcErr.OK && this.#stop === undefined) {
      this.#stop = {
        kind: "refused",
        message: `the emulator failed: ${strerror(this.#uc, err)}`,
      };
    }
  }

  #describeException(vector: number): string {
    const name = EXCEPTIONS[vector] ?? `interrupt ${vector}`;
    if (vector === 14) {
      const cr2 = this.#reg(UcX86Reg.CR2);
      return `it raises ${name} at ${hex(cr2)}; that is for the guest's own handler: ` +
        "continue natively to let the guest handle it";
    }
    if (vector >= 32 || vector === 3) {
      return `it raises ${name}; delivering it through the guest's IDT is left to the CPU: ` +
        "continue natively";
    }
    return `it raises ${name}; the guest handles that natively: continue natively`;
  }

  #describeInstruction(address: bigint): string {
    const bytes = this.#fetch(address);
    const shown = bytes === undefined
      ? ""
      : ` (bytes ${
        [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ")
      })`;
    return `the instruction at ${hex(address)}${shown}`;
  }

  /**
   * Up to 15 instruction bytes at virtual `address` (uc_mem_read would take it as physical):
   * this page's first, the next page's only if it is mapped.
   */
  #fetch(address: bigint): Uint8Array | undefined {
    const first = Math.min(15, Number(0x1000n - (address & 0xfffn)));
    const head = this.#bytes.subarray(0, first);
    if (this.#uc.uc_vmem_read(this.#engine, address, UC_PROT_EXEC, head, BigInt(first)) !== 0) {
      return undefined;
    }
    if (first === 15) return this.#bytes.slice(0, 15);
    const tail = this.#bytes.subarray(first, 15);
    const next = address + BigInt(first);
    const ok = this.#translate(next) !== undefined &&
      this.#uc.uc_vmem_read(this.#engine, next, UC_PROT_EXEC, tail, BigInt(15 - first)) === 0;
    return this.#bytes.slice(0, ok ? 15 : first);
  }

  #onCode(address: bigint, size: number): void {
    if (this.#stop !== undefined) return;
    // A REP instruction passes here once per iteration, and once more with its count at zero
    // on its way out: that pass is no instruction of its own (the CPU leaves after the last
    // iteration).
    if (
      address === this.#current && this.#pendingWatch === undefined && this.#repFinished(address)
    ) {
      return;
    }
    if (this.#pendingWatch !== undefined) {
      this.#stop = { kind: "watch", ...this.#pendingWatch };
    } else if (this.#executed >= this.#count) {
      // The slice (or the whole run) is done: stop before this instruction.
      this.#uc.uc_emu_stop(this.#engine);
      return;
    } else if (this.#executed > 0 && this.#breakpoints.has(address)) {
      this.#stop = { kind: "breakpoint", breakpoint: this.#breakpoints.get(address)! };
    } else {
      let verdict = this.#verdicts.get(address);
      if (verdict === undefined) {
        const bytes = this.#fetch(address);
        verdict = bytes === undefined ? null : refusal(bytes, this.#long, this.#knownKgs) ?? null;
        this.#verdicts.set(address, verdict);
      }
      if (verdict !== null) {
        this.#stop = {
          kind: "refused",
          message: `${this.#describeInstruction(address)} is ${verdict}`,
        };
      } else {
        this.#current = address;
        this.#size = size;
        this.#executed++;
        if (this.#mode === "block") this.#discovered(address, size);
        return;
      }
    }
    this.#uc.uc_emu_stop(this.#engine);
  }

  #onInterrupt(vector: number): void {
    this.#exception = vector;
    this.#uc.uc_emu_stop(this.#engine);
  }

  /**
   * Unicorn reports most writes at their virtual address, but some (REP STOS) at the physical
   * one: both readings become candidate pages, compared with the guest's bytes after the run.
   * (Translating inside the hook is not an option: a failed uc_vmem_translate leaves a page
   * fault pending in the CPU.)
   */
  #onWrite(address: bigint, size: number): void {
    const end = address + BigInt(size);
    for (let page = address & ~0xfffn; page < end; page += 0x1000n) this.#written.add(page);
    this.#watchHit(address, size, (w) => w.kind !== "read");
  }

  /** What the run changed in guest RAM, page by page (candidates from the write hook). */
  #collectWrites(blockMode: boolean): RamWrite[] {
    const pages = new Set<bigint>();
    const copied = blockMode ? this.#ram.copiedPages() : undefined;
    for (const page of copied ?? []) pages.add(page);
    for (const page of copied === undefined ? this.#written : []) {
      pages.add(page);
      const physical = this.#translate(page);
      if (physical !== undefined) pages.add(physical & ~0xfffn);
    }
    return [...pages].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).flatMap((page) =>
      this.#ram.changes(page)
    );
  }

  /** Virtual to guest-physical through the engine's MMU (only while no run is under way). */
  #translate(address: bigint): bigint | undefined {
    const err = this.#uc.uc_vmem_translate(this.#engine, address, UC_PROT_READ, this.#u64);
    return err === UcErr.OK ? this.#u64[0]! : undefined;
  }

  #reg(id: number): bigint {
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, id, this.#u64), "uc_reg_read");
    return this.#u64[0]!;
  }

  #setReg(id: number, value: bigint): void {
    this.#u64[0] = value;
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, id, this.#u64), `uc_reg_write(${id})`);
  }

  #writeMsr(msr: number, value: bigint): void {
    this.#msrView.setUint32(0, msr, true);
    this.#msrView.setBigUint64(8, value, true);
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, UcX86Reg.MSR, this.#msr), "wrmsr");
  }

  #readMsr(msr: number): bigint {
    this.#msrView.setUint32(0, msr, true);
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, UcX86Reg.MSR, this.#msr), "rdmsr");
    return this.#msrView.getBigUint64(8, true);
  }

  #writeMmr(id: number, selector: number, base: bigint, limit: number, access: number): void {
    const v = this.#mmrView;
    v.setUint16(0, selector, true);
    v.setBigUint64(8, base, true);
    v.setUint32(16, limit, true);
    v.setUint32(20, qemuFlags(access), true);
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, id, this.#mmr), `uc_reg_write(${id})`);
  }

  #readMmr(id: number): { selector: number; base: bigint; limit: number } {
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, id, this.#mmr), `uc_reg_read(${id})`);
    const v = this.#mmrView;
    return {
      selector: v.getUint16(0, true),
      base: v.getBigUint64(8, true),
      limit: v.getUint32(16, true),
    };
  }

  /** Puts `state` into the engine: control state first, so segment loads see the GDT. */
  #load(state: CpuState): void {
    const s = state.scalars;
    this.#setReg(UcX86Reg.CR4, s.cr4);
    this.#writeMsr(MSR_EFER, s.efer);
    this.#setReg(UcX86Reg.CR3, s.cr3);
    this.#setReg(UcX86Reg.CR0, s.cr0);
    this.#writeMmr(UcX86Reg.GDTR, 0, state.gdtr.base, state.gdtr.limit, 0);
    this.#writeMmr(UcX86Reg.IDTR, 0, state.idtr.base, state.idtr.limit, 0);
    for (const name of ["ldtr", "tr"] as const) {
      const seg = state.segments[name];
      this.#writeMmr(SEGMENT_REGS[name], seg.selector, seg.base, seg.limit, seg.access);
    }
    for (const name of ["cs", "ss", "ds", "es", "fs", "gs"] as const) {
      this.#loadSegment(name, state.segments[name], state.gdtr.base);
    }
    if (this.#wide) {
      this.#setReg(UcX86Reg.FS_BASE, state.segments.fs.base);
      this.#setReg(UcX86Reg.GS_BASE, state.segments.gs.base);
    }
    if (state.kernelGsBase !== undefined) this.#writeMsr(MSR_KERNEL_GS_BASE, state.kernelGsBase);
    for (const name of SCALARS) {
      const id = this.#scalarRegs[name];
      if (id !== undefined) this.#setReg(id, s[name]);
    }
  }

  /**
   * Loads a segment register with the vCPU's hidden part, not whatever its GDT slot says now
   * (they differ after a new LGDT until the next reload, as in Linux's PVH entry): Unicorn loads
   * segments only from descriptors, so the slot in the private RAM image briefly holds a
   * descriptor built from the hidden part, and gets its own bytes back right after.
   */
  #loadSegment(name: SegmentName, seg: Segment, gdtBase: bigint): void {
    const index = seg.selector & ~7;
    const slot = (seg.selector & 4) === 0 && index !== 0
      ? this.#translate(gdtBase + BigInt(index))
      : undefined;
    const saved = new Uint8Array(8);
    const patched = slot !== undefined &&
      this.#uc.uc_mem_read(this.#engine, slot, saved, 8n) === UcErr.OK &&
      this.#uc.uc_mem_write(this.#engine, slot, descriptor(seg), 8n) === UcErr.OK;
    this.#u64[0] = BigInt(seg.selector);
    let err = this.#uc.uc_reg_write(this.#engine, SEGMENT_REGS[name], this.#u64);
    if (patched) this.#uc.uc_mem_write(this.#engine, slot, saved, 8n);
    if (err !== UcErr.OK && patched) {
      // The hidden part makes no loadable descriptor (say, unusable): the slot's own, then.
      err = this.#uc.uc_reg_write(this.#engine, SEGMENT_REGS[name], this.#u64);
    }
    if (err !== UcErr.OK) {
      throw new Error(
        `loading ${name.toUpperCase()} (selector ${hex(seg.selector)}) into the emulator ` +
          `failed: ${strerror(this.#uc, err)}`,
      );
    }
  }

  /** The engine's state after a run; segments keep their hidden parts (loads are refused). */
  #save(before: CpuState): CpuState {
    const scalars = { ...before.scalars };
    for (const name of SCALARS) {
      const id = this.#scalarRegs[name];
      if (id === undefined) continue;
      const value = this.#reg(id);
      scalars[name] = this.#wide || id === SCALAR_REGS[name]
        ? value
        : (before.scalars[name] & ~0xffff_ffffn) | (value & 0xffff_ffffn);
    }
    scalars.cr0 = this.#reg(UcX86Reg.CR0);
    scalars.cr3 = this.#reg(UcX86Reg.CR3);
    scalars.cr4 = this.#reg(UcX86Reg.CR4);
    scalars.efer = this.#readMsr(MSR_EFER);
    const segments = { ...before.segments } as Record<SegmentName, Segment>;
    if (this.#wide) {
      segments.fs = { ...segments.fs, base: this.#reg(UcX86Reg.FS_BASE) };
      segments.gs = { ...segments.gs, base: this.#reg(UcX86Reg.GS_BASE) };
    }
    const gdtr = this.#readMmr(UcX86Reg.GDTR);
    const idtr = this.#readMmr(UcX86Reg.IDTR);
    const state: CpuState = {
      scalars,
      segments,
      gdtr: { base: gdtr.base, limit: gdtr.limit },
      idtr: { base: idtr.base, limit: idtr.limit },
    };
    if (before.kernelGsBase !== undefined) {
      state.kernelGsBase = this.#readMsr(MSR_KERNEL_GS_BASE);
    }
    void SEGMENTS;
    return state;
  }

  close(): void {
    this.#uc.uc_close(this.#engine);
    for (const callback of this.#callbacks) callback.close();
    this.#callbacks = [];
  }
}

/** A GDT descriptor (8 bytes) for a segment's base, limit and VMX access rights. */
function descriptor(seg: Segment): Uint8Array {
  const granular = (seg.access & 0x8000) !== 0;
  const limit = granular ? seg.limit >>> 12 : seg.limit;
  const base = Number(seg.base & 0xffff_ffffn);
  const low = (limit & 0xffff) | ((base & 0xffff) << 16);
  const high = ((base >>> 16) & 0xff) | ((seg.access & 0xff) << 8) | (limit & 0xf_0000) |
    (((seg.access >> 12) & 0xf) << 20) | (base & 0xff00_0000);
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, low >>> 0, true);
  view.setUint32(4, high >>> 0, true);
  return bytes;
}

/** VMX access rights as QEMU's segment-cache flags (the descriptor's high dword, bits 8-23). */
function qemuFlags(access: number): number {
  return ((access & 0xff) << 8) | (((access >> 12) & 0xf) << 20);
}

function strerror(uc: UnicornSymbols, err: number): string {
  const p = uc.uc_strerror(err);
  return p === null ? `error ${err}` : `${Deno.UnsafePointerView.getCString(p)} (${err})`;
}

function check(uc: UnicornSymbols, err: number, what: string): void {
  if (err !== UcErr.OK) throw new Error(`${what} failed: ${strerror(uc, err)}`);
}
