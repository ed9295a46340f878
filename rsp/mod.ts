/**
 * The GDB remote protocol layer: serve a {@link DebugTarget} to gdb or lldb over TCP.
 *
 * @example
 * ```ts
 * import { ListenError, serve } from "./rsp/mod.ts";
 * try {
 *   const server = serve(target, { hostname: "127.0.0.1", port: 1234 });
 *   await server.finished;
 * } catch (error) {
 *   if (error instanceof ListenError) console.error(error.message); // one line
 * }
 * ```
 *
 * @module
 */
export { ListenError, RspServer, serve, type ServeOptions, type TargetSource } from "./server.ts";
export { type Connection, DEFAULT_PACKET_SIZE, Session, type SessionOptions } from "./session.ts";
export * from "./target.ts";
