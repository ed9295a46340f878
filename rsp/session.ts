/**
 * One debugger connection: reads bytes, frames and acks packets, dispatches them to handlers,
 * writes replies, runs the target and reports its stops. The session owns the attach: it stops
 * the target when it starts and always detaches when it ends, however it ends, so the guest is
 * never left suspended.
 *
 * @module
 */
import { escapeControls, getLogger } from "../log/mod.ts";
import type { Context, Outcome, SessionState } from "./context.ts";
import { lookup } from "./dispatch.ts";
import { type FrameEvent, PacketDecoder, PacketWriter } from "./framing.ts";
import { goneReply } from "./guards/gone.ts";
import { latin1 } from "./hex.ts";
import { isConnectionError } from "./guards/refusal.ts";
import { ErrorCode, formatError } from "./packets/error.ts";
import { formatStopReply, Signal, signalOf, type StopReplyOptions } from "./packets/stop_reply.ts";
import { ALL_THREADS, ANY_THREAD } from "./packets/thread_id.ts";
import { registersByNumber } from "./target_xml.ts";
import {
  type DebugTarget,
  type RegisterInfo,
  type StepRange,
  type StopEvent,
  TargetError,
  TargetGoneError,
} from "./target.ts";
import { pendingInterrupt } from "./pending_interrupt.ts";

const log = getLogger(["bhyve-gdbstub", "rsp"]);

/** The byte stream to a debugger; a `Deno.Conn` is one. */
export interface Connection {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** Default PacketSize: large, so a memory dump takes few round trips. */
export const DEFAULT_PACKET_SIZE = 0x40000;

/** Default bound on a half-received packet or a write the debugger does not take (ms). */
export const DEFAULT_STALL_TIMEOUT_MS = 30_000;

export interface SessionOptions {
  /** The PacketSize advertised and the longest packet accepted (default 0x40000). */
  packetSize?: number;
  /** Who is connected, for log lines. */
  peer?: string;
  /**
   * How long a debugger may leave a packet half sent, or leave a reply unread, before the
   * connection is dropped and the target detached (default 30 s). A debugger idle between
   * packets is never timed out: a user may look at a stopped VM for as long as they like.
   */
  stallTimeoutMs?: number;
}

/** The debugger stopped mid-packet or stopped reading. */
class StallError extends Error {
  override name = "StallError";
}

/**
 * Follows, byte by byte as the decoder does, whether a packet is half received: `$` opens
 * one, `#` and two checksum characters end it, `}` and `*` make the next byte data.
 */
class PartialPacket {
  #state = 0; // 0 between packets, 1 body, 2 and 3 checksum digits
  #modifier = false;
  #empty = true;
  /** When the packet under way began (its `$`), for a deadline that bytes do not extend. */
  since = 0;

  get pending(): boolean {
    return this.#state !== 0;
  }

  feed(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i]!;
      switch (this.#state) {
        case 0:
          if (c === 0x24) this.#open();
          break;
        case 1:
          if (this.#modifier) this.#modifier = false;
          else if (c === 0x23) this.#state = 2;
          else if (c === 0x24) this.#open();
          else if (c === 0x7d || (c === 0x2a && !this.#empty)) this.#modifier = true;
          this.#empty = false;
          break;
        case 2:
          this.#state = 3;
          break;
        default:
          this.#state = 0;
      }
    }
  }

  #open(): void {
    this.since = performance.now();
    this.#state = 1;
    this.#modifier = false;
    this.#empty = true;
  }
}

const TRACE_LIMIT = 160;
const CONSOLE_CHUNK = 1024;

interface Running {
  controller: AbortController;
  /** The signal of the stop reply once interrupted (SIGINT for Ctrl-C, 0 for vCont;t). */
  signal: number;
  /** The thread an interrupt's stop reply names: the one that runs, or the one gdb was on. */
  thread: number;
  /** Set when the session ends or detaches: stop waiting and report nothing. */
  quiet: boolean;
  task: Promise<void>;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A packet for the log: controls as the log shows them (`\n`, `\e`), other non-ASCII bytes as `\xNN`. */
function printable(text: string): string {
  return escapeControls(text).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/**
 * A debugging session over one connection.
 *
 * @example
 * ```ts
 * const session = new Session(target, conn);
 * await session.run(); // returns when the debugger leaves; the target is detached
 * ```
 */
export class Session {
  readonly #target: DebugTarget;
  readonly #conn: Connection;
  readonly #packetSize: number;
  readonly #peer: string;
  readonly #stallTimeoutMs: number;
  readonly #partial = new PartialPacket();
  readonly #decoder: PacketDecoder;
  readonly #writer: PacketWriter;
  readonly #state: SessionState;
  readonly #context: Context;
  readonly #registers: Map<number, RegisterInfo>;
  readonly #gRegisters: RegisterInfo[];
  /** Packets answered with the empty reply, by name, for diagnostics. */
  readonly unsupportedPackets = new Set<string>();
  #ackMode = true;
  #ackPending = false;
  #lastSent: Uint8Array | undefined;
  #writes: Promise<void> = Promise.resolve();
  #running: Running | undefined;
  #closing = false;
  #detached = false;
  /** Why the guest was released under this debugger (`--max-hold`), once it was. */
  #released: string | undefined;
  /** Ctrl-C that arrived while nothing ran (see {@link pendingInterrupt}). */
  readonly #ctrlC = pendingInterrupt();

  constructor(target: DebugTarget, conn: Connection, options: SessionOptions = {}) {
    this.#target = target;
    this.#conn = conn;
    this.#packetSize = options.packetSize ?? DEFAULT_PACKET_SIZE;
    this.#peer = options.peer ?? "debugger";
    this.#stallTimeoutMs = options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    this.#decoder = new PacketDecoder(this.#packetSize);
    this.#writer = new PacketWriter(Math.min(this.#packetSize * 2, 0x10000));
    const all = registersByNumber(target.description());
    this.#registers = new Map(all.map((r) => [r.regnum, r]));
    this.#gRegisters = all.filter((r) => r.inG);
    this.#state = {
      noAckRequested: false,
      clientFeatures: new Map(),
      errorStyle: "code",
      gdbClient: false,
      listThreadsInStop: false,
      rawBinaryReads: false,
      selectedThread: ANY_THREAD,
      continueThread: ANY_THREAD,
      lastStop: { kind: "stopped", thread: 1, signal: Signal.trap },
      threadCursor: 0,
      unarmed: new Map(),
      ignoreUnarmed: false,
    };
    this.#context = this.#makeContext();
  }

  /** Attaches, serves the connection until it ends, then detaches. Never rejects. */
  async run(): Promise<void> {
    try {
      const event = await this.#target.stop();
      // The attach is reported as SIGTRAP whatever came before it (`w` mode holds the VM
      // before the debugger connects): later stops report what happened to them.
      this.#state.lastStop = event.kind === "stopped"
        ? { kind: "stopped", thread: event.thread, signal: Signal.trap }
        : event;
      log.info("{peer} attached", { peer: this.#peer });
    } catch (error) {
      if (!(error instanceof TargetGoneError)) {
        log.error("Cannot attach: {error}", { error: errorMessage(error) });
        await this.#finish();
        return;
      }
      this.#state.lastStop = { kind: "exited", status: 0, message: error.message };
    }
    try {
      await this.#readLoop();
    } catch (error) {
      if (!this.#closing) {
        // A reset or a broken pipe is how debuggers often leave: one line at debug level.
        const level = isConnectionError(error) ? "debug" : "warn";
        log[level]("{peer}: {error}", { peer: this.#peer, error: errorMessage(error) });
      }
    } finally {
      await this.#finish();
    }
  }

  /**
   * Lets the guest run now (`--max-hold` ran out) and tells the debugger: every later packet is
   * answered with `reason` in the form it allows (guards/gone.ts), and the session ends after the
   * stall timeout at the latest, so a debugger that never comes back does not keep the server.
   */
  async release(reason: string): Promise<void> {
    if (this.#released !== undefined || this.#closing) return;
    this.#released = reason;
    log.warn("{peer}: {reason}", { peer: this.#peer, reason });
    const timer = setTimeout(() => this.close(), this.#stallTimeoutMs);
    Deno.unrefTimer(timer);
    try {
      await this.#detach();
    } catch (error) {
      log.error("release failed: {error}", { error: errorMessage(error) });
    }
  }

  /** Ends the session from outside (server shutdown); run() then detaches and returns. */
  close(): void {
    this.#closing = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(0x10000);
    while (!this.#closing) {
      const n = await this.#readSome(buffer);
      if (n === null) {
        log.info("{peer} disconnected", { peer: this.#peer });
        return;
      }
      const chunk = buffer.subarray(0, n);
      this.#partial.feed(chunk);
      for (const event of this.#decoder.feed(chunk)) {
        await this.#onEvent(event);
        if (this.#closing) return;
      }
    }
  }

  async #onEvent(event: FrameEvent): Promise<void> {
    switch (event.kind) {
      case "ack":
        return;
      case "nack":
        if (this.#ackMode && this.#lastSent !== undefined) {
          this.#trace("->", this.#lastSent);
          await this.#write(this.#lastSent);
        }
        return;
      case "interrupt":
        this.#trace("<-", "\x03");
        if (this.#running !== undefined) this.#interrupt(Signal.interrupt);
        else this.#ctrlC.note();
        return;
      case "oversize":
        log.warn("{peer} sent a packet of {length} bytes, more than PacketSize", {
          peer: this.#peer,
          length: event.length,
        });
        this.#ackPending = this.#ackMode;
        this.#writer.begin();
        this.#context.error(
          ErrorCode.tooBig,
          `Packet of ${event.length} bytes is longer than PacketSize ${this.#packetSize}`,
        );
        await this.#send(this.#writer);
        return;
      case "packet":
        if (!event.checksumOk) {
          log.warn("{peer}: packet with a bad checksum", { peer: this.#peer });
          if (this.#ackMode) await this.#write(new Uint8Array([0x2d]));
          return;
        }
        this.#ackPending = this.#ackMode;
        await this.#handle(latin1(event.body));
    }
  }

  /**
   * One read. A packet must be whole within the stall timeout of its first byte: a debugger
   * that dribbles it (one byte a second) is dropped just like one that stops mid-packet.
   */
  async #readSome(buffer: Uint8Array): Promise<number | null> {
    if (!this.#partial.pending) return await this.#conn.read(buffer);
    const left = this.#stallTimeoutMs - (performance.now() - this.#partial.since);
    const timer = setTimeout(() => {
      log.warn("{peer} has not finished a packet in {seconds} s: dropping the connection", {
        peer: this.#peer,
        seconds: this.#stallTimeoutMs / 1000,
      });
      this.close();
    }, Math.max(0, left));
    try {
      return await this.#conn.read(buffer);
    } finally {
      clearTimeout(timer);
    }
  }

  async #handle(body: string): Promise<void> {
    this.#trace("<-", body);
    if (this.#released !== undefined) return await this.#onGone(body, this.#released);
    this.#ctrlC.seen(body);
    const found = lookup(body);
    this.#writer.begin();
    let outcome: Outcome | void;
    if (found === undefined) {
      const name = /^[a-zA-Z]+/.exec(body)?.[0] ?? body.slice(0, 1);
      this.unsupportedPackets.add(name.length > 1 ? name : body.slice(0, 12));
      log.debug("unsupported packet {name}: empty reply", { name });
    } else {
      try {
        outcome = await found.handler(this.#context, found.args, body);
      } catch (error) {
        if (error instanceof TargetGoneError) return await this.#onGone(body, error.message);
        outcome = this.#onHandlerError(error);
      }
    }
    if (outcome === "deferred" || outcome === "close-silently") {
      if (this.#ackPending) await this.#write(new Uint8Array([0x2b]));
      this.#ackPending = false;
      if (outcome === "close-silently") this.close();
      return;
    }
    await this.#send(this.#writer);
    if (this.#state.noAckRequested && this.#ackMode) {
      this.#ackMode = false;
      log.debug("no-ack mode");
    }
    if (outcome === "close") this.close();
  }

  /** The two tiers of error: the target's refusals become replies; the rest is logged. */
  #onHandlerError(error: unknown): Outcome {
    this.#writer.begin();
    if (error instanceof TargetError) {
      this.#context.error(error.code, error.message);
      return;
    }
    if (isConnectionError(error)) {
      log.debug("{peer}: {error}", { peer: this.#peer, error: errorMessage(error) });
      return "close-silently";
    }
    log.error("unexpected failure: {error}", { error });
    this.#context.error(ErrorCode.internal, `Internal error: ${errorMessage(error)}`);
  }

  /**
   * Answers `body` once the target has vanished (or was released by `--max-hold`), in the form
   * the packet allows (guards/gone.ts).
   */
  async #onGone(body: string, reason: string): Promise<void> {
    log.debug("{peer}: answering with {reason}", { peer: this.#peer, reason });
    const gone = goneReply(body, reason, this.#state.errorStyle);
    if (gone.console !== undefined) await this.#console(gone.console);
    this.#writer.begin().text(gone.reply);
    await this.#send(this.#writer);
    if (gone.close) this.close();
  }

  // ---- run control -------------------------------------------------------------------

  async #resume(threads?: readonly number[]): Promise<void> {
    await (threads === undefined ? this.#target.resume() : this.#target.resume(threads));
    const running = this.#newRunning(threads?.[0] ?? this.#currentThread());
    running.task = this.#watch(running);
  }

  /**
   * Runs one instruction of `thread` (or a range step) as a run of its own, so Ctrl-C and
   * detach reach it.
   */
  #step(thread: number, range?: StepRange): void {
    const step = this.#target.step;
    if (step === undefined) throw new Error("the target cannot step");
    const running = this.#newRunning(thread);
    running.task = this.#watch(
      running,
      (signal) => step.call(this.#target, thread, signal, range),
    );
  }

  #newRunning(thread: number): Running {
    const running: Running = {
      controller: new AbortController(),
      signal: Signal.interrupt,
      thread,
      quiet: false,
      task: Promise.resolve(),
    };
    this.#running = running;
    return running;
  }

  /** The thread gdb was on: the one it asked to resume (Hc), else that of the last stop. */
  #currentThread(): number {
    const { continueThread, lastStop } = this.#state;
    if (continueThread > 0) return continueThread;
    return lastStop.kind === "stopped" ? lastStop.thread : (this.#target.threads()[0]?.id ?? 1);
  }

  #interrupt(signal: number): void {
    const running = this.#running;
    if (running === undefined || running.controller.signal.aborted) return;
    running.signal = signal;
    running.controller.abort();
  }

  async #watch(
    running: Running,
    wait = (signal: AbortSignal) => this.#target.waitForStop(signal),
  ): Promise<void> {
    let event: StopEvent;
    try {
      event = await wait(running.controller.signal);
    } catch (error) {
      if (running.quiet) return;
      if (!running.controller.signal.aborted) return this.#runFailed(running, error);
      try {
        event = await this.#target.stop();
        if (event.kind === "stopped") {
          const reason = running.signal === Signal.interrupt ? { type: "interrupt" as const } : {};
          event = { kind: "stopped", thread: running.thread, signal: running.signal, ...reason };
        }
      } catch (stopError) {
        return this.#runFailed(running, stopError);
      }
    }
    if (this.#running === running) this.#running = undefined;
    if (running.quiet) return;
    await this.#reportStop(event);
  }

  async #runFailed(running: Running, error: unknown): Promise<void> {
    if (this.#running === running) this.#running = undefined;
    if (error instanceof TargetGoneError) {
      return this.#reportStop({ kind: "exited", status: 0, message: error.message });
    }
    log.error("lost control of the target: {error}", { error });
    await this.#reportStop({
      kind: "exited",
      status: 0,
      message: `Lost control of the target: ${errorMessage(error)}`,
    });
  }

  /** Sends the stop reply for a stop that happened while running; an exit ends the session. */
  async #reportStop(event: StopEvent): Promise<void> {
    try {
      this.#noteStop(event);
      if (event.kind === "exited") await this.#console(`${event.message}\n`);
      else if (event.console !== undefined) await this.#console(event.console);
      else if (event.reason?.type === "refused") await this.#console(`${event.reason.message}\n`);
      const writer = new PacketWriter(64);
      writer.begin().text(this.#stopReply(this.#state.lastStop));
      await this.#send(writer);
    } catch (error) {
      log.warn("cannot report the stop: {error}", { error: errorMessage(error) });
    }
    if (event.kind === "exited") this.close();
  }

  #noteStop(event: StopEvent): void {
    // The signal follows what happened, whatever the target put there.
    if (event.kind === "stopped" && event.reason !== undefined) {
      event = { ...event, signal: signalOf(event.reason) };
    }
    this.#state.lastStop = event;
    this.#state.selectedThread = ANY_THREAD;
  }

  #stopReply(event: StopEvent, description?: string): string {
    const options: StopReplyOptions = {};
    if (this.#state.listThreadsInStop && event.kind === "stopped") {
      const threads = this.#target.threads();
      options.threads = threads.map((t) => t.id);
      // lldb (the client that asks for `threads:`) shows the name in `thread list`.
      const name = threads.find((t) => t.id === event.thread)?.extra;
      if (name !== undefined) options.name = name;
    }
    if (description !== undefined) options.description = description;
    return formatStopReply(event, options);
  }

  async #detach(): Promise<void> {
    if (this.#detached) return;
    const running = this.#running;
    if (running !== undefined) {
      running.quiet = true;
      running.controller.abort();
      await running.task.catch(() => {});
      this.#running = undefined;
    }
    this.#detached = true;
    await this.#target.detach();
    log.info("{peer} detached", { peer: this.#peer });
  }

  async #finish(): Promise<void> {
    this.#closing = true;
    try {
      await this.#detach();
    } catch (error) {
      log.error("detach failed: {error}", { error: errorMessage(error) });
    }
    this.close();
    await this.#writes;
  }

  // ---- output ------------------------------------------------------------------------

  async #console(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    for (let at = 0; at < bytes.length; at += CONSOLE_CHUNK) {
      const writer = new PacketWriter(CONSOLE_CHUNK * 2 + 1);
      writer.begin().text("O").hex(bytes.subarray(at, at + CONSOLE_CHUNK));
      await this.#send(writer);
    }
  }

  /** Finishes and sends one packet, with the pending `+` in the same write. */
  async #send(writer: PacketWriter): Promise<void> {
    const withAck = this.#ackPending;
    this.#ackPending = false;
    const bytes = writer.finish(withAck);
    const packet = withAck ? bytes.subarray(1) : bytes;
    this.#lastSent = packet;
    this.#trace("->", packet);
    await this.#write(bytes);
  }

  /**
   * Writes all of `bytes`, after any write already under way. A debugger that stops reading
   * for longer than the stall timeout is dropped (its VM must not stay held behind it).
   */
  #write(bytes: Uint8Array): Promise<void> {
    const write = this.#writes.then(async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          log.warn("{peer} has not read a reply for {seconds} s: dropping the connection", {
            peer: this.#peer,
            seconds: this.#stallTimeoutMs / 1000,
          });
          this.close();
          reject(new StallError("the debugger stopped reading"));
        }, this.#stallTimeoutMs);
      });
      try {
        for (let at = 0; at < bytes.length;) {
          at += await Promise.race([this.#conn.write(bytes.subarray(at)), stalled]);
        }
      } finally {
        clearTimeout(timer);
      }
    });
    this.#writes = write.catch(() => {});
    return write;
  }

  /** The one place packets are logged, in (`<-`) and out (`->`). */
  #trace(direction: "<-" | "->", packet: string | Uint8Array): void {
    if (!log.isEnabledFor("debug")) return;
    const head = typeof packet === "string"
      ? packet.slice(0, TRACE_LIMIT)
      : latin1(packet.subarray(0, TRACE_LIMIT));
    const more = packet.length > TRACE_LIMIT ? `… (${packet.length} bytes)` : "";
    log.debug(`${direction} {packet}`, { packet: printable(head) + more });
  }

  #makeContext(): Context {
    // deno-lint-ignore no-this-alias
    const session = this;
    const state = this.#state;
    return {
      target: this.#target,
      state,
      packetSize: this.#packetSize,
      registers: this.#registers,
      gRegisters: this.#gRegisters,
      reply: this.#writer,
      get running() {
        return session.#running !== undefined;
      },
      error(code, message, options) {
        let style = state.errorStyle;
        if (style === "code" && options?.gdbShowsText === true && state.gdbClient) {
          style = "dot-text";
        }
        session.#writer.begin().text(formatError(code, message, style));
      },
      console: (text) => this.#console(text),
      thread: (explicit) => {
        const id = explicit ?? state.selectedThread;
        if (id !== ANY_THREAD && id !== ALL_THREADS) return id;
        const stop = state.lastStop;
        return stop.kind === "stopped" ? stop.thread : (this.#target.threads()[0]?.id ?? 1);
      },
      stopReply: (event, description) => this.#stopReply(event, description),
      noteStop: (event) => this.#noteStop(event),
      resume: (threads) => this.#resume(threads),
      step: (thread, range) => this.#step(thread, range),
      takeInterrupt: () => this.#ctrlC.take(),
      stop: async (signal) => {
        const event = await this.#target.stop();
        const reported: StopEvent = event.kind === "stopped"
          ? { kind: "stopped", thread: event.thread, signal }
          : event;
        this.#noteStop(reported);
        return reported;
      },
      interrupt: (signal) => this.#interrupt(signal),
      detach: () => this.#detach(),
    };
  }
}
