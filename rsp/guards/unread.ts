/**
 * Noticing a debugger that has stopped reading (a gdb stopped with SIGSTOP or Ctrl-Z mid-dump).
 * Its replies are small enough to fit in the socket buffers, so the server's writes complete and
 * the connection looks merely idle; yet the guest stays held behind a debugger that will never
 * read. The bytes are visible, though: they sit in the receive queue of the debugger's own
 * socket. When the debugger runs on this host (the default: the server listens on localhost),
 * that queue is in /proc/net/tcp (Linux). A reply still unread there after the stall timeout
 * ends the connection, and the session detaches.
 *
 * Where the queue cannot be seen (another host, a system without /proc/net/tcp such as FreeBSD)
 * this watch does nothing; `--max-hold` is the bound there.
 *
 * @module
 */
import type { Connection } from "../session.ts";

/** How often an outstanding reply's queue is looked at (ms). */
const LOOK_EVERY_MS = 1000;

/**
 * Bytes waiting, unread, in the receive queue of the socket at `peer` connected to `local`,
 * when that socket is on this host and the system shows it; otherwise undefined.
 */
export function unreadByPeer(local: Deno.NetAddr, peer: Deno.NetAddr): number | undefined {
  const v6 = peer.hostname.includes(":");
  const file = v6 ? "/proc/net/tcp6" : "/proc/net/tcp";
  const wantLocal = procAddress(peer);
  const wantRemote = procAddress(local);
  if (wantLocal === undefined || wantRemote === undefined) return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== wantLocal || fields[2] !== wantRemote) continue;
    const rx = fields[4]?.split(":")[1];
    return rx === undefined ? undefined : parseInt(rx, 16);
  }
  return undefined;
}

/** An address as /proc/net/tcp writes it: 32-bit words in host (little-endian) order, `:PORT`. */
export function procAddress(addr: Deno.NetAddr): string | undefined {
  const bytes = addr.hostname.includes(":") ? ipv6Bytes(addr.hostname) : ipv4Bytes(addr.hostname);
  if (bytes === undefined) return undefined;
  let hex = "";
  for (let word = 0; word < bytes.length; word += 4) {
    for (let i = 3; i >= 0; i--) hex += bytes[word + i]!.toString(16).padStart(2, "0");
  }
  return `${hex}:${addr.port.toString(16).padStart(4, "0")}`.toUpperCase();
}

function ipv4Bytes(text: string): number[] | undefined {
  const parts = text.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    return undefined;
  }
  return parts;
}

function ipv6Bytes(text: string): number[] | undefined {
  // A dotted IPv4 tail (::ffff:127.0.0.1) is two more groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipv4Bytes(v4[1]!);
    if (b === undefined) return undefined;
    const groups = `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
    text = text.slice(0, -v4[1]!.length) + groups;
  }
  let groups = text.split(":");
  const gap = text.indexOf("::");
  if (gap >= 0) {
    const head = text.slice(0, gap).split(":").filter((g) => g !== "");
    const tail = text.slice(gap + 2).split(":").filter((g) => g !== "");
    groups = [...head, ...Array(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail];
  }
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  return groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]);
}

/**
 * A connection that drops itself when a reply it wrote stays unread in the debugger's socket
 * for `stallMs` (see the module's note). Reads and writes pass through.
 */
export class UnreadWatch implements Connection {
  readonly #conn: Connection;
  readonly #look: () => number | undefined;
  readonly #stallMs: number;
  readonly #onStall: () => void;
  /** When the oldest reply not yet known to be read was written; undefined when none is. */
  #since: number | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    conn: Connection,
    look: () => number | undefined,
    stallMs: number,
    onStall: () => void,
  ) {
    this.#conn = conn;
    this.#look = look;
    this.#stallMs = stallMs;
    this.#onStall = onStall;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const n = await this.#conn.read(buffer);
    // The debugger sent something, so it is running; what it has not read yet it will.
    if (n !== null && n > 0) this.#settled();
    return n;
  }

  async write(data: Uint8Array): Promise<number> {
    const n = await this.#conn.write(data);
    if (this.#since === undefined) {
      this.#since = performance.now();
      this.#timer ??= setInterval(() => this.#check(), LOOK_EVERY_MS);
    }
    return n;
  }

  close(): void {
    this.#settled();
    this.#conn.close();
  }

  #check(): void {
    if (this.#since === undefined) return;
    const unread = this.#look();
    if (unread === undefined || unread === 0) return this.#settled(); // read, or not visible
    if (performance.now() - this.#since >= this.#stallMs) {
      this.#settled();
      this.#onStall();
    }
  }

  #settled(): void {
    this.#since = undefined;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
