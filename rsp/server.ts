/**
 * The TCP server: one debugger at a time. A second debugger is told the VM is already being
 * debugged and is closed; the first is untouched.
 *
 * A connection counts only once it has sent a whole packet: until then it is "pending", so a
 * port scan or a stray connect never pauses the VM and never locks the real debugger out
 * (pending connections are capped, the oldest dropped first, and dropped anyway after the
 * stall timeout).
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import { PacketDecoder } from "./framing.ts";
import { limitHold } from "./guards/hold_limit.ts";
import {
  closeQuietly,
  isConnectionError,
  type RefusalOptions,
  refuse,
  tellAndClose,
} from "./guards/refusal.ts";
import {
  type Connection,
  DEFAULT_PACKET_SIZE,
  DEFAULT_STALL_TIMEOUT_MS,
  Session,
} from "./session.ts";
import type { DebugTarget } from "./target.ts";

const log = getLogger(["bhyve-gdbstub", "rsp"]);

/** The target to debug, or a function that opens it for each debugger that connects. */
export type TargetSource = DebugTarget | (() => DebugTarget | Promise<DebugTarget>);

export interface ServeOptions {
  /** Address to listen on, e.g. "127.0.0.1" or "::1". */
  hostname: string;
  /** TCP port; 0 picks a free one (see {@link RspServer.addr}). */
  port: number;
  /** PacketSize advertised and accepted (default 0x40000). */
  packetSize?: number;
  /** Aborting it closes the server as {@link RspServer.close} does. */
  signal?: AbortSignal;
  /** How long a refused debugger has to send its first packet, in ms (default 2000). */
  refuseTimeoutMs?: number;
  /**
   * How long a new connection has to send its first whole packet, and how long a debugger may
   * leave a packet half sent or a reply unread, before it is dropped (ms, default 30000).
   */
  stallTimeoutMs?: number;
  /** Most connections waiting for their first packet; the oldest is dropped (default 16). */
  maxPending?: number;
  /**
   * `--max-hold`: once a debugger has kept the guest stopped this long (ms), the guest runs
   * again and the debugger is told why (Session.release). Off when unset.
   */
  maxHoldMs?: number;
}

/** The server could not listen, e.g. the port is in use. The message is one line for the user. */
export class ListenError extends Error {
  override name = "ListenError";
}

/**
 * A listening server. Connections are served until {@link RspServer.close}; `finished`
 * resolves once the listener and any session have ended (the target detached).
 */
export class RspServer {
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #source: TargetSource;
  readonly #options: ServeOptions;
  #session: Session | undefined;
  #busy = false;
  #sessionDone: Promise<void> = Promise.resolve();
  #closed = false;
  /** Connections that have not sent a whole packet yet, oldest first. */
  readonly #pending = new Set<Deno.TcpConn>();
  /** Resolves when the server has stopped and any session has ended. */
  readonly finished: Promise<void>;

  constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    source: TargetSource,
    options: ServeOptions,
  ) {
    this.#listener = listener;
    this.#source = source;
    this.#options = options;
    options.signal?.addEventListener("abort", () => void this.close(), { once: true });
    this.finished = this.#acceptLoop();
    // Aborted before it started (a signal while the VM was being opened): close at once.
    if (options.signal?.aborted) void this.close();
  }

  /** Where the server listens (with the real port when asked for port 0). */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** Whether a debugger is attached. */
  get busy(): boolean {
    return this.#busy;
  }

  /** Stops listening and ends the current session (which detaches). */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
      this.#session?.close();
      for (const conn of this.#pending) closeQuietly(conn);
    }
    await this.finished;
  }

  async #acceptLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
        failures = 0;
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) break;
        // A peer that reset before accept is routine: one debug line, and accept again at
        // once. Anything else (EMFILE under a storm) is said once per run of failures, with a
        // fixed short pause so the loop cannot spin; the attached debugger is never affected.
        if (isConnectionError(error)) {
          log.debug("accept: {error}", { error: String(error) });
          continue;
        }
        if (failures++ === 0) log.warn("accept failed: {error}", { error: String(error) });
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      this.#accept(conn);
    }
    this.#closed = true;
    this.#session?.close();
    for (const conn of this.#pending) closeQuietly(conn);
    await this.#sessionDone;
  }

  #accept(conn: Deno.TcpConn): void {
    const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    if (this.#closed) return closeQuietly(conn);
    try {
      conn.setNoDelay(true);
    } catch {
      // the peer may already be gone
    }
    if (this.#pending.size >= (this.#options.maxPending ?? 16)) {
      const oldest = this.#pending.values().next().value!;
      log.debug("too many connections without a packet: dropping the oldest");
      this.#pending.delete(oldest);
      void tellAndClose(
        oldest,
        "Too many connections are waiting to attach to this VM; this one was dropped",
      );
    }
    this.#pending.add(conn);
    void this.#pend(conn, peer);
  }

  /** Waits for the connection's first packet, then serves it or refuses it. */
  async #pend(tcp: Deno.TcpConn, peer: string): Promise<void> {
    const conn = await firstPacket(tcp, this.#options);
    this.#pending.delete(tcp);
    if (conn === undefined || this.#closed) {
      log.debug("{peer} left before its first packet", { peer });
      closeQuietly(tcp);
      return;
    }
    if (this.#busy) {
      log.debug("refused {peer}: a debugger is already attached", { peer });
      await refuse(conn, "The VM is already being debugged by another debugger", this.#refusal());
      return;
    }
    // Busy from now on, so a second connection racing the target factory is refused too.
    this.#busy = true;
    this.#sessionDone = this.#serveOne(conn, peer).finally(() => {
      this.#busy = false;
      this.#session = undefined;
    });
  }

  /** How a refused client is answered (refusal.ts). */
  #refusal(): RefusalOptions {
    return {
      packetSize: this.#options.packetSize ?? DEFAULT_PACKET_SIZE,
      idleMs: this.#options.refuseTimeoutMs ?? 2000,
    };
  }

  async #serveOne(conn: Connection, peer: string): Promise<void> {
    let target: DebugTarget;
    try {
      target = typeof this.#source === "function" ? await this.#source() : this.#source;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.error("cannot open the target for {peer}: {message}", { peer, message });
      await refuse(conn, message, this.#refusal());
      return;
    }
    const maxHold = this.#options.maxHoldMs;
    const timed = maxHold === undefined ? undefined : limitHold(target, maxHold, () => {
      void this.#session?.release(
        `bhyve-gdbstub let the guest run again: it was held for --max-hold ` +
          `${maxHold / 1000} s; this debugger is detached`,
      );
    });
    const session = new Session(timed?.target ?? target, conn, {
      peer,
      packetSize: this.#options.packetSize ?? DEFAULT_PACKET_SIZE,
      stallTimeoutMs: this.#options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    });
    this.#session = session;
    if (this.#closed) session.close();
    await session.run();
    timed?.cancel();
  }
}

/**
 * Waits for a connection's first whole packet (acks, Ctrl-C and noise before it are kept).
 * Returns a Connection that replays what was read, or undefined if the peer left, sent more
 * than a packet's worth of noise, or sent nothing whole within the stall timeout.
 */
async function firstPacket(
  conn: Deno.TcpConn,
  options: ServeOptions,
): Promise<Connection | undefined> {
  const packetSize = options.packetSize ?? DEFAULT_PACKET_SIZE;
  const decoder = new PacketDecoder(packetSize);
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  let total = 0;
  const timer = setTimeout(
    () => closeQuietly(conn),
    options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
  );
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return undefined;
      const chunk = buffer.slice(0, n);
      chunks.push(chunk);
      total += n;
      if (decoder.feed(chunk).some((e) => e.kind === "packet" || e.kind === "oversize")) break;
      // More than a whole packet's worth of bytes and still no packet: not a debugger.
      if (total > packetSize * 2 + 64) return undefined;
    }
  } catch {
    return undefined; // reset by the peer, or closed by the timer
  } finally {
    clearTimeout(timer);
  }
  return new Replay(conn, chunks);
}

/** A Connection that first returns bytes already read from `conn`. */
class Replay implements Connection {
  readonly #conn: Connection;
  readonly #chunks: Uint8Array[];

  constructor(conn: Connection, chunks: Uint8Array[]) {
    this.#conn = conn;
    this.#chunks = chunks;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const chunk = this.#chunks[0];
    if (chunk === undefined) return this.#conn.read(buffer);
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return Promise.resolve(n);
  }

  write(data: Uint8Array): Promise<number> {
    return this.#conn.write(data);
  }

  close(): void {
    this.#conn.close();
  }
}

/**
 * Listens on `options.hostname:options.port` and serves debuggers, one at a time.
 * Throws {@link ListenError} (one line, with the cause) when it cannot listen.
 *
 * @example
 * ```ts
 * const server = serve(target, { hostname: "127.0.0.1", port: 1234 });
 * await server.finished;
 * ```
 */
export function serve(source: TargetSource, options: ServeOptions): RspServer {
  let listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  try {
    listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  } catch (error) {
    const where = options.hostname.includes(":")
      ? `[${options.hostname}]:${options.port}`
      : `${options.hostname}:${options.port}`;
    const why = error instanceof Deno.errors.AddrInUse
      ? "the address is already in use"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Error
      ? error.message
      : String(error);
    throw new ListenError(`Cannot listen on ${where}: ${why}`, { cause: error });
  }
  log.debug("listening on {hostname}:{port}", {
    hostname: listener.addr.hostname,
    port: listener.addr.port,
  });
  return new RspServer(listener, source, options);
}
