/**
 * Run control: continue, step, vCont, stop, breakpoints, detach and kill.
 *
 * Every resume either runs what was asked or is answered at once with a stop that says why
 * not (see {@link refuse}), so the client is back at its prompt with the guest held.
 *
 * @module
 */
import type { Context, Outcome } from "../context.ts";
import { dotText, ErrorCode } from "../packets/error.ts";
import { describeBreakpoint, parseBreakpoint } from "../packets/breakpoint.ts";
import {
  formatVContActions,
  parseResume,
  parseVCont,
  type ResumeCommand,
} from "../packets/resume.ts";
import { Signal } from "../packets/stop_reply.ts";
import { type StopEvent, TargetError } from "../target.ts";

/** `c`, `C`, `s`, `S`. */
export function resumeLetter(ctx: Context, _args: string, body: string): Promise<Outcome> {
  return resume(ctx, parseResume(body), body);
}

/** `vCont;action...`. */
export function vCont(ctx: Context, _args: string, body: string): Promise<Outcome> {
  return resume(ctx, parseVCont(body.slice("vCont".length)), body);
}

/** `vCont?`: only what works. */
export function vContQuery(ctx: Context): void {
  ctx.reply.text(formatVContActions(canStep(ctx), ctx.target.rangeStepping === true));
}

function canStep(ctx: Context): boolean {
  return ctx.target.step !== undefined && ctx.target.unsupported("step") === undefined;
}

async function resume(
  ctx: Context,
  command: ResumeCommand | "malformed",
  body: string,
): Promise<Outcome> {
  if (command === "malformed") {
    ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
    return;
  }
  if (ctx.running) {
    if (command.kind === "stop") {
      ctx.interrupt(Signal.none);
      return "deferred";
    }
    // Protocol misuse (all-stop: nothing may be resumed before the stop reply). An error
    // changes nothing: the guest runs on and its stop reply still comes.
    ctx.error(ErrorCode.unsupported, "The target is already running: interrupt it first");
    return;
  }
  if (command.kind === "stop") {
    ctx.reply.text(ctx.stopReply(await ctx.stop(Signal.none)));
    return;
  }
  const thread = command.kind === "step"
    ? (command.thread ?? ctx.thread(ctx.state.continueThread))
    : (command.threads?.[0] ?? ctx.thread(ctx.state.continueThread));
  // Every thread named must exist, before anything runs or any stop names it.
  const known = new Set(ctx.target.threads().map((t) => t.id));
  const unknown = [thread, ...(command.kind === "continue" ? command.threads ?? [] : [])]
    .find((t) => !known.has(t));
  if (unknown !== undefined) {
    ctx.error(ErrorCode.noThread, `Thread ${unknown} does not exist`);
    return;
  }
  if (ctx.takeInterrupt()) {
    // The Ctrl-C that crossed the last stop reply: this resume is its answer.
    const event: StopEvent = {
      kind: "stopped",
      thread,
      signal: Signal.interrupt,
      reason: { type: "interrupt" },
    };
    ctx.noteStop(event);
    ctx.reply.text(ctx.stopReply(event));
    return;
  }
  if (command.signal !== undefined) {
    return await refuse(
      ctx,
      `bhyve-gdbstub cannot deliver signal ${command.signal} to a VM (a VM has no signals): ` +
        "nothing was resumed. Use continue (or signal 0) to resume without one.",
      thread,
    );
  }
  if (command.address !== undefined) {
    const moved = moveTo(ctx, thread, command.address);
    if (moved !== undefined) return await refuse(ctx, moved, thread);
  }
  if (command.kind === "step") {
    if (!canStep(ctx)) {
      return await refuse(
        ctx,
        ctx.target.unsupported("step") ?? "Single-step is not supported",
        thread,
      );
    }
    ctx.step(thread, command.range);
    return "deferred";
  }
  if (ctx.state.unarmed.size > 0) {
    if (!ctx.state.ignoreUnarmed) return await refuse(ctx, unarmedReason(ctx), thread);
    await ctx.console(`Running past ${namedUnarmed(ctx)} (monitor breakpoints ignore).\n`);
  }
  try {
    await ctx.resume(command.threads);
  } catch (error) {
    // e.g. the one thread to run is a vCPU bhyve holds: nothing ran, say why.
    if (error instanceof TargetError) return await refuse(ctx, error.message, thread);
    throw error;
  }
  return "deferred";
}

/**
 * The answer to a resume that cannot be carried out: the reason as console output (`O`
 * packets, which gdb and lldb print while they wait for a stop), then a stop with no signal
 * on the thread the client meant. gdb shows "Thread N stopped." and, unlike after a SIGTRAP
 * at an unchanged pc, does not step again; lldb shows the reason as the stop description,
 * which ends its step plans. An error reply would not do: lldb takes an error to a resume as a
 * lost connection. The stop becomes the current one, so `?` says the same.
 */
async function refuse(ctx: Context, message: string, thread: number): Promise<Outcome> {
  await ctx.console(`${message}\n`);
  const event: StopEvent = {
    kind: "stopped",
    thread,
    signal: Signal.none,
    reason: { type: "refused", message },
  };
  ctx.noteStop(event);
  ctx.reply.text(ctx.stopReply(event));
  return undefined;
}

/** `c ADDR` / `s ADDR`: sets the pc first; returns why not, if it cannot. */
function moveTo(ctx: Context, thread: number, address: bigint): string | undefined {
  const reason = ctx.target.unsupported("write-register");
  const rip = [...ctx.registers.values()].find((r) => r.name === "rip");
  if (reason !== undefined || ctx.target.writeRegister === undefined || rip === undefined) {
    return `Cannot resume at 0x${address.toString(16)}: ${reason ?? "registers are read-only"}`;
  }
  const value = new Uint8Array(8);
  new DataView(value.buffer).setBigUint64(0, address, true);
  ctx.target.writeRegister(thread, rip.regnum, value);
}

/** The unarmed breakpoints in words: "the breakpoint at 0x… and the write watchpoint …". */
function namedUnarmed(ctx: Context): string {
  const list = [...ctx.state.unarmed.values()].map((u) => describeBreakpoint(u.breakpoint));
  const shown = list.length > 3 ? [...list.slice(0, 3), `${list.length - 3} more`] : list;
  return shown.length === 1 ? shown[0]! : `${shown.slice(0, -1).join(", ")} and ${shown.at(-1)}`;
}

function unarmedReason(ctx: Context): string {
  const reasons = new Set([...ctx.state.unarmed.values()].map((u) => u.reason));
  const why = [...reasons].map((r) => (r.endsWith(".") ? r : `${r}.`)).join(" ");
  // lldb keeps a refused step-out's plan, and re-inserts its breakpoint at every continue.
  const lldb = ctx.state.gdbClient ? "" : " A refused 'thread step-out' stays pending until " +
    "'thread plan discard 1'.";
  return `Cannot continue: the VM would run past ${namedUnarmed(ctx)}, which cannot be set. ` +
    `${why} The VM stays stopped: delete or disable them to continue (or 'monitor ` +
    `breakpoints ignore' to run past them).${lldb}`;
}

/**
 * `monitor breakpoints [ignore|refuse]`: whether a continue runs past breakpoints the target
 * cannot set (see {@link SessionState.ignoreUnarmed}); answered by the session, not the target.
 * Returns the console text, or undefined when `command` is not this one.
 */
export function breakpointsMonitor(ctx: Context, command: string): string | undefined {
  const [name, mode, extra] = command.trim().split(/\s+/);
  if (name !== "breakpoints") return undefined;
  if (extra !== undefined || (mode !== undefined && mode !== "ignore" && mode !== "refuse")) {
    return "Usage: monitor breakpoints [ignore|refuse]\n";
  }
  if (mode !== undefined) ctx.state.ignoreUnarmed = mode === "ignore";
  const set = ctx.state.unarmed.size === 0 ? "none set" : `set now: ${namedUnarmed(ctx)}`;
  return `Breakpoints the VM cannot honour (${set}): a continue ${
    ctx.state.ignoreUnarmed ? "runs past them" : "is refused while any is set"
  }.\n`;
}

/**
 * `Z`/`z`: through the target where it can honour them. Otherwise (no breakpoints at all, or
 * the target refused this one with a TargetError) the insert is accepted but remembered as
 * unarmed, with the reason, and the next continue is refused in words (see
 * {@link SessionState.unarmed}): an error reply's text never reaches the user, and an empty
 * reply would make gdb fall back to writing int3 into guest memory.
 */
export function breakpoint(ctx: Context, _args: string, body: string): void {
  const parsed = parseBreakpoint(body);
  if (parsed === "malformed") {
    ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
    return;
  }
  const { target, state } = ctx;
  const key = body.slice(1).split(";")[0]!;
  const missing = target.insertBreakpoint === undefined || target.removeBreakpoint === undefined
    ? (target.unsupported("breakpoint") ?? "Breakpoints are not supported")
    : target.unsupported("breakpoint");
  const { breakpoint } = parsed;
  if (!parsed.insert) {
    // One that never got in is only forgotten.
    if (!state.unarmed.delete(key) && missing === undefined) target.removeBreakpoint!(breakpoint);
  } else if (missing !== undefined) {
    state.unarmed.set(key, { breakpoint, reason: missing });
  } else {
    try {
      target.insertBreakpoint!(breakpoint);
    } catch (error) {
      if (!(error instanceof TargetError)) throw error;
      state.unarmed.set(key, { breakpoint, reason: error.message });
    }
  }
  ctx.reply.text("OK");
}

/** `D`: detach, leaving the target running as it was before the attach. */
export async function detach(ctx: Context): Promise<Outcome> {
  await ctx.detach();
  ctx.reply.text("OK");
  return "close";
}

/**
 * `k`: a debugger's kill must never destroy the VM, so it detaches instead, and says so in the
 * one reply form lldb prints whole ("got unexpected response to k packet: E.…"); gdb reads no
 * reply to `k` (it prints "killed" whatever the server does).
 */
export async function kill(ctx: Context): Promise<Outcome> {
  await ctx.detach();
  ctx.reply.text(`E.${dotText(KILL_REFUSED)}`);
  return "close";
}

/** What a kill does here, in words. */
export const KILL_REFUSED = "bhyve-gdbstub never kills a VM: it detached instead, and the VM " +
  "runs on as it did before the attach";
