/**
 * The byte layer of the remote protocol: `$body#cs` framing, `}` escapes, run-length decoding,
 * acknowledgements and the out-of-band interrupt byte.
 *
 * See https://sourceware.org/gdb/current/onlinedocs/gdb.html/Overview.html
 *
 * @module
 */
import { encodeHexInto } from "./hex.ts";

/** Protocol bytes, see the GDB manual's "Overview" of the remote protocol. */
export const Byte = {
  start: 0x24, // $
  end: 0x23, // #
  escape: 0x7d, // }
  repeat: 0x2a, // *
  ack: 0x2b, // +
  nack: 0x2d, // -
  interrupt: 0x03, // Ctrl-C, only meaningful between packets
} as const;

/** What the decoder found in the byte stream. */
export type FrameEvent =
  /** A whole packet; `body` is unescaped and run-length expanded; a private copy. */
  | { kind: "packet"; body: Uint8Array; checksumOk: boolean }
  /** A packet longer than the limit, discarded without buffering its excess. */
  | { kind: "oversize"; length: number; checksumOk: boolean }
  | { kind: "interrupt" }
  | { kind: "ack" }
  | { kind: "nack" };

const enum State {
  Idle,
  Body,
  Checksum1,
  Checksum2,
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * A streaming decoder of what a debugger sends: feed it chunks as they arrive, in any split,
 * and it returns the events completed so far. Garbage between packets is skipped; it never
 * throws and never buffers more than `maxBody` bytes however long a packet claims to be.
 *
 * @example
 * ```ts
 * const decoder = new PacketDecoder(4096);
 * decoder.feed(new TextEncoder().encode("+$g#67\x03")); // ack, packet "g", interrupt
 * ```
 */
export class PacketDecoder {
  readonly maxBody: number;
  #state = State.Idle;
  #body: Uint8Array;
  #length = 0; // decoded bytes, possibly beyond maxBody once overflowing
  #sum = 0;
  #escaped = false;
  #repeat = false;
  #received = 0;

  constructor(maxBody: number) {
    this.maxBody = maxBody;
    this.#body = new Uint8Array(Math.min(maxBody, 4096));
  }

  /** Consumes one chunk; returns the events it completed. */
  feed(chunk: Uint8Array): FrameEvent[] {
    const events: FrameEvent[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      switch (this.#state) {
        case State.Idle:
          if (c === Byte.start) this.#startPacket();
          else if (c === Byte.ack) events.push({ kind: "ack" });
          else if (c === Byte.nack) events.push({ kind: "nack" });
          else if (c === Byte.interrupt) events.push({ kind: "interrupt" });
          break;
        case State.Body:
          this.#bodyByte(c);
          break;
        case State.Checksum1:
          this.#received = hexValue(c) << 4;
          if (hexValue(c) < 0) this.#received = -1;
          this.#state = State.Checksum2;
          break;
        case State.Checksum2: {
          const ok = this.#received >= 0 && hexValue(c) >= 0 &&
            (this.#received | hexValue(c)) === (this.#sum & 0xff);
          events.push(this.#finishPacket(ok));
          this.#state = State.Idle;
          break;
        }
      }
    }
    return events;
  }

  #startPacket(): void {
    this.#state = State.Body;
    this.#length = 0;
    this.#sum = 0;
    this.#escaped = false;
    this.#repeat = false;
  }

  #bodyByte(c: number): void {
    if (c === Byte.end && !this.#escaped && !this.#repeat) {
      this.#state = State.Checksum1;
      return;
    }
    if (c === Byte.start && !this.#escaped && !this.#repeat) {
      // gdb's own reader does the same: a new `$` abandons a half-received packet.
      this.#startPacket();
      return;
    }
    this.#sum += c;
    if (this.#repeat) {
      this.#repeat = false;
      const count = c - 29;
      const last = this.#length > 0 && this.#length <= this.maxBody
        ? this.#body[this.#length - 1]!
        : 0;
      for (let n = 0; n < count; n++) this.#push(last);
    } else if (this.#escaped) {
      this.#escaped = false;
      this.#push(c ^ 0x20);
    } else if (c === Byte.escape) {
      this.#escaped = true;
    } else if (c === Byte.repeat && this.#length > 0) {
      this.#repeat = true;
    } else {
      this.#push(c);
    }
  }

  #push(c: number): void {
    if (this.#length < this.maxBody) {
      if (this.#length === this.#body.length) {
        const grown = new Uint8Array(Math.min(this.maxBody, this.#body.length * 2));
        grown.set(this.#body);
        this.#body = grown;
      }
      this.#body[this.#length] = c;
    }
    this.#length++;
  }

  #finishPacket(checksumOk: boolean): FrameEvent {
    if (this.#length > this.maxBody) {
      return { kind: "oversize", length: this.#length, checksumOk };
    }
    return { kind: "packet", body: this.#body.slice(0, this.#length), checksumOk };
  }
}

/** Bytes that must be escaped in binary data: `#`, `$`, `}` and `*`. */
const NEEDS_ESCAPE = new Uint8Array(256);
NEEDS_ESCAPE[Byte.end] = 1;
NEEDS_ESCAPE[Byte.start] = 1;
NEEDS_ESCAPE[Byte.escape] = 1;
NEEDS_ESCAPE[Byte.repeat] = 1;

/**
 * Builds one outgoing packet in a reusable buffer, computing the checksum as it writes.
 * Byte 0 is reserved for the `+` ack so an ack and its reply go out in a single write.
 *
 * @example
 * ```ts
 * const w = new PacketWriter(64);
 * w.begin().text("OK");
 * w.finish(false); // "$OK#9a"
 * ```
 */
export class PacketWriter {
  #buf: Uint8Array;
  #len = 0;
  #sum = 0;

  constructor(capacity: number) {
    this.#buf = new Uint8Array(capacity + 5);
  }

  /** Starts a new packet, invalidating the bytes of the previous one. */
  begin(): this {
    this.#buf[0] = Byte.ack;
    this.#buf[1] = Byte.start;
    this.#len = 2;
    this.#sum = 0;
    return this;
  }

  /** Body length written so far. */
  get bodyLength(): number {
    return this.#len - 2;
  }

  /** Appends ASCII text (each char's low byte). */
  text(s: string): this {
    this.#ensure(s.length);
    const buf = this.#buf;
    let sum = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i) & 0xff;
      buf[this.#len + i] = c;
      sum += c;
    }
    this.#len += s.length;
    this.#sum += sum;
    return this;
  }

  /** Appends bytes as hex digits. */
  hex(bytes: Uint8Array): this {
    this.#ensure(bytes.length * 2);
    this.#sum += encodeHexInto(bytes, this.#buf, this.#len);
    this.#len += bytes.length * 2;
    return this;
  }

  /**
   * Appends bytes as hex digits, run-length encoded (`0*~` is 98 zeros): for memory reads,
   * where a debugger spends its time parsing each character and guest RAM is full of zeros.
   * Only runs of a byte whose two digits are alike (00, 11 … ff) are squeezed: they are the
   * long runs, and finding them needs one comparison per byte.
   */
  hexRunLength(bytes: Uint8Array): this {
    this.#ensure(bytes.length * 2);
    const buf = this.#buf;
    let o = this.#len;
    let sum = 0;
    for (let i = 0; i < bytes.length;) {
      const b = bytes[i]!;
      const high = DIGIT[b >> 4]!;
      const low = DIGIT[b & 15]!;
      if (high !== low || i + 1 === bytes.length || bytes[i + 1] !== b) {
        buf[o] = high;
        buf[o + 1] = low;
        o += 2;
        sum += high + low;
        i++;
        continue;
      }
      let end = i + 2;
      while (end < bytes.length && bytes[end] === b) end++;
      for (let chars = 2 * (end - i); chars > 0;) {
        if (chars < 4) {
          buf[o++] = high;
          sum += high;
          chars--;
          continue;
        }
        // `X*c` is X then c - 29 more; c may not be `#` (6 more) or `$` (7 more).
        let more = Math.min(chars, MAX_RUN) - 1;
        if (more === 6 || more === 7) more = 5;
        buf[o] = high;
        buf[o + 1] = Byte.repeat;
        buf[o + 2] = more + 29;
        o += 3;
        sum += high + Byte.repeat + more + 29;
        chars -= more + 1;
      }
      i = end;
    }
    this.#len = o;
    this.#sum += sum;
    return this;
  }

  /**
   * Appends raw bytes, escaping the four that frame packets.
   *
   * Memory is read in blocks. A first pass over a block only sums it and notes whether any
   * byte needs an escape; a clean block is then copied at once (memcpy), which is the common
   * case in guest RAM. A block with escapes goes through the byte-by-byte loop, and so do the
   * blocks after it until one turns out clean: dense data (compressed, random) pays for one
   * pass, not two.
   */
  binary(bytes: Uint8Array): this {
    this.#ensure(bytes.length * 2);
    let dense = false;
    for (let from = 0; from < bytes.length; from += BINARY_BLOCK) {
      const to = Math.min(from + BINARY_BLOCK, bytes.length);
      if (!dense && this.#copyIfClean(bytes, from, to)) continue;
      const before = this.#len;
      this.#escapeInto(bytes, from, to);
      dense = this.#len - before !== to - from;
    }
    return this;
  }

  /** Appends bytes[from, to) at once if none needs an escape; if one does, writes nothing. */
  #copyIfClean(bytes: Uint8Array, from: number, to: number): boolean {
    let sum = 0;
    let escapes = 0;
    for (let i = from; i < to; i++) {
      const b = bytes[i]!;
      sum += b;
      escapes |= NEEDS_ESCAPE[b]!;
    }
    if (escapes !== 0) return false;
    this.#buf.set(bytes.subarray(from, to), this.#len);
    this.#len += to - from;
    this.#sum += sum;
    return true;
  }

  /** Appends bytes[from, to) byte by byte, escaping those that need it. */
  #escapeInto(bytes: Uint8Array, from: number, to: number): void {
    const buf = this.#buf;
    let o = this.#len;
    let sum = 0;
    for (let i = from; i < to; i++) {
      const b = bytes[i]!;
      if (NEEDS_ESCAPE[b] === 0) {
        buf[o++] = b;
        sum += b;
      } else {
        buf[o++] = Byte.escape;
        buf[o++] = b ^ 0x20;
        sum += Byte.escape + (b ^ 0x20);
      }
    }
    this.#len = o;
    this.#sum += sum;
  }

  /**
   * Ends the packet with `#cs`. Returns a view of the buffer (valid until the next `begin`):
   * with the leading `+` when `withAck`, without it otherwise.
   */
  finish(withAck: boolean): Uint8Array {
    this.#ensure(3);
    const sum = this.#sum & 0xff;
    this.#buf[this.#len] = Byte.end;
    this.#buf[this.#len + 1] = DIGIT[sum >> 4]!;
    this.#buf[this.#len + 2] = DIGIT[sum & 15]!;
    this.#len += 3;
    return this.#buf.subarray(withAck ? 0 : 1, this.#len);
  }

  #ensure(extra: number): void {
    const need = this.#len + extra + 3;
    if (need <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
  }
}

const DIGIT = new TextEncoder().encode("0123456789abcdef");
/** Longest run one `X*n` can carry: the count character 29 + 97 is `~`, the last printable. */
const MAX_RUN = 98;
/** Bytes per block of {@link PacketWriter.binary}'s clean-block test. */
const BINARY_BLOCK = 1024;

/** Frames a short text body as a complete packet (tests, one-off replies). */
export function framePacket(body: string): Uint8Array {
  return new PacketWriter(body.length).begin().text(body).finish(false).slice();
}
