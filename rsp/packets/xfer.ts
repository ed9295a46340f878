/**
 * `qXfer:object:read:annex:offset,length`, and the `m`/`l` framing of its replies.
 *
 * @module
 */
import { parseHex64 } from "../hex.ts";

export interface XferRead {
  object: string;
  annex: string;
  offset: bigint;
  length: bigint;
}

/** Parses what follows `qXfer:`. Writes and anything but `read` are "malformed" here. */
export function parseXferRead(args: string): XferRead | "malformed" {
  const parts = args.split(":");
  if (parts.length !== 4 || parts[1] !== "read") return "malformed";
  const [object = "", , annex = "", range = ""] = parts;
  const comma = range.indexOf(",");
  if (comma < 0) return "malformed";
  const offset = parseHex64(range.slice(0, comma));
  const length = parseHex64(range.slice(comma + 1));
  if (offset === undefined || length === undefined) return "malformed";
  return { object, annex, offset, length };
}

/**
 * The slice of `data` a read asks for, and whether more follows (`m`) or it is the last (`l`).
 * `maxBytes` is what one reply can carry after escaping in the worst case.
 */
export function xferSlice(
  data: Uint8Array,
  read: XferRead,
  maxBytes: number,
): { prefix: "m" | "l"; chunk: Uint8Array } {
  const start = read.offset > BigInt(data.length) ? data.length : Number(read.offset);
  const wanted = read.length > BigInt(maxBytes) ? maxBytes : Number(read.length);
  const end = Math.min(data.length, start + wanted);
  return { prefix: end < data.length ? "m" : "l", chunk: data.subarray(start, end) };
}
