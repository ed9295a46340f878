/**
 * lldb's extensions (lldb/docs/lldb-gdb-remote.txt) that change how the session talks.
 * Those with fixed answers are in the dispatch table.
 *
 * @module
 */
import type { Context } from "../context.ts";
import { textToHex } from "../hex.ts";
import { ErrorCode } from "../packets/error.ts";
import { formatStopReply } from "../packets/stop_reply.ts";
import { parseThreadId } from "../packets/thread_id.ts";

/** `QListThreadsInStopReply`: add `threads:` to stop replies. */
export function listThreadsInStopReply(ctx: Context): void {
  ctx.state.listThreadsInStop = true;
  ctx.reply.text("OK");
}

/** `QEnableErrorStrings`: errors become `Enn;hex(text)`. */
export function enableErrorStrings(ctx: Context): void {
  if (ctx.state.errorStyle === "code") ctx.state.errorStyle = "lldb-hex";
  ctx.reply.text("OK");
}

/** lldb triples for the gdb architecture names this server can describe. */
const TRIPLES: Record<string, { triple: string; ptrsize: number }> = {
  "i386:x86-64": { triple: "x86_64-unknown-none", ptrsize: 8 },
  "i386": { triple: "i386-unknown-none", ptrsize: 4 },
  "aarch64": { triple: "aarch64-unknown-none", ptrsize: 8 },
};

/**
 * `qHostInfo`: the triple of the target's architecture, so lldb does not guess one (and
 * does not probe for an OS kernel in guest memory). Empty for an architecture not listed.
 */
export function hostInfo(ctx: Context): void {
  const arch = TRIPLES[ctx.target.description().architecture];
  if (arch === undefined) return;
  ctx.reply.text(`triple:${textToHex(arch.triple)};ptrsize:${arch.ptrsize};endian:little;`);
}

/**
 * `qThreadStopInfoXX`: one thread's stop reply, which lldb 14 asks for each thread after a stop
 * (it sends no qThreadExtraInfo). The thread that stopped gets the stop's signal, the others 0
 * (no stop reason), and each its state and mode as `hexname`, the name `thread list` shows.
 */
export function threadStopInfo(ctx: Context, args: string): void {
  const id = parseThreadId(args);
  const thread = ctx.target.threads().find((t) => t.id === id);
  if (thread === undefined) {
    ctx.error(ErrorCode.noThread, `No thread ${args}`);
    return;
  }
  const stop = ctx.state.lastStop;
  const signal = stop.kind === "stopped" && stop.thread === thread.id ? stop.signal : 0;
  ctx.reply.text(
    formatStopReply({ kind: "stopped", thread: thread.id, signal }, { name: thread.extra }),
  );
}
