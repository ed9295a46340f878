/**
 * The reply to a packet once the target has vanished (the VM was destroyed), in the form that
 * packet's reply allows, so the client shows words where it can and never misreads them:
 * - a packet answered by a stop reply (`?`, `c`, `s`, `vCont;…`): the reason as console output,
 *   then `W00`: gdb prints the text and "[Inferior 1 (process 1) exited normally]";
 * - a packet whose reply is data (`g`, `p`, `m`, `x`, `qXfer`): `E05`, or lldb's `E05;hex`
 *   after QEnableErrorStrings. gdb 13 reads the text of `E.text` here as hex digits
 *   ("Invalid hex digit 46") and shows "Cannot access memory" for `E05`;
 * - `monitor` (`qRcmd`): the reason as the command's output, then `OK`;
 * - `D`: `OK`; `k`: `W00` (lldb's `process kill` waits for an exit); the session ends;
 * - anything else: `E05`, with the text only where the client asked for error strings.
 *
 * @module
 */
import { type ErrorStyle, formatError } from "../packets/error.ts";

/** EIO: the code of every reply about a vanished target. */
const EIO = 5;

export interface GoneReply {
  /** Console output to send first (`O` packets), if any. */
  console?: string;
  /** The reply packet's body. */
  reply: string;
  /** Whether the session ends after it (the client was told the target exited). */
  close: boolean;
}

const STOP_REPLY_PACKET = /^(\?$|[cCsS]|vCont;|vAttach;|vRun)/;
const DATA_PACKET = /^([gpmx]|qXfer:)/;

/** What to answer `body` with, the target being gone for `reason`. */
export function goneReply(body: string, reason: string, style: ErrorStyle): GoneReply {
  if (body.startsWith("D")) return { reply: "OK", close: true };
  if (body === "k") return { reply: "W00", close: true }; // lldb waits for the exit
  if (STOP_REPLY_PACKET.test(body)) return { console: `${reason}\n`, reply: "W00", close: true };
  // A monitor command's output is shown as it comes: the reason is that output.
  if (body.startsWith("qRcmd,")) return { console: `${reason}\n`, reply: "OK", close: false };
  const allowed: ErrorStyle = style === "dot-text" && DATA_PACKET.test(body) ? "code" : style;
  return { reply: formatError(EIO, reason, allowed), close: false };
}
