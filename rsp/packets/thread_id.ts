/**
 * Thread ids on the wire: hex ids, `0` for "any thread", `-1` for "all threads", and the
 * `pPID.TID` form of the multiprocess extension (the pid is ignored: one process here).
 * Also lldb's `;thread:TID;` suffix on register packets (QThreadSuffixSupported).
 *
 * @module
 */
import { parseHexInt } from "../hex.ts";

/** A thread selector: a thread id (1 or more), 0 for any, -1 for all. */
export type ThreadId = number;

export const ANY_THREAD = 0;
export const ALL_THREADS = -1;

/** Parses a thread id; undefined when malformed. */
export function parseThreadId(text: string): ThreadId | undefined {
  let tid = text;
  if (tid.startsWith("p")) {
    const dot = tid.indexOf(".");
    if (dot < 0) return ALL_THREADS; // `pPID` alone means every thread of that process
    tid = tid.slice(dot + 1);
  }
  if (tid === "-1") return ALL_THREADS;
  return parseHexInt(tid);
}

/**
 * Splits lldb's `;thread:TID;` suffix off a packet body. Returns the rest and the thread
 * (undefined when there is no suffix); undefined as a whole when the suffix is malformed.
 */
export function splitThreadSuffix(
  body: string,
): { rest: string; thread: ThreadId | undefined } | undefined {
  const at = body.indexOf(";thread:");
  if (at < 0) return { rest: body, thread: undefined };
  let tid = body.slice(at + ";thread:".length);
  if (tid.endsWith(";")) tid = tid.slice(0, -1);
  const thread = parseThreadId(tid);
  if (thread === undefined) return undefined;
  return { rest: body.slice(0, at), thread };
}
