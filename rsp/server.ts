/**
 * The TCP server: one debugger at a time. A second debugger is told the VM is already being
 * debugged and is closed; the first is untouched.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { PacketDecoder, PacketWriter } from "./framing.ts";
import { formatError } from "./packets/error.ts";
import { type Connection, DEFAULT_PACKET_SIZE, Session } from "./session.ts";
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
    }
    await this.finished;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) this.#accept(conn);
    } catch (error) {
      if (!this.#closed) log.error("accept failed: {error}", { error });
    }
    this.#closed = true;
    this.#session?.close();
    await this.#sessionDone;
  }

  #accept(conn: Deno.TcpConn): void {
    const peer = `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}`;
    try {
      conn.setNoDelay(true);
    } catch {
      // the peer may already be gone
    }
    if (this.#busy || this.#closed) {
      log.warn("refused {peer}: a debugger is already attached", { peer });
      void refuse(conn, "The VM is already being debugged by another debugger", this.#options);
      return;
    }
    // Busy from now on, so a second connection racing the target factory is refused too.
    this.#busy = true;
    this.#sessionDone = this.#serveOne(conn, peer).finally(() => {
      this.#busy = false;
      this.#session = undefined;
    });
  }

  async #serveOne(conn: Deno.TcpConn, peer: string): Promise<void> {
    let target: DebugTarget;
    try {
      target = typeof this.#source === "function" ? await this.#source() : this.#source;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.error("cannot open the target for {peer}: {message}", { peer, message });
      await refuse(conn, message, this.#options);
      return;
    }
    const session = new Session(target, conn, {
      peer,
      packetSize: this.#options.packetSize ?? DEFAULT_PACKET_SIZE,
    });
    this.#session = session;
    if (this.#closed) session.close();
    await session.run();
  }
}

/**
 * Tells a debugger it cannot attach: an `E.reason` reply to its first packet, then the
 * connection closes. gdb prints "Remote failure reply: E.reason" (an `O` packet here would be
 * taken for the qSupported reply); lldb shows only its own "no stop reply" error.
 */
async function refuse(conn: Connection, message: string, options: ServeOptions): Promise<void> {
  const decoder = new PacketDecoder(options.packetSize ?? DEFAULT_PACKET_SIZE);
  const buffer = new Uint8Array(4096);
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, options.refuseTimeoutMs ?? 2000);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return;
      if (!decoder.feed(buffer.subarray(0, n)).some((e) => e.kind === "packet")) continue;
      const error = new PacketWriter(message.length + 8).begin()
        .text(formatError(1, message, "dot-text")).finish(true);
      await writeAll(conn, error);
      return;
    }
  } catch {
    // the refused debugger went away first
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

async function writeAll(conn: Connection, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
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
