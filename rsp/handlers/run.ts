/**
 * Run control: continue, step, vCont, stop, breakpoints, detach and kill.
 *
 * @module
 */
import { getLogger } from "../../log/mod.ts";
import type { Context, Outcome } from "../context.ts";
import { ErrorCode } from "../packets/error.ts";
import { parseBreakpoint } from "../packets/breakpoint.ts";
import {
  formatVContActions,
  parseResume,
  parseVCont,
  type ResumeCommand,
} from "../packets/resume.ts";
import { Signal } from "../packets/stop_reply.ts";

const log = getLogger(["bhyve-gdbstub", "rsp"]);

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
  ctx.reply.text(formatVContActions(ctx.target.unsupported("step") === undefined));
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
  if (command.kind === "stop") {
    if (ctx.running) {
      ctx.interrupt(Signal.none);
      return "deferred";
    }
    ctx.reply.text(ctx.stopReply(await ctx.stop(Signal.none)));
    return;
  }
  if (command.kind === "step") {
    await refuseStep(ctx);
    return;
  }
  if (command.address !== undefined) {
    const reason = ctx.target.unsupported("write-register") ??
      "Resuming at another address is not supported";
    ctx.error(ErrorCode.unsupported, reason, { gdbShowsText: true });
    return;
  }
  if (ctx.running) {
    ctx.error(ErrorCode.unsupported, "The target is already running");
    return;
  }
  await ctx.resume();
  return "deferred";
}

/**
 * A step the target cannot do. The reply to a resume is a stop reply, where gdb and lldb both
 * print console output: the reason goes out as `O` text, then a stop reply saying nothing
 * moved. An error reply would not do: lldb takes an error to a resume as a lost connection.
 * The stop reply also carries the reason as lldb's stop description, without which lldb's
 * step plan sees an unchanged pc and steps again, forever.
 */
async function refuseStep(ctx: Context): Promise<void> {
  const reason = ctx.target.unsupported("step") ?? "Single-step is not supported";
  await ctx.console(`${reason}\n`);
  // Report the stop on the thread the client meant to step, so it stays on that thread.
  const { continueThread, lastStop } = ctx.state;
  const thread = continueThread > 0 ? continueThread : ctx.thread();
  ctx.reply.text(
    ctx.stopReply(lastStop.kind === "stopped" ? { ...lastStop, thread } : lastStop, reason),
  );
}

/** `Z`/`z`: refused with the target's reason. */
export function breakpoint(ctx: Context, _args: string, body: string): void {
  if (parseBreakpoint(body) === "malformed") {
    ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
    return;
  }
  const reason = ctx.target.unsupported("breakpoint") ?? "Breakpoints are not supported";
  // gdb 13 and lldb 14 drop the text of this error reply: say it where the user started us too.
  if (body.startsWith("Z")) {
    log.warn("refused a breakpoint ({packet}): {reason}", { packet: body, reason });
  }
  ctx.error(ErrorCode.unsupported, reason, { gdbShowsText: true });
}

/** `D`: detach, leaving the target running as it was before the attach. */
export async function detach(ctx: Context): Promise<Outcome> {
  await ctx.detach();
  ctx.reply.text("OK");
  return "close";
}

/** `k`: a debugger's kill must never destroy the VM, so it detaches too. */
export async function kill(ctx: Context): Promise<Outcome> {
  await ctx.detach();
  return "close-silently";
}
