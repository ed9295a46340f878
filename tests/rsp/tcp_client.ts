/**
 * A raw RSP client over TCP for server tests: sends framed packets and reads framed replies.
 *
 * @module
 */
import { type FrameEvent, framePacket, PacketDecoder } from "../../rsp/framing.ts";
import { latin1 } from "../../rsp/hex.ts";

export class RawClient {
  readonly #conn: Deno.TcpConn;
  readonly #decoder = new PacketDecoder(1 << 22);
  readonly #events: FrameEvent[] = [];
  #eof = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname, port }));
  }

  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? Uint8Array.from(data, (c) => c.charCodeAt(0)) : data;
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }

  send(body: string): Promise<void> {
    return this.write(framePacket(body));
  }

  /** The next packet body, or undefined once the server closed the connection. */
  async reply(): Promise<string | undefined> {
    const buffer = new Uint8Array(0x10000);
    for (;;) {
      const event = this.#events.shift();
      if (event?.kind === "packet") return latin1(event.body);
      if (event !== undefined) continue;
      if (this.#eof) return undefined;
      const n = await this.#conn.read(buffer).catch(() => null);
      if (n === null) this.#eof = true;
      else this.#events.push(...this.#decoder.feed(buffer.subarray(0, n)));
    }
  }

  async ask(body: string): Promise<string | undefined> {
    await this.send(body);
    return await this.reply();
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}
