/**
 * A small raw RSP client for the benchmark: one TCP connection, no-ack mode as soon as the
 * server accepts it, packets read back whole. It measures what a server can do without a
 * debugger's own costs (gdb's caches, its per-packet bookkeeping) in the way.
 *
 * @module
 */

const enc = new TextEncoder();

function checksum(bytes: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += bytes[i]!;
  return sum & 0xff;
}

/** One reply: its body still escaped and run-length encoded, as it came. */
export interface Reply {
  /** The raw body between `$` and `#`; a view valid until the next receive. */
  body: Uint8Array;
}

export class RspClient {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(1 << 20);
  #start = 0;
  #end = 0;
  #ack = true;
  /** Where the search for the current packet's `#` resumes (bytes before it were seen). */
  #scan = 0;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects; does not send anything (so the caller can time connect → first stop). */
  static async connect(port: number, hostname = "127.0.0.1"): Promise<RspClient> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new RspClient(conn);
  }

  /** Sends one packet with body `body` (ASCII). */
  async send(body: string): Promise<void> {
    const bytes = enc.encode(`$${body}#00`);
    const sum = checksum(bytes, 1, bytes.length - 3).toString(16).padStart(2, "0");
    bytes[bytes.length - 2] = sum.charCodeAt(0);
    bytes[bytes.length - 1] = sum.charCodeAt(1);
    await this.#writeAll(bytes);
  }

  /** Sends the out-of-band interrupt byte. */
  async interrupt(): Promise<void> {
    await this.#writeAll(new Uint8Array([0x03]));
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  async #fill(): Promise<void> {
    if (this.#start > 0 && this.#start === this.#end) this.#start = this.#end = this.#scan = 0;
    if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#scan = Math.max(0, this.#scan - this.#start);
        this.#start = 0;
      } else {
        const grown = new Uint8Array(this.#buf.length * 2);
        grown.set(this.#buf);
        this.#buf = grown;
      }
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#end));
    if (n === null) throw new Error("connection closed by the server");
    this.#end += n;
  }

  /** Reads the next packet (skipping acks); acks it while in ack mode. */
  async receive(): Promise<Reply> {
    for (;;) {
      // Skip anything before '$' (acks).
      while (this.#start < this.#end && this.#buf[this.#start] !== 0x24) this.#start++;
      if (this.#start < this.#end) {
        // '#' inside a body is always escaped, so the first '#' ends the packet.
        const from = Math.max(this.#start + 1, this.#scan);
        const hash = this.#buf.subarray(0, this.#end).indexOf(0x23, from);
        this.#scan = hash >= 0 ? hash : this.#end;
        if (hash >= 0 && hash + 2 < this.#end) {
          // A view, not a copy: valid until the next receive (callers only measure it).
          const body = this.#buf.subarray(this.#start + 1, hash);
          this.#start = hash + 3;
          this.#scan = this.#start;
          if (this.#ack) await this.#writeAll(new Uint8Array([0x2b]));
          return { body };
        }
      }
      await this.#fill();
    }
  }

  /** Sends `body` and returns the reply body as text (latin1). */
  async request(body: string): Promise<string> {
    return latin1(await this.requestRaw(body));
  }

  /**
   * Sends `body` and returns the raw reply body. A stop reply that arrives when none was
   * asked for is skipped: QEMU sends an unsolicited one when a debugger connects to a running
   * VM (it stops the VM on connect and reports that stop).
   */
  async requestRaw(body: string): Promise<Uint8Array> {
    await this.send(body);
    for (;;) {
      const reply = (await this.receive()).body;
      if (body === "?" || !isStopReply(reply)) return reply;
    }
  }

  /** `?` after connecting; then a no-op request so a second stop reply cannot linger. */
  async stopReason(): Promise<string> {
    const reply = await this.request("?");
    await this.request("qC");
    return reply;
  }

  /** The usual opening: qSupported, then no-ack mode if offered. Returns the PacketSize. */
  async handshake(): Promise<number> {
    const supported = await this.request(
      "qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386",
    );
    if (supported.includes("QStartNoAckMode+")) {
      const ok = await this.request("QStartNoAckMode");
      if (ok === "OK") this.#ack = false;
    }
    const size = /PacketSize=([0-9a-fA-F]+)/.exec(supported)?.[1];
    return size === undefined ? 4096 : parseInt(size, 16);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** `Txx…` or `Sxx`: a stop reply (no other reply of the packets used here starts so). */
function isStopReply(body: Uint8Array): boolean {
  const hex = (c: number | undefined) =>
    c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66));
  return (body[0] === 0x54 || body[0] === 0x53) && hex(body[1]) && hex(body[2]);
}

/** Bytes as a one-char-per-byte string. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x4000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x4000));
  }
  return s;
}

/** Number of characters a run-length-encoded body stands for (`X*n` is X and n - 29 more). */
export function expandedLength(body: Uint8Array): number {
  let length = body.length;
  for (let i = body.indexOf(0x2a); i >= 0 && i + 1 < body.length; i = body.indexOf(0x2a, i + 2)) {
    length += body[i + 1]! - 29 - 2;
  }
  return length;
}

/** Number of data bytes in an `x` reply body (after the optional `b`), undoing `}` escapes. */
export function binaryLength(body: Uint8Array, skipPrefix: boolean): number {
  let escapes = 0;
  // Each `}` stands for itself and the escaped byte after it: one data byte from two.
  for (let i = body.indexOf(0x7d, skipPrefix ? 1 : 0); i >= 0; i = body.indexOf(0x7d, i + 2)) {
    escapes++;
  }
  return body.length - (skipPrefix ? 1 : 0) - escapes;
}
