/**
 * Stop replies: `T` with the thread for a stop, `W`/`X` for a vanished target.
 * See https://sourceware.org/gdb/current/onlinedocs/gdb.html/Stop-Reply-Packets.html
 *
 * @module
 */
import type { StopEvent, StopReason } from "../target.ts";
import { hexInt, textToHex } from "../hex.ts";

/** Signal numbers as gdb numbers them on the wire. */
export const Signal = {
  /**
   * No signal: "Thread N stopped." in gdb. The stop for something refused: unlike SIGTRAP it
   * ends gdb's stepping (a SIGTRAP at the same pc makes `next` step again, forever), and unlike
   * SIGINT it does not claim an interrupt; `continue` then passes no signal.
   */
  none: 0,
  interrupt: 2, // SIGINT: the reply to Ctrl-C
  trap: 5, // SIGTRAP: attach, a step, a breakpoint or watchpoint hit
} as const;

/** The signal a stop reports, from what happened. */
export function signalOf(reason: StopReason): number {
  switch (reason.type) {
    case "interrupt":
      return Signal.interrupt;
    case "refused":
      return Signal.none;
    default:
      return Signal.trap;
  }
}

export interface StopReplyOptions {
  /** Every thread id, appended as `threads:` for lldb's QListThreadsInStopReply. */
  threads?: readonly number[];
  /**
   * Why nothing moved, for lldb: `reason:exception;description:hex;` makes lldb end a step
   * plan and show the text as the stop reason (gdb skips keys it does not know).
   */
  description?: string;
  /** The thread's name for lldb (`hexname:`), which `thread list` shows; gdb skips the key. */
  name?: string;
}

/** The stop reason's own fields: what gdb and lldb read to tell a breakpoint from a step. */
function reasonFields(reason: StopReason | undefined): string {
  switch (reason?.type) {
    case "swbreak":
      return "swbreak:;";
    case "hwbreak":
      return "hwbreak:;";
    case "watch":
    case "rwatch":
    case "awatch":
      return `${reason.type}:${reason.address.toString(16)};`;
    default:
      return "";
  }
}

/** Formats a stop reply for `event`. */
export function formatStopReply(event: StopEvent, options: StopReplyOptions = {}): string {
  if (event.kind === "exited") return `W${hexInt(event.status & 0xff, 2)}`;
  let reply = `T${hexInt(event.signal & 0xff, 2)}thread:${hexInt(event.thread)};`;
  reply += reasonFields(event.reason);
  if (options.threads !== undefined) {
    reply += `threads:${options.threads.map((id) => hexInt(id)).join(",")};`;
  }
  if (options.name !== undefined) reply += `hexname:${textToHex(options.name)};`;
  const description = options.description ??
    (event.reason?.type === "refused" ? event.reason.message : undefined);
  if (description !== undefined) {
    reply += `reason:exception;description:${textToHex(description)};`;
  }
  return reply;
}
