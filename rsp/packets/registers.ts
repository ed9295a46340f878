/**
 * Register packets: `g` (all of the `g` set), `p n` (one), and the writes `G`/`P`, each with an
 * optional lldb `;thread:N;` suffix.
 *
 * @module
 */
import { fromHex, parseHexInt } from "../hex.ts";
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

export interface WriteOne {
  regnum: number;
  /** Little-endian bytes, as sent. */
  value: Uint8Array;
  thread: ThreadId | undefined;
}

export interface WriteAll {
  /** The `g` layout's bytes; `undefined` where the client sent `xx` (left as they are). */
  bytes: (number | undefined)[];
  thread: ThreadId | undefined;
}

/** Parses what follows `P`: `n=hex` and an optional thread suffix. */
export function parseWriteOne(args: string): WriteOne | "malformed" {
  const split = splitThreadSuffix(args);
  if (split === undefined) return "malformed";
  const equals = split.rest.indexOf("=");
  if (equals < 0) return "malformed";
  const regnum = parseHexInt(split.rest.slice(0, equals));
  const value = fromHex(split.rest.slice(equals + 1));
  if (regnum === undefined || value === undefined || value.length === 0) return "malformed";
  return { regnum, value, thread: split.thread };
}

/** Parses what follows `G`: hex bytes (`xx` for "unchanged") and an optional thread suffix. */
export function parseWriteAll(args: string): WriteAll | "malformed" {
  const split = splitThreadSuffix(args);
  if (split === undefined || split.rest.length % 2 !== 0) return "malformed";
  const bytes: (number | undefined)[] = [];
  for (let i = 0; i < split.rest.length; i += 2) {
    const pair = split.rest.slice(i, i + 2);
    if (pair === "xx") {
      bytes.push(undefined);
      continue;
    }
    const byte = fromHex(pair);
    if (byte === undefined) return "malformed";
    bytes.push(byte[0]);
  }
  return { bytes, thread: split.thread };
}

/** Parses what follows `p`: a hex register number and an optional thread suffix. */
export function parseReadOne(args: string): ReadOne | "malformed" {
  const split = splitThreadSuffix(args);
  if (split === undefined) return "malformed";
  const regnum = parseHexInt(split.rest);
  if (regnum === undefined) return "malformed";
  return { regnum, thread: split.thread };
}
