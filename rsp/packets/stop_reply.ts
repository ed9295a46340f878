/**
 * Stop replies: `T` with the thread for a stop, `W`/`X` for a vanished target.
 * See https://sourceware.org/gdb/current/onlinedocs/gdb.html/Stop-Reply-Packets.html
 *
 * @module
 */
import type { StopEvent } from "../target.ts";
import { hexInt, textToHex } from "../hex.ts";

/** Signal numbers as gdb numbers them on the wire. */
export const Signal = {
  none: 0,
  interrupt: 2, // SIGINT: the reply to Ctrl-C
  trap: 5, // SIGTRAP: the usual "stopped" for attach
} as const;

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

/** Formats a stop reply for `event`. */
export function formatStopReply(event: StopEvent, options: StopReplyOptions = {}): string {
  if (event.kind === "exited") return `W${hexInt(event.status & 0xff, 2)}`;
  let reply = `T${hexInt(event.signal & 0xff, 2)}thread:${hexInt(event.thread)};`;
  if (options.threads !== undefined) {
    reply += `threads:${options.threads.map((id) => hexInt(id)).join(",")};`;
  }
  if (options.name !== undefined) reply += `hexname:${textToHex(options.name)};`;
  if (options.description !== undefined) {
    reply += `reason:exception;description:${textToHex(options.description)};`;
  }
  return reply;
}
