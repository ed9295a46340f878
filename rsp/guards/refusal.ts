/**
 * Turning a debugger away in words its client shows, before the connection closes.
 *
 * What gdb 13 and lldb 14 actually print (checked with both):
 * - gdb's first packet is `qSupported`; an `E.text` reply to it prints
 *   "Remote failure reply: E.text", and gdb gives up the connection.
 * - lldb's first packet is `QStartNoAckMode`. An error reply to any of its handshake packets,
 *   a `W`/`X` exit or a connection closed early all end in lldb's own "Process 1 was reported
 *   after connecting …, but no stop reply packet was received" (or nothing at all). What it does
 *   show is a stop reply's `description` field: "stop reason = text". So lldb gets a short,
 *   read-only conversation that touches no target: its handshake answered, `?` answered with a
 *   stop whose description is the reason, registers and memory refused, and the connection
 *   closed when lldb leaves or falls silent.
 *
 * @module
 */
import { PacketDecoder, PacketWriter } from "../framing.ts";
import { latin1, textToHex } from "../hex.ts";
import { formatError } from "../packets/error.ts";
import type { Connection } from "../session.ts";

/** How a refused client is answered. */
export interface RefusalOptions {
  packetSize: number;
  /** Silence that ends the conversation (default 2000). */
  idleMs?: number;
}

/** Most packets a refused client is answered, and longest it is kept (ms), before it is closed. */
const MAX_PACKETS = 200;
const MAX_CONVERSATION_MS = 15_000;

/** Whether `error` is a connection going away (reset, broken pipe…): routine, not a fault. */
export function isConnectionError(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}

/** The `E.text` packet that tells a client why before it is closed. */
export function refusalPacket(message: string): Uint8Array {
  return new PacketWriter(message.length + 8).begin()
    .text(formatError(1, message, "dot-text")).finish(false).slice();
}

/** The reply to one packet of a refused client, or undefined to end the conversation. */
function answer(body: string, message: string, first: boolean): string | undefined {
  if (first && body.startsWith("qSupported")) return undefined; // gdb: E.text, then close
  if (body === "QStartNoAckMode") return "OK";
  if (body.startsWith("qSupported")) return "PacketSize=1000";
  if (body === "?") return `T00thread:1;description:${textToHex(message)};`;
  if (body === "qfThreadInfo") return "m1";
  if (body === "qsThreadInfo") return "l";
  if (body === "qC") return "QC1";
  if (body === "k" || body.startsWith("D")) return "OK";
  if (/^[gpmxGPMXZz]/.test(body)) return "E01";
  return "";
}

/**
 * Tells a client why it cannot attach (see the module's note) and closes the connection. Never
 * throws; resolves once the connection is closed.
 */
export async function refuse(
  conn: Connection,
  message: string,
  options: RefusalOptions,
): Promise<void> {
  const decoder = new PacketDecoder(options.packetSize);
  const buffer = new Uint8Array(4096);
  const writer = new PacketWriter(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const quiet = () => {
    clearTimeout(timer);
    timer = setTimeout(() => closeQuietly(conn), options.idleMs ?? 2000);
  };
  let ack = true;
  let answered = 0;
  const bound = setTimeout(() => closeQuietly(conn), MAX_CONVERSATION_MS);
  try {
    quiet();
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      quiet();
      for (const event of decoder.feed(buffer.subarray(0, n))) {
        if (event.kind !== "packet") continue;
        const body = latin1(event.body);
        const reply = answer(body, message, answered === 0);
        answered++;
        if (reply === undefined) {
          await writeAll(conn, Uint8Array.of(0x2b, ...refusalPacket(message)));
          return;
        }
        await writeAll(conn, writer.begin().text(reply).finish(ack));
        if (body === "QStartNoAckMode") ack = false;
        if (body === "k" || body.startsWith("D") || answered >= MAX_PACKETS) return;
      }
    }
  } catch {
    // the refused client went away first
  } finally {
    clearTimeout(timer);
    clearTimeout(bound);
    closeQuietly(conn);
  }
}

/** Writes `message` as an `E.text` packet (best effort, never blocking long), then closes. */
export async function tellAndClose(conn: Connection, message: string): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), 1000);
  try {
    await writeAll(conn, refusalPacket(message));
  } catch {
    // gone already
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

async function writeAll(conn: Connection, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

export function closeQuietly(conn: Connection | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}
