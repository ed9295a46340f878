/**
 * The {@link Emulator} over libunicorn: one engine per private RAM image, guest RAM mapped at
 * its guest-physical addresses, Unicorn's own MMU walking the guest's page tables from CR3.
 *
 * A run is sliced (so Ctrl-C and the wall-time budget are noticed between slices). A short run
 * (a step) or one with watchpoints is watched instruction by instruction: a code hook counts,
 * stops at breakpoints and refuses instructions (emu/refusal.ts) before they execute, a write
 * hook notes the pages written and watchpoint hits. A long run goes block by block (see
 * #setMode). Exceptions and accesses outside RAM stop either with a refusal. The vCPU's state
 * goes in and out through ./unicorn_state.ts.
 *
 * @module
 */
import type {
  AddressRange,
  EmuBreakpoint,
  Emulator,
  EmuStop,
  RamWrite,
  RunRequest,
  RunResult,
} from "../emu/emulator.ts";
import { refusal, repCountMask } from "../emu/refusal.ts";
import type { PrivateRam } from "./ram_image.ts";
import { check, strerror, UnicornState } from "./unicorn_state.ts";
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
  UcErr,
  UcHook,
  UcMem,
  UcX86Reg,
  type UnicornSymbols,
} from "./unicorn_symbols.ts";

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
  #cpu: UnicornState;
  #bytes = new Uint8Array(16);
  #verdicts = new Map<bigint, string | null>();

  // The run in progress.
  #count = 0;
  /** The range of a range step; undefined otherwise. */
  #range: AddressRange | undefined;
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
    this.#uc = uc;
    this.#ram = ram;
    const out = new BigUint64Array(1);
    check(uc, uc.uc_open(UC_ARCH_X86, mode, out), "uc_open");
    this.#engine = Deno.UnsafePointer.create(out[0]!)!;
    this.#cpu = new UnicornState(uc, this.#engine, mode === UC_MODE_64);
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
    this.#cpu.load(request.state);
    this.#count = request.count;
    this.#range = request.range;
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
      const physical = this.#cpu.translate(watch.address);
      if (physical !== undefined) this.#watchPhysical.set(watch, physical);
    }
    if (this.#watches.length > 0) this.#cpu.load(request.state); // no fault left pending
    this.#readHook(this.#watches.some((w) => w.kind !== "write"));
    // A range step watches every instruction's address: instruction mode.
    const blockMode = request.count > BLOCK_MODE_FROM && this.#watches.length === 0 &&
      request.range === undefined;
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
      const rip = this.#cpu.reg(this.#cpu.pc);
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
    const state = this.#cpu.save(request.state);
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
    if (this.#cpu.reg(this.#cpu.pc) !== this.#current) return;
    if (this.#repFinished(this.#current)) {
      this.#cpu.setReg(this.#cpu.pc, this.#current + BigInt(this.#size));
    }
  }

  /** Whether the REP string instruction at `address` (RIP) has its count at zero: done. */
  #repFinished(address: bigint, mask = this.#repMask(address)): boolean {
    if (mask === undefined) return false;
    const count = this.#cpu.counter();
    return (count & mask) === 0n;
  }

  #repMask(address: bigint): bigint | undefined {
    const bytes = this.#fetch(address);
    return bytes === undefined ? undefined : repCountMask(bytes, this.#long);
  }

  /** Turns how uc_emu_start ended into a stop, with RIP at a clean instruction boundary. */
  #settle(err: number): void {
    if (this.#exception !== undefined || this.#outside !== undefined) {
      const rip = this.#cpu.reg(this.#cpu.pc);
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
        this.#cpu.setReg(this.#cpu.pc, this.#current);
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
      const cr2 = this.#cpu.reg(UcX86Reg.CR2);
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
    const ok = this.#cpu.translate(next) !== undefined &&
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
    } else if (this.#executed > 0 && this.#outsideRange(address)) {
      this.#stop = { kind: "range" };
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

  /** A range step's end: `address` is outside the range (never without one). */
  #outsideRange(address: bigint): boolean {
    const range = this.#range;
    return range !== undefined && (address < range.start || address >= range.end);
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
      const physical = this.#cpu.translate(page);
      if (physical !== undefined) pages.add(physical & ~0xfffn);
    }
    return [...pages].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).flatMap((page) =>
      this.#ram.changes(page)
    );
  }

  close(): void {
    this.#uc.uc_close(this.#engine);
    for (const callback of this.#callbacks) callback.close();
    this.#callbacks = [];
  }
}
