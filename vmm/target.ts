/**
 * A running bhyve VM as a {@link DebugTarget}: vCPUs are threads (thread id = vCPU + 1).
 *
 * While the VM is held, registers and paging state are cached per vCPU (a parked vCPU cannot
 * change them) and a cheap timer notices vCPUs that bhyve releases or activates, holding them
 * too. While it runs, {@link VmTarget.waitForStop} polls for the VM vanishing.
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import {
  type Breakpoint,
  type Capability,
  type DebugTarget,
  type StepRange,
  type StopEvent,
  type TargetDescription,
  TargetError,
  TargetGoneError,
  type ThreadInfo,
} from "../rsp/target.ts";
import type { HoldRecord } from "./hold_record.ts";
import { GuestMemory } from "./memory.ts";
import { recoverHold } from "./release.ts";
import { runMonitor } from "./monitor.ts";
import { cpuModeName, guestPaging, pagingModeName, type PagingState } from "./paging.ts";
import { RegisterReader, type RegisterValues } from "./register_reader.ts";
import { REGISTERS, targetDescription } from "./registers.ts";
import { RunControl } from "./run_control.ts";
import { EmulatedControl, type EmulationSetup } from "./emulated_control.ts";
import { commitPaths } from "./emulation.ts";
import { ParkTracker } from "./parking.ts";
import { GuestWriter } from "./write/mod.ts";
import { isGone, type VmHandle, VmmError, VmReg } from "./vmmapi.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** ESRCH: the Enn code for a thread that is not an active vCPU. */
export const ESRCH = 3;
/** EIO: the Enn code when a failed call carries no errno. */
export const EIO = 5;
/** The signal of a stop: the session replaces it with what happened (attach, Ctrl-C ...). */
export const SIGTRAP = 5;

/** Timing knobs (tests shorten them). */
export interface VmTargetOptions {
  /** While held: how often to look for vCPUs bhyve released or activated (ms). */
  heldPollMs?: number;
  /** While running: how often to check that the VM still exists (ms). */
  runningPollMs?: number;
  /** Emulated stepping and breakpoints: the emulator library and the guest write paths. */
  emulation?: EmulationSetup;
  /** How long a stop waits for suspended vCPUs to park (ms); default 2000. */
  parkTimeoutMs?: number;
  /**
   * bhyve's vCPU threads spin while a vCPU is held (FreeBSD 13.x: vmexit_debug does not
   * sleep): each attach says so once.
   */
  heldVcpusSpin?: boolean;
  /**
   * Where to record the vCPUs this server holds (hold_record.ts). vCPUs an earlier server
   * recorded there, and left parked, are taken as this one's and resumed at once.
   */
  record?: HoldRecord;
  /**
   * `--allow-write`: memory and register writes reach the guest (the VM must have been opened
   * writable for memory). Off by default: nothing is ever written to the guest.
   */
  allowWrite?: boolean;
  /** Where `monitor dump` may write (the server's --dump-dir); refused without it. */
  dumpDir?: string;
}

/** What a 13.x user is told once per attach. */
export const SPIN_NOTE = "FreeBSD 13.x: bhyve's vCPU threads do not sleep while a vCPU is " +
  "held (vmexit_debug goes straight back to VM_RUN), so each vCPU held by the debugger keeps " +
  "one host core busy until you continue or detach.";

/** Why each capability is missing on a VM, in the words the user sees. */
export const UNSUPPORTED: Readonly<Record<Capability, string>> = {
  "step": "Single-step is not available: bhyve-gdbstub runs outside bhyve, and a stock bhyve " +
    "continues the MTRAP exit instead of stopping (use bhyve's own -G to step).",
  "breakpoint": "Breakpoints are not available: bhyve-gdbstub runs outside bhyve. With " +
    "BPT_EXIT enabled, bhyve aborts the whole VM on a breakpoint exit it did not expect; " +
    "without it, the int3 goes to the guest. Hardware breakpoints' debug exceptions likewise go to the " +
    "guest or to bhyve's own thread (use bhyve's own -G for breakpoints).",
  "write-memory": "Writing guest memory is not available: bhyve-gdbstub was started without " +
    "--allow-write, so it never writes to the guest.",
  "write-register": "Writing registers is not available: bhyve-gdbstub was started without " +
    "--allow-write, so it never writes to the guest.",
};

/** The write capabilities, which `--allow-write` turns on. */
const WRITES: ReadonlySet<Capability> = new Set(["write-memory", "write-register"]);

/** The VM model behind a debugger session. */
export class VmTarget implements DebugTarget {
  readonly vm: VmHandle;
  readonly memory: GuestMemory;
  readonly registers: RegisterReader;
  readonly control: RunControl;
  /** Stepping, breakpoints and watchpoints by emulation (vmm/emulated_control.ts). */
  readonly emulated: EmulatedControl;
  readonly parking: ParkTracker;
  readonly writer: GuestWriter;
  readonly allowWrite: boolean;
  /** Whether readMemory takes guest-physical addresses (`monitor phys on`). */
  physicalMode = false;
  /** Where `monitor dump` may write; undefined: refused. */
  readonly dumpDir: string | undefined;

  #record: HoldRecord | undefined;
  #heldPollMs: number;
  #runningPollMs: number;
  #parkTimeoutMs: number;
  #heldVcpusSpin: boolean;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Retries the resume of stranded vCPUs (see {@link RunControl.stranded}). */
  #retry: ReturnType<typeof setTimeout> | undefined;
  #gone: string | undefined;
  /** The thread of the last stop: what a `continue` without a thread list emulates. */
  #lastThread = 1;
  /** Stops since the last attach: the first one says the 13.x note. */
  #stops = 0;
  #active: number[] | undefined;
  #registerCache = new Map<number, RegisterValues>();
  #pagingCache = new Map<number, PagingState>();

  constructor(vm: VmHandle, options: VmTargetOptions = {}) {
    this.vm = vm;
    this.memory = new GuestMemory(vm);
    this.registers = new RegisterReader(vm);
    const record = options.record;
    this.#record = record;
    this.control = new RunControl(vm, record && ((vcpus) => writeRecord(record, vcpus)));
    this.parking = new ParkTracker(vm);
    this.writer = new GuestWriter(vm, this.memory);
    this.allowWrite = options.allowWrite ?? false;
    this.emulated = new EmulatedControl(vm, {
      ...(options.emulation ?? { factory: "No emulator library was configured." }),
      ...(this.allowWrite ? { writer: commitPaths(vm, this.writer) } : {}),
    });
    this.#heldPollMs = options.heldPollMs ?? 75;
    this.#runningPollMs = options.runningPollMs ?? 250;
    this.#parkTimeoutMs = options.parkTimeoutMs ?? 2000;
    this.#heldVcpusSpin = options.heldVcpusSpin ?? false;
    this.dumpDir = options.dumpDir;
    if (record !== undefined) this.#recover(record);
  }

  /** Resumes the vCPUs an earlier server recorded and left parked (killed with SIGKILL). */
  #recover(record: HoldRecord): void {
    let resumed: number[];
    try {
      resumed = recoverHold(this.control, record);
    } catch (error) {
      log.warn("cannot resume what an earlier bhyve-gdbstub held: {error}", {
        error: String(error),
      });
      return;
    }
    if (this.control.stranded.size > 0) this.#startRetry();
    if (resumed.length > 0) {
      log.warn("resumed vCPUs {resumed} of VM {name}, left held by an earlier bhyve-gdbstub", {
        resumed: resumed.join(", "),
        name: this.vm.name,
      });
    }
  }

  /**
   * The last resort before the process ends abruptly (an uncaught error): resumes what this
   * server holds, synchronously, and tells what it could not. Never throws.
   */
  releaseNow(): string {
    this.#stopTimer();
    try {
      if (this.#gone === undefined) {
        this.control.release();
        this.control.retryStranded();
      }
    } catch (error) {
      return `could not release VM ${this.vm.name}: ${(error as Error).message}`;
    }
    const left = [...this.control.stranded];
    return left.length === 0
      ? `released VM ${this.vm.name}`
      : `vCPUs ${
        left.join(", ")
      } of VM ${this.vm.name} stay held (bhyve-gdbstub release --vm ${this.vm.name})`;
  }

  /** Why the VM is gone, if it is. */
  get gone(): string | undefined {
    return this.#gone;
  }

  description(): TargetDescription {
    return targetDescription();
  }

  /** Active vCPUs (cached while held). */
  activeCpus(): number[] {
    if (this.#active !== undefined && this.control.held) return this.#active;
    this.#active = this.#guard(() => this.vm.activeCpus());
    return this.#active;
  }

  threads(): ThreadInfo[] {
    const active = this.activeCpus();
    return active.map((vcpu) => ({
      id: vcpu + 1,
      name: `vCPU ${vcpu}`,
      extra: this.#describe(vcpu, active),
    }));
  }

  #describe(vcpu: number, active: readonly number[]): string {
    const parts = [`vCPU ${vcpu}`, this.control.state(vcpu, active)];
    try {
      const state = this.pagingState(vcpu);
      parts.push(cpuModeName(state.paging.cpuMode), pagingModeName(state.paging.pagingMode));
    } catch (error) {
      if (error instanceof TargetGoneError) throw error;
    }
    return parts.join(", ");
  }

  /** The vCPU behind thread id `thread`, which must be active. */
  vcpuOf(thread: number): number {
    const vcpu = thread - 1;
    if (!Number.isInteger(thread) || thread < 1 || !this.activeCpus().includes(vcpu)) {
      // The set may have grown since it was cached.
      this.#active = undefined;
      if (!this.activeCpus().includes(vcpu)) {
        throw new TargetError(
          `Thread ${thread} is not an active vCPU (active: ${
            this.activeCpus().map((v) => `vCPU ${v} = thread ${v + 1}`).join(", ") || "none"
          })`,
          ESRCH,
        );
      }
    }
    return vcpu;
  }

  readRegisters(thread: number): (Uint8Array | undefined)[] {
    const vcpu = this.vcpuOf(thread);
    const cached = this.#registerCache.get(vcpu);
    if (cached !== undefined) return [...cached];
    const values = this.#guard(() => this.registers.readAll(vcpu));
    if (this.#cacheable(vcpu)) this.#registerCache.set(vcpu, values);
    return [...values];
  }

  readRegister(thread: number, regnum: number): Uint8Array | undefined {
    const vcpu = this.vcpuOf(thread);
    const def = REGISTERS[regnum];
    if (def === undefined) return undefined;
    const cached = this.#registerCache.get(vcpu);
    if (cached !== undefined) return cached[regnum];
    return this.#guard(() => this.registers.read(vcpu, def));
  }

  /** The vCPU's control registers and vm_guest_paging (cached while held). */
  pagingState(vcpu: number): PagingState {
    const cached = this.#pagingCache.get(vcpu);
    if (cached !== undefined) return cached;
    const state = this.#guard(() => {
      const ids = Int32Array.of(VmReg.CR0, VmReg.CR3, VmReg.CR4, VmReg.EFER);
      const values = new BigUint64Array(4);
      this.vm.getRegisterSet(vcpu, ids, values);
      const [cr0, cr3, cr4, efer] = values as unknown as [bigint, bigint, bigint, bigint];
      const regs = { cr0, cr3, cr4, efer };
      return { ...regs, paging: guestPaging(regs) };
    });
    if (this.#cacheable(vcpu)) this.#pagingCache.set(vcpu, state);
    return state;
  }

  readMemory(thread: number, address: bigint, length: number): Uint8Array {
    const vcpu = this.vcpuOf(thread);
    if (length <= 0) return new Uint8Array(0);
    return this.#guard(() => {
      if (this.physicalMode) return this.memory.readPhysical(vcpu, address, length);
      const paging = this.pagingState(vcpu).paging;
      return this.memory.readVirtual(vcpu, paging, address, length, {
        cache: this.#cacheable(vcpu),
      });
    });
  }

  /**
   * Stops every vCPU (attach, Ctrl-C, or after a run of some of them); the session picks the
   * signal from the reason (SIGTRAP for an attach, SIGINT for a Ctrl-C).
   */
  async stop(): Promise<StopEvent> {
    await this.emulated.halt(); // an emulated continue commits before anything is read
    if (this.#gone !== undefined) return this.#exited();
    this.#stopRetry();
    try {
      let suspended: number[];
      try {
        suspended = this.#guard(() => this.control.hold());
      } catch (error) {
        if (!(error instanceof TargetError)) throw error;
        // One failed look (vm_debug_cpus, vm_active_cpus): try once more before giving up.
        log.warn("holding the VM: {error}; trying again", { error: error.message });
        suspended = this.#guard(() => this.control.hold());
      }
      // APs bhyve parked at an INIT since this debugger let them run are bhyve's, but may be
      // mid-exit just the same: they are waited for like the ones suspended here.
      const parking = [...suspended, ...this.control.takeFreshlyParked()];
      // A register read waits until the vCPU has left the guest; in the debug set it then
      // stays parked. One read each makes "stopped" mean parked. A failed read is no reason
      // to fail the stop: the vCPU is in the debug set and parks at its next exit anyway.
      for (const vcpu of parking) {
        try {
          this.#guard(() => this.vm.getRegister(vcpu, VmReg.RIP));
        } catch (error) {
          if (!(error instanceof TargetError)) throw error;
          log.debug("waiting for vCPU {vcpu} to park: {error}", { vcpu, error: error.message });
        }
      }
      // Out of the guest is not yet parked: an exit bhyve is still emulating has not been
      // applied. No snapshot until each has taken its debug exit (parking.ts).
      this.#guard(() => this.parking.suspended(parking));
      await this.parking.settle(this.#parkTimeoutMs);
    } catch (error) {
      if (error instanceof TargetGoneError) return this.#exited();
      throw error;
    }
    this.#invalidate();
    this.#startHeldPoll();
    const active = this.activeCpus();
    if (this.#stops === 0 && this.#heldVcpusSpin && this.control.mine.size > 0) {
      log.warn(`${SPIN_NOTE} Held now: ${this.control.mine.size} vCPU(s).`);
    }
    this.#stops++;
    this.#lastThread = (active[0] ?? 0) + 1;
    return {
      kind: "stopped",
      thread: this.#lastThread,
      signal: SIGTRAP,
      reason: { type: "interrupt" },
    };
  }

  /** Range steps are emulated like single steps (see EmulatedControl.step). */
  readonly rangeStepping = true;

  /** One instruction of `thread` (or a range step), emulated; the other vCPUs stay held. */
  async step(thread: number, signal: AbortSignal, range?: StepRange): Promise<StopEvent> {
    const vcpu = this.vcpuOf(thread);
    try {
      return await this.emulated.step(vcpu, thread, range, signal);
    } finally {
      this.#afterEmulation(vcpu);
      this.#lastThread = thread;
    }
  }

  insertBreakpoint(bp: Breakpoint): void {
    this.emulated.insert(bp);
  }

  removeBreakpoint(bp: Breakpoint): void {
    this.emulated.remove(bp);
  }

  /** Registers, paging and translations of `vcpu` changed under the caches. */
  #afterEmulation(vcpu: number): void {
    this.#invalidate([vcpu]);
  }

  /**
   * Lets `threads` run (all when undefined). The others stay held: gdb's scheduler-locking
   * (`vCont;c:2`) runs one vCPU, as QEMU's gdbstub does. With breakpoints or watchpoints set
   * (and emulation available), one vCPU runs in the emulator instead, every vCPU held.
   */
  resume(threads?: readonly number[]): Promise<void> {
    if (this.emulated.emulatesContinue() && this.control.held) {
      try {
        const thread = threads?.[0] ?? this.#lastThread;
        this.emulated.start(this.vcpuOf(thread), thread);
      } catch (error) {
        return Promise.reject(error);
      }
      return Promise.resolve();
    }
    this.emulated.forget(); // guest RAM changes while the VM runs natively
    if (this.#gone !== undefined) return Promise.reject(new TargetGoneError(this.#gone));
    let vcpus: number[] | undefined;
    try {
      vcpus = threads?.map((thread) => this.vcpuOf(thread));
      if (vcpus !== undefined && !vcpus.some((vcpu) => this.control.mine.has(vcpu))) {
        throw new TargetError(
          `Nothing to run: ${
            vcpus.map((v) => `vCPU ${v} is ${this.control.state(v, this.activeCpus())}`).join(", ")
          } (bhyve starts an AP itself, on its SIPI)`,
          16,
        );
      }
      if (vcpus === undefined) this.#stopTimer();
      this.#invalidate();
      this.parking.clear();
      this.#guard(() => this.control.release(vcpus));
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.control.stranded.size > 0) this.#startRetry();
    return Promise.resolve();
  }

  waitForStop(signal: AbortSignal): Promise<StopEvent> {
    if (this.emulated.running) {
      return this.emulated.wait(signal).then((event) => {
        if (event.kind === "stopped") {
          this.#afterEmulation(event.thread - 1);
          this.#lastThread = event.thread;
        }
        return event;
      }).catch((error) => {
        this.#invalidate();
        const aborted = error instanceof DOMException && error.name === "AbortError";
        if (aborted || error instanceof TargetError || error instanceof TargetGoneError) {
          throw error;
        }
        throw new TargetError(`Emulation failed: ${(error as Error).message}`, EIO);
      });
    }
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(abortError());
      if (this.#gone !== undefined) return resolve(this.#exited());
      const timer = setInterval(() => {
        try {
          this.#guard(() => this.vm.activeCpus());
        } catch (error) {
          if (!(error instanceof TargetGoneError)) return;
          finish();
          resolve(this.#exited());
        }
      }, this.#runningPollMs);
      const onAbort = () => {
        finish();
        reject(abortError());
      };
      const finish = () => {
        clearInterval(timer);
        signal.removeEventListener("abort", onAbort);
      };
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  async detach(): Promise<void> {
    await this.emulated.halt();
    // The guest runs on natively after a detach, whatever breakpoints were left (a dropped
    // connection leaves them): never into another emulated run.
    this.emulated.clearBreakpoints();
    this.#stops = 0; // the next debugger's attach is a first stop again
    this.physicalMode = false; // nothing one debugger sets reaches the next
    if (this.#gone !== undefined) {
      this.#stopTimer();
      return;
    }
    try {
      await this.resume();
    } catch (error) {
      if (!(error instanceof TargetGoneError)) throw error;
    }
  }

  unsupported(capability: Capability): string | undefined {
    if (capability === "step" || capability === "breakpoint") {
      const why = this.emulated.unavailable();
      if (why === undefined) return undefined;
      const what = capability === "step" ? "Single-step is" : "Breakpoints are";
      return `${what} not available: bhyve-gdbstub runs outside bhyve, whose own thread takes ` +
        `MTRAP, #DB and breakpoint exits, so it executes instructions by emulation instead, ` +
        `and emulation is unavailable: ${why}`;
    }
    if (this.allowWrite && WRITES.has(capability)) return undefined;
    return UNSUPPORTED[capability];
  }

  writeMemory(thread: number, address: bigint, data: Uint8Array): void {
    const vcpu = this.#writable(thread, "write-memory");
    try {
      this.#guard(() => {
        const paging = this.physicalMode ? undefined : this.pagingState(vcpu).paging;
        this.writer.writeMemory(vcpu, paging, address, data);
      });
    } catch (error) {
      // gdb 13 and lldb 14 show no text for a refused memory write: the log says why.
      if (error instanceof TargetError) log.info("{error}", { error: error.message });
      throw error;
    } finally {
      this.#invalidate(); // page tables may have changed, and with them any translation
      this.emulated.forget(); // the emulator's private copy of RAM predates the write
    }
  }

  writeRegister(thread: number, regnum: number, value: Uint8Array): void {
    const vcpu = this.#writable(thread, "write-register");
    const def = REGISTERS[regnum];
    if (def === undefined) throw new TargetError(`No register number ${regnum}`, EIO);
    try {
      this.#guard(() => this.writer.writeRegister(vcpu, def, value));
    } finally {
      this.#invalidate(); // CR0/CR3/CR4/EFER change translation; RIP, what gdb reads next
    }
  }

  /** The vCPU of `thread` if writes are allowed and it is parked (no race with its own run). */
  #writable(thread: number, capability: Capability): number {
    const reason = this.unsupported(capability);
    if (reason !== undefined) throw new TargetError(reason, 1);
    const vcpu = this.vcpuOf(thread);
    if (!this.control.held || this.control.free.has(vcpu)) {
      throw new TargetError(`vCPU ${vcpu} is running: stop it before writing`, 16);
    }
    return vcpu;
  }

  monitor(
    command: string,
    thread: number,
    print?: (text: string) => Promise<void>,
  ): string | Promise<string> {
    return runMonitor(this, command, thread, print);
  }

  /** Resumes what this debugger stopped (if anything) and closes the VM. */
  async close(): Promise<void> {
    await this.detach();
    this.emulated.forget(); // the emulator's engines and its copy of guest RAM
    // Last chance for a vCPU whose resume failed: never leave the VM parked behind us.
    for (let tries = 0; this.control.stranded.size > 0 && tries < 50; tries++) {
      try {
        this.#guard(() => this.control.retryStranded());
      } catch (error) {
        if (error instanceof TargetGoneError) break;
      }
      if (this.control.stranded.size > 0) await new Promise((r) => setTimeout(r, 20));
    }
    if (this.control.stranded.size > 0) {
      log.error(
        "vCPUs {vcpus} of VM {name} could not be resumed (vm_resume_cpu kept failing): they " +
          "stay in vmm's debug set until something calls vm_resume_cpu on them (bhyvectl has " +
          "no option for it)",
        { vcpus: [...this.control.stranded], name: this.vm.name },
      );
    }
    this.#stopRetry();
    this.vm.close();
    this.#record?.close();
  }

  /**
   * Keeps trying to resume stranded vCPUs while the VM runs (they must not stay parked),
   * every 20 ms at first, backing off to once a second.
   */
  #startRetry(delay = 20): void {
    if (this.#retry !== undefined && delay === 20) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      try {
        this.#guard(() => this.control.retryStranded());
      } catch (error) {
        log.debug("resume retry: {error}", { error: String(error) });
      }
      if (this.control.stranded.size > 0 && this.#gone === undefined) {
        this.#startRetry(Math.min(1000, delay * 2));
      }
    }, delay);
  }

  #stopRetry(): void {
    if (this.#retry === undefined) return;
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  /** Drops cached registers and paging state (of one vCPU, or all). */
  #invalidate(vcpus?: readonly number[]): void {
    this.#active = undefined;
    // Page tables are shared guest memory: any vCPU that ran may have changed anyone's.
    this.memory.forget();
    if (vcpus === undefined) {
      this.#registerCache.clear();
      this.#pagingCache.clear();
      return;
    }
    for (const vcpu of vcpus) {
      this.#registerCache.delete(vcpu);
      this.#pagingCache.delete(vcpu);
    }
  }

  #cacheable(vcpu: number): boolean {
    // While some vCPUs run (a per-thread resume), shared memory and page tables may change.
    return this.control.held && this.control.free.size === 0 &&
      (this.control.mine.has(vcpu) || this.control.bhyves.has(vcpu)) &&
      this.#guard(() => this.parking.parked(vcpu));
  }

  #startHeldPoll(): void {
    if (this.#timer !== undefined) return;
    const timer = setInterval(() => {
      try {
        const changes = this.#guard(() => this.control.poll());
        this.#guard(() => this.parking.suspended(changes.suspended));
        const changed = [...changes.suspended, ...changes.adopted];
        if (changed.length > 0) this.#invalidate(changed);
      } catch (error) {
        log.debug("poll while held: {error}", { error: String(error) });
      }
    }, this.#heldPollMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  #stopTimer(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #exited(): StopEvent {
    return { kind: "exited", status: 0, message: this.#gone ?? "the VM is gone" };
  }

  /** Runs `f`; a VmmError meaning "VM gone" becomes TargetGoneError (and is remembered). */
  #guard<T>(f: () => T): T {
    if (this.#gone !== undefined) throw new TargetGoneError(this.#gone);
    try {
      return f();
    } catch (error) {
      if (error instanceof VmmError && !isGone(error)) {
        // A failed call the session can live with: an Enn reply carrying the message.
        throw new TargetError(error.message, error.errno || EIO, { cause: error });
      }
      if (!isGone(error)) throw error;
      this.#gone = `VM ${this.vm.name} is gone (${(error as Error).message})`;
      log.debug("{gone}", { gone: this.#gone });
      this.#stopTimer();
      this.control.abandon();
      this.parking.clear();
      this.#invalidate();
      throw new TargetGoneError(this.#gone, { cause: error });
    }
  }
}

/** Writes the record; a record that cannot be written costs a warning, never the hold. */
function writeRecord(record: HoldRecord, vcpus: number[]): void {
  try {
    record.write(vcpus);
  } catch (error) {
    log.warn("cannot write {path}: {error}", { path: record.path, error: String(error) });
  }
}

function abortError(): DOMException {
  return new DOMException("waitForStop was aborted", "AbortError");
}
