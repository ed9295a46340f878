/**
 * Hex and binary helpers for the remote protocol's text encodings, written for the memory-read
 * hot path: table lookups into preallocated buffers, never per-byte string concatenation.
 *
 * @module
 */

const DIGITS = "0123456789abcdef";

/** ASCII code of the high and low hex digit of each byte value. */
const HIGH = new Uint8Array(256);
const LOW = new Uint8Array(256);
/** Value of each ASCII hex digit, or 0xff for anything else. */
const VALUE = new Uint8Array(256).fill(0xff);

for (let b = 0; b < 256; b++) {
  HIGH[b] = DIGITS.charCodeAt(b >> 4);
  LOW[b] = DIGITS.charCodeAt(b & 15);
}
/** Both digits of each byte as one little-endian 16-bit store, and their checksum. */
const PAIR = new Uint16Array(256);
const PAIR_SUM = new Uint16Array(256);
for (let b = 0; b < 256; b++) {
  PAIR[b] = HIGH[b]! | (LOW[b]! << 8);
  PAIR_SUM[b] = HIGH[b]! + LOW[b]!;
}
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

for (let d = 0; d < 16; d++) {
  VALUE[DIGITS.charCodeAt(d)] = d;
  VALUE[DIGITS.toUpperCase().charCodeAt(d)] = d;
}

/**
 * Writes `bytes` as lowercase hex into `out` at `offset` and returns the sum of the written
 * ASCII codes (for the packet checksum), so the caller never walks the output twice.
 *
 * @example
 * ```ts
 * const out = new Uint8Array(4);
 * encodeHexInto(new Uint8Array([0xab, 0x01]), out, 0); // out is "ab01"
 * ```
 */
export function encodeHexInto(bytes: Uint8Array, out: Uint8Array, offset: number): number {
  const at = out.byteOffset + offset;
  if (LITTLE_ENDIAN && at % 2 === 0) {
    // Two digits per store: twice as fast as byte stores on the memory-read hot path.
    const pairs = new Uint16Array(out.buffer, at, bytes.length);
    let sum = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      pairs[i] = PAIR[b]!;
      sum += PAIR_SUM[b]!;
    }
    return sum;
  }
  let sum = 0;
  let o = offset;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const h = HIGH[b]!;
    const l = LOW[b]!;
    out[o] = h;
    out[o + 1] = l;
    o += 2;
    sum += h + l;
  }
  return sum;
}

/** Lowercase hex of `bytes`, for short replies. */
export function toHex(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length * 2);
  encodeHexInto(bytes, out, 0);
  return latin1(out);
}

/** Hex of a text's UTF-8 bytes (qRcmd output, qThreadExtraInfo, lldb error strings). */
export function textToHex(text: string): string {
  return toHex(new TextEncoder().encode(text));
}

/** Decodes an even-length hex string into bytes; undefined if it is not hex. */
export function fromHex(hex: string): Uint8Array | undefined {
  if (hex.length % 2 !== 0) return undefined;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hc = hex.charCodeAt(2 * i);
    const lc = hex.charCodeAt(2 * i + 1);
    const h = hc < 256 ? VALUE[hc]! : 0xff;
    const l = lc < 256 ? VALUE[lc]! : 0xff;
    if (h === 0xff || l === 0xff) return undefined;
    out[i] = (h << 4) | l;
  }
  return out;
}

/** Decodes hex of UTF-8 text (the qRcmd argument); undefined if it is not hex. */
export function hexToText(hex: string): string | undefined {
  const bytes = fromHex(hex);
  return bytes && new TextDecoder().decode(bytes);
}

const HEX_NUMBER = /^[0-9a-fA-F]{1,16}$/;

/**
 * Parses a big-endian hex number of at most 64 bits (an address or a length on the wire);
 * undefined for anything else, so a 65-bit address is malformed rather than truncated.
 */
export function parseHex64(text: string): bigint | undefined {
  if (!HEX_NUMBER.test(text)) return undefined;
  return BigInt("0x" + text);
}

/** Parses a small hex number (register numbers, thread ids, signals); undefined if invalid. */
export function parseHexInt(text: string): number | undefined {
  if (!/^[0-9a-fA-F]{1,8}$/.test(text)) return undefined;
  return parseInt(text, 16);
}

/** Lowercase hex of a non-negative integer, as thread ids and signals travel. */
export function hexInt(value: number | bigint, width = 1): string {
  return value.toString(16).padStart(width, "0");
}

/**
 * Bytes as a string with one char per byte (latin1), the form packet bodies are parsed in.
 * TextDecoder("latin1") is windows-1252 and would remap 0x80-0x9f, so decode by hand.
 */
export function latin1(bytes: Uint8Array): string {
  const CHUNK = 0x4000;
  if (bytes.length <= CHUNK) return String.fromCharCode(...bytes);
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i += CHUNK) {
    parts.push(String.fromCharCode(...bytes.subarray(i, i + CHUNK)));
  }
  return parts.join("");
}

/** The inverse of {@link latin1}: each char's low byte. */
export function fromLatin1(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}
