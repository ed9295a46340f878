/**
 * Stepping, breakpoints and watchpoints on a stock bhyve, by emulation: what VmTarget does for
 * `s`, `Z`/`z`, and a `c` while breakpoints are set. The vCPU being debugged is executed in the
 * emulator (vmm/emulation.ts) while every vCPU stays held; interrupts are not delivered during
 * an emulated run. A `c` runs until a hit, a refusal, Ctrl-C or the budget.
 *
 * @module
 */
import type { AddressRange, EmuBreakpoint, RunResult } from "../emu/emulator.ts";
import type { Breakpoint, StopEvent, StopReason } from "../rsp/target.ts";
import { TargetError } from "../rsp/target.ts";
import { type CommitPaths, describeStop, Emulation, type EmulatorFactory } from "./emulation.ts";
import type { VmHandle } from "./vmmapi.ts";

/** The stop's signal (rsp/packets/stop_reply.ts signalOf): SIGTRAP for a step or a hit,
 * SIGINT for Ctrl-C, none for a refusal (so gdb's stepping ends there). */
const SIGTRAP = 5;
const SIGINT = 2;
const NO_SIGNAL = 0;
const EINVAL = 22;

/** How long an emulated `continue` may run before it gives up (defaults). */
export interface Budget {
  instructions: number;
  milliseconds: number;
}
export const DEFAULT_BUDGET: Budget = { instructions: 100_000_000, milliseconds: 10_000 };

/** What emulation needs; each missing part makes stepping refuse with the reason. */
export interface EmulationSetup {
  /** The loaded emulator library, or why it could not be loaded (with how to get it). */
  factory: EmulatorFactory | string;
  /** The guest write paths; undefined when the server was started without --allow-write. */
  writer?: CommitPaths;
  budget?: Budget;
}

const NO_WRITE = "Emulated execution changes the guest (registers, memory): start " +
  "bhyve-gdbstub with --allow-write to step, or to honour breakpoints and watchpoints.";

/** Emulated execution for one VM. */
export class EmulatedControl {
  budget: Budget;
  #setup: EmulationSetup;
  #emulation: Emulation | undefined;
  #breakpoints = new Map<string, Breakpoint>();
  #run: Promise<StopEvent> | undefined;
  #interrupted = false;

  constructor(vm: VmHandle, setup: EmulationSetup) {
    this.#setup = setup;
    this.budget = setup.budget ?? { ...DEFAULT_BUDGET };
    if (typeof setup.factory !== "string" && setup.writer !== undefined) {
      this.#emulation = new Emulation(vm, setup.factory, setup.writer);
    }
  }

  /** Why emulation is unavailable, in words; undefined when it is available. */
  unavailable(): string | undefined {
    // One line: clients show it as a stop's description, where a line break ends it.
    if (typeof this.#setup.factory === "string") {
      return this.#setup.factory.replace(/\s*\n\s*/g, " ");
    }
    if (this.#setup.writer === undefined) return NO_WRITE;
    return undefined;
  }

  /** Breakpoints and watchpoints set (Z packets). */
  get breakpoints(): Breakpoint[] {
    return [...this.#breakpoints.values()];
  }

  insert(bp: Breakpoint): void {
    const why = this.unavailable();
    if (why !== undefined) throw new TargetError(why, EINVAL);
    if (bp.length <= 0 || bp.length > 4096) {
      throw new TargetError(`A watchpoint of ${bp.length} bytes cannot be honoured`, EINVAL);
    }
    this.#breakpoints.set(key(bp), bp);
  }

  remove(bp: Breakpoint): void {
    this.#breakpoints.delete(key(bp));
  }

  /** Forgets every breakpoint and watchpoint (detach). */
  clearBreakpoints(): void {
    this.#breakpoints.clear();
  }

  /**
   * One instruction of `vcpu`; with `range` (gdb's `vCont;r`), one and then on while RIP stays
   * in [start, end), within the budget of a continue, until a hit, a refusal or `signal`
   * (Ctrl-C).
   */
  async step(
    vcpu: number,
    thread: number,
    range?: AddressRange,
    signal?: AbortSignal,
  ): Promise<StopEvent> {
    const emulation = this.#ready();
    if (range === undefined) {
      const result = await emulation.run(vcpu, 1, { breakpoints: this.#emuBreakpoints() });
      return stopEvent(thread, result, { type: "step" });
    }
    const result = await emulation.run(vcpu, this.budget.instructions, {
      breakpoints: this.#emuBreakpoints(),
      maxMs: this.budget.milliseconds,
      interrupted: () => signal?.aborted ?? false,
      range,
    });
    return this.#budgetOrStop(emulation, thread, result, "Range step", "Step");
  }

  /** Whether a `continue` is emulated (breakpoints or watchpoints set, emulation available). */
  emulatesContinue(): boolean {
    return this.#breakpoints.size > 0 && this.unavailable() === undefined;
  }

  /** Starts an emulated `continue` of `vcpu`; {@link wait} resolves with its stop. */
  start(vcpu: number, thread: number): void {
    const emulation = this.#ready();
    this.#interrupted = false;
    this.#run = emulation.run(vcpu, this.budget.instructions, {
      breakpoints: this.#emuBreakpoints(),
      maxMs: this.budget.milliseconds,
      interrupted: () => this.#interrupted,
    }).then((result) =>
      this.#budgetOrStop(emulation, thread, result, "Emulated continue", "Continue")
    );
  }

  /**
   * The stop of a run whose instruction count was the budget (a continue, a range step):
   * running out of it is no step, but a stop that says so, with no signal.
   */
  #budgetOrStop(
    emulation: Emulation,
    thread: number,
    result: RunResult,
    what: string,
    again: string,
  ): StopEvent {
    if (result.stop.kind === "count") {
      result.stop = { kind: "budget", what: "instructions" };
      if (emulation.last !== undefined) emulation.last.stop = describeStop(result);
    }
    if (result.stop.kind !== "budget") return stopEvent(thread, result, { type: "step" });
    const event = stopEvent(
      thread,
      result,
      { type: "refused", message: "emulation budget reached" },
      `${what} stopped after ${result.executed} instructions: the ${
        result.stop.what === "time"
          ? `wall-time budget (${this.budget.milliseconds} ms)`
          : `instruction budget (${this.budget.instructions})`
      } ran out. ${again} again to go on emulating, or delete the breakpoints to run ` +
        `natively (where breakpoints are not honoured). "monitor budget" changes the budget.\n`,
    );
    return event.kind === "stopped" ? { ...event, signal: NO_SIGNAL } : event;
  }

  /** Whether an emulated continue is under way. */
  get running(): boolean {
    return this.#run !== undefined;
  }

  /**
   * The emulated continue's stop. `signal` (Ctrl-C) ends the run at its next slice; once what
   * it ran is committed, this rejects with an AbortError, as a native run's wait does (the
   * session then stops the VM and reports the interrupt).
   */
  async wait(signal: AbortSignal): Promise<StopEvent> {
    const run = this.#run!;
    const onAbort = () => this.#interrupted = true;
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const event = await run;
      if (signal.aborted) throw new DOMException("waitForStop was aborted", "AbortError");
      return event;
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#run = undefined;
    }
  }

  /** Ends an emulated continue (Ctrl-C, detach) and waits until it committed. */
  async halt(): Promise<void> {
    if (this.#run === undefined) return;
    this.#interrupted = true;
    try {
      await this.#run;
    } catch {
      // its error was reported to whoever waited for it
    }
    this.#run = undefined;
  }

  /** Guest RAM may have changed (a vCPU ran natively): the next run takes a fresh image. */
  forget(): void {
    const emulation = this.#emulation;
    if (this.#run === undefined) {
      emulation?.forget();
      return;
    }
    // Never under a run in progress: end it, then drop its engines.
    this.#interrupted = true;
    this.#run.finally(() => emulation?.forget()).catch(() => {});
  }

  /** `monitor emulation`: what the last run did. */
  describeLast(): string {
    const why = this.unavailable();
    const head = why === undefined
      ? `Emulated execution: available (Unicorn ${
        (this.#setup.factory as EmulatorFactory).version
      })`
      : `Emulated execution: unavailable. ${why}`;
    const budget =
      `Budget of an emulated continue or range step: ${this.budget.instructions} instructions, ` +
      `${this.budget.milliseconds} ms`;
    const last = this.#emulation?.last;
    const lastText = last === undefined
      ? "No emulated run yet."
      : `Last run: vCPU ${last.vcpu}, ${last.executed} instructions in ${
        last.milliseconds.toFixed(1)
      } ms; stopped because ${last.stop}.`;
    return `${head}\n${budget}\n${lastText}\n`;
  }

  #ready(): Emulation {
    const why = this.unavailable();
    if (why !== undefined || this.#emulation === undefined) {
      throw new TargetError(why ?? "emulation unavailable", EINVAL);
    }
    return this.#emulation;
  }

  #emuBreakpoints(): EmuBreakpoint[] {
    return this.breakpoints.map((bp) => ({ ...bp }));
  }
}

function key(bp: Breakpoint): string {
  return `${bp.kind}:${bp.address}:${bp.length}`;
}

/** The stop a run ended with, as the session reports it. */
function stopEvent(
  thread: number,
  result: RunResult,
  otherwise: StopReason,
  console?: string,
): StopEvent {
  const stop = result.stop;
  let reason: StopReason = otherwise;
  let signal = SIGTRAP;
  let text = console;
  switch (stop.kind) {
    case "breakpoint":
      reason = { type: stop.breakpoint.kind === "hw" ? "hwbreak" : "swbreak" };
      break;
    case "watch": {
      const type = stop.breakpoint.kind === "read"
        ? "rwatch"
        : stop.breakpoint.kind === "access"
        ? "awatch"
        : "watch";
      reason = { type, address: stop.address };
      break;
    }
    case "refused":
      if (/^interrupted/.test(stop.message)) {
        reason = { type: "interrupt" };
        signal = SIGINT;
      } else {
        reason = { type: "refused", message: stop.message };
        signal = NO_SIGNAL;
        text = `Emulation stopped after ${result.executed} instructions: ${describeStop(result)}\n`;
      }
      break;
  }
  const event: StopEvent = { kind: "stopped", thread, signal, reason };
  if (text !== undefined) event.console = text;
  return event;
}
