/**
 * Memory packets: `m addr,length` (hex reply), `x addr,length` (binary reply), and the writes
 * `M addr,length:hex` / `X addr,length:binary`.
 *
 * @module
 */
import { fromHex, fromLatin1, parseHex64 } from "../hex.ts";

/** A read request as sent; `length` may be anything the client typed, up to 2^64-1. */
export interface MemoryRead {
  address: bigint;
  length: bigint;
}

/** Parses the body of `m` or `x` after the letter: `ADDR,LENGTH`. */
export function parseMemoryRead(args: string): MemoryRead | "malformed" {
  const comma = args.indexOf(",");
  if (comma < 0) return "malformed";
  const address = parseHex64(args.slice(0, comma));
  const length = parseHex64(args.slice(comma + 1));
  if (address === undefined || length === undefined) return "malformed";
  return { address, length };
}

/** Parses the header of `M` or `X` after the letter: `ADDR,LENGTH:`. */
export function parseMemoryWrite(args: string): MemoryRead | "malformed" {
  const colon = args.indexOf(":");
  if (colon < 0) return "malformed";
  return parseMemoryRead(args.slice(0, colon));
}

/** A write: where, and the bytes (hex-decoded for `M`, as sent for `X`). */
export interface MemoryWrite {
  address: bigint;
  data: Uint8Array;
}

/**
 * Parses `M addr,length:hex` or `X addr,length:binary` after the letter (the framing has
 * already undone `X`'s escapes). The data must be exactly `length` bytes.
 */
export function parseMemoryWriteData(args: string, binary: boolean): MemoryWrite | "malformed" {
  const header = parseMemoryWrite(args);
  if (header === "malformed") return header;
  const payload = args.slice(args.indexOf(":") + 1);
  const data = binary ? fromLatin1(payload) : fromHex(payload);
  if (data === undefined || BigInt(data.length) !== header.length) return "malformed";
  if (header.address + header.length > ADDRESS_LIMIT) return "malformed";
  return { address: header.address, data };
}

const ADDRESS_LIMIT = 1n << 64n;

/**
 * Clamps a read to what one reply can carry and checks it stays inside the 64-bit space:
 * returns the byte count to read, or "overflow" when address + length wraps past 2^64.
 */
export function clampRead(read: MemoryRead, maxBytes: number): number | "overflow" {
  if (read.address + read.length > ADDRESS_LIMIT) return "overflow";
  return read.length > BigInt(maxBytes) ? maxBytes : Number(read.length);
}
