/**
 * Register packets: `g` (all of the `g` set), `p n` (one), and the writes `G`/`P`, each with an
 * optional lldb `;thread:N;` suffix.
 *
 * @module
 */
import { parseHexInt } from "../hex.ts";
import { splitThreadSuffix, type ThreadId } from "./thread_id.ts";

export interface ReadAll {
  thread: ThreadId | undefined;
}

export interface ReadOne {
  regnum: number;
  thread: ThreadId | undefined;
}

/** Parses what follows `g`: nothing, or a thread suffix. */
export function parseReadAll(args: string): ReadAll | "malformed" {
  const split = splitThreadSuffix(args);
  if (split === undefined || split.rest !== "") return "malformed";
  return { thread: split.thread };
}

/** Parses what follows `p`: a hex register number and an optional thread suffix. */
export function parseReadOne(args: string): ReadOne | "malformed" {
  const split = splitThreadSuffix(args);
  if (split === undefined) return "malformed";
  const regnum = parseHexInt(split.rest);
  if (regnum === undefined) return "malformed";
  return { regnum, thread: split.thread };
}
