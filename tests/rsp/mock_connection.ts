/**
 * An in-memory Connection for session tests: the test pushes what the debugger sends and
 * reads back, packet by packet, what the session wrote.
 *
 * @module
 */
import { type FrameEvent, framePacket, PacketDecoder } from "../../rsp/framing.ts";
import { latin1 } from "../../rsp/hex.ts";
import type { Connection } from "../../rsp/session.ts";

export class MockConnection implements Connection {
  readonly #incoming: Uint8Array[] = [];
  #readWaiter: (() => void) | undefined;
  #closed = false;
  #ended = false;
  /** Every write, in order, as the session made them. */
  readonly writes: Uint8Array[] = [];
  readonly #decoder = new PacketDecoder(1 << 22);
  readonly #events: FrameEvent[] = [];
  #eventWaiter: (() => void) | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues raw bytes (or latin1 text) from the debugger. */
  push(data: Uint8Array | string): void {
    this.#incoming.push(
      typeof data === "string" ? Uint8Array.from(data, (c) => c.charCodeAt(0)) : data,
    );
    this.#readWaiter?.();
  }

  /** Queues one framed packet from the debugger. */
  send(body: string): void {
    this.push(framePacket(body));
  }

  /** The debugger hangs up. */
  end(): void {
    this.#ended = true;
    this.#readWaiter?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#incoming.length === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("closed");
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#readWaiter = resolve);
      this.#readWaiter = undefined;
    }
    const chunk = this.#incoming[0]!;
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#incoming.shift();
    else this.#incoming[0] = chunk.subarray(n);
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    const copy = data.slice();
    this.writes.push(copy);
    this.#events.push(...this.#decoder.feed(copy));
    this.#eventWaiter?.();
    return Promise.resolve(data.length);
  }

  close(): void {
    this.#closed = true;
    this.#readWaiter?.();
  }

  /** Everything written so far, as latin1 text. */
  get output(): string {
    return this.writes.map(latin1).join("");
  }

  /** The next event the session wrote (ack, packet...), waiting up to `ms`. */
  async nextEvent(ms = 2000): Promise<FrameEvent> {
    const deadline = Date.now() + ms;
    while (this.#events.length === 0) {
      if (Date.now() > deadline) throw new Error("timed out waiting for the session to write");
      await new Promise<void>((resolve) => {
        this.#eventWaiter = resolve;
        setTimeout(resolve, 20);
      });
      this.#eventWaiter = undefined;
    }
    return this.#events.shift()!;
  }

  /** The body of the next packet the session wrote, skipping acks. */
  async reply(ms = 2000): Promise<string> {
    for (;;) {
      const event = await this.nextEvent(ms);
      if (event.kind === "packet") {
        if (!event.checksumOk) throw new Error("the session wrote a bad checksum");
        return latin1(event.body);
      }
    }
  }

  /** Sends a packet and returns the body of the next packet written. */
  async ask(body: string): Promise<string> {
    this.send(body);
    return await this.reply();
  }

  /** Whether nothing more has been written (no pending events). */
  get idle(): boolean {
    return this.#events.length === 0;
  }
}
