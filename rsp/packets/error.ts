/**
 * Error replies in the three dialects clients accept:
 * - `Enn`: every client; the only form gdb before 15 accepts for most packets;
 * - `E.text`: gdb, where it offered `error-message+`, and for the packets whose error
 *   reply gdb 13 prints whole (see {@link ErrorStyle});
 * - `Enn;hex(text)`: lldb, after it sent QEnableErrorStrings.
 *
 * @module
 */
import { hexInt, textToHex } from "../hex.ts";

/** How this client wants error text, decided from what it said during the handshake. */
export type ErrorStyle = "code" | "dot-text" | "lldb-hex";

/**
 * Formats an error reply. `code` goes in `Enn` (errno style, clamped to a byte). In the
 * `dot-text` dialect the text is kept to printable ASCII without framing characters
 * (see {@link dotText}).
 */
export function formatError(code: number, message: string, style: ErrorStyle): string {
  const nn = hexInt(Math.max(1, Math.min(code, 0xff)), 2);
  switch (style) {
    case "code":
      return `E${nn}`;
    case "lldb-hex":
      return `E${nn};${textToHex(message)}`;
    case "dot-text":
      return `E.${dotText(message)}`;
  }
}

/**
 * `message` as gdb can show it after `E.`: printable ASCII only. gdb undoes neither `}`
 * escapes nor anything else in an error reply and reads `*` as run-length encoding, so the
 * framing characters cannot be sent at all: they are left out ("(#DB)" shows as "(DB)"),
 * never turned into spaces or escapes that gdb would print as they are.
 */
export function dotText(message: string): string {
  return message.replace(/[^\x20-\x7e]/g, " ").replace(/[#$}*]/g, "");
}

/** Error codes used where no TargetError supplies one. */
export const ErrorCode = {
  /** EPERM: the operation is not available on this target. */
  unsupported: 1,
  /** EFAULT: a bad address. */
  fault: 14,
  /** EINVAL: a packet the server could not parse. */
  malformed: 22,
  /** E2BIG: a packet longer than PacketSize. */
  tooBig: 7,
  /** ESRCH: no such thread. */
  noThread: 3,
  /** EIO: anything unexpected. */
  internal: 5,
} as const;
