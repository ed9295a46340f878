/**
 * General queries and thread packets: qSupported, qXfer:features, thread lists, qC, H, T,
 * qRcmd and the small fixed answers gdb asks for while attaching.
 *
 * @module
 */
import type { Context, Outcome } from "../context.ts";
import { hexInt, hexToText, textToHex } from "../hex.ts";
import { ErrorCode } from "../packets/error.ts";
import { formatSupported, parseSupported } from "../packets/supported.ts";
import { ALL_THREADS, ANY_THREAD, parseThreadId } from "../packets/thread_id.ts";
import { parseXferRead, xferSlice } from "../packets/xfer.ts";
import { targetXml } from "../target_xml.ts";
import { breakpointsMonitor } from "./run.ts";

/** `qSupported[:features]`. */
export function supported(ctx: Context, args: string): void {
  const features = parseSupported(args);
  ctx.state.clientFeatures = features;
  const errorMessages = features.get("error-message") === true;
  if (errorMessages) ctx.state.errorStyle = "dot-text";
  // lldb announces xmlRegisters with several architectures and never vContSupported.
  ctx.state.gdbClient = features.has("vContSupported") || errorMessages;
  // Breakpoint kinds in stop replies, where the target honours breakpoints and the client asks.
  const breakpoints = ctx.target.insertBreakpoint !== undefined &&
    ctx.target.unsupported("breakpoint") === undefined;
  ctx.reply.text(formatSupported({
    packetSize: ctx.packetSize,
    errorMessages,
    swbreak: breakpoints && features.get("swbreak") === true,
    hwbreak: breakpoints && features.get("hwbreak") === true,
  }));
}

/** `QStartNoAckMode`: OK (still acked), then no acks either way. */
export function startNoAck(ctx: Context): void {
  ctx.state.noAckRequested = true;
  ctx.reply.text("OK");
}

const xmlCache = new WeakMap<object, Uint8Array>();

/** `qXfer:features:read:target.xml:offset,length`. */
export function xferFeatures(ctx: Context, args: string, body: string): void {
  const read = parseXferRead("features:" + args);
  if (read === "malformed") {
    ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
    return;
  }
  if (read.annex !== "target.xml") {
    ctx.error(ErrorCode.malformed, `No feature document ${read.annex}`);
    return;
  }
  const description = ctx.target.description();
  let xml = xmlCache.get(description);
  if (xml === undefined) {
    xml = new TextEncoder().encode(targetXml(description));
    xmlCache.set(description, xml);
  }
  const { prefix, chunk } = xferSlice(xml, read, Math.floor((ctx.packetSize - 1) / 2));
  ctx.reply.text(prefix).binary(chunk);
}

/** `qfThreadInfo` / `qsThreadInfo`: as many ids per reply as fit, `l` at the end. */
export function threadInfo(ctx: Context, _args: string, body: string): void {
  if (body.startsWith("qf")) ctx.state.threadCursor = 0;
  const threads = ctx.target.threads();
  if (ctx.state.threadCursor >= threads.length) {
    ctx.reply.text("l");
    return;
  }
  const ids: string[] = [];
  let length = 1;
  while (ctx.state.threadCursor < threads.length) {
    const id = hexInt(threads[ctx.state.threadCursor]!.id);
    if (length + id.length + 1 > ctx.packetSize - 8 && ids.length > 0) break;
    ids.push(id);
    length += id.length + 1;
    ctx.state.threadCursor++;
  }
  ctx.reply.text("m" + ids.join(","));
}

/** `qC`: the current thread. */
export function currentThread(ctx: Context): void {
  ctx.reply.text(`QC${hexInt(ctx.thread())}`);
}

/** `qThreadExtraInfo,id`: the target's description of the thread, hex-encoded. */
export function threadExtraInfo(ctx: Context, args: string): void {
  const id = parseThreadId(args);
  const thread = ctx.target.threads().find((t) => t.id === id);
  if (thread === undefined) {
    ctx.error(ErrorCode.noThread, `No thread ${args}`);
    return;
  }
  ctx.reply.text(textToHex(thread.extra));
}

/** `Hg id` / `Hc id`: select the thread for registers and memory (`c` runs every thread). */
export function setThread(ctx: Context, args: string, body: string): void {
  const op = args[0];
  const id = parseThreadId(args.slice(1));
  if ((op !== "g" && op !== "c") || id === undefined) {
    ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
    return;
  }
  if (id !== ANY_THREAD && id !== ALL_THREADS && !ctx.target.threads().some((t) => t.id === id)) {
    ctx.error(ErrorCode.noThread, `No thread ${args.slice(1)}`);
    return;
  }
  if (op === "g") ctx.state.selectedThread = id;
  else ctx.state.continueThread = id;
  ctx.reply.text("OK");
}

/** `T id`: is the thread alive. */
export function threadAlive(ctx: Context, args: string): void {
  const id = parseThreadId(args);
  if (ctx.target.threads().some((t) => t.id === id)) ctx.reply.text("OK");
  else ctx.error(ErrorCode.noThread, `No thread ${args}`);
}

/** `?`: why the target stopped (the attach stop, or the last one). */
export async function haltReason(ctx: Context): Promise<Outcome> {
  if (ctx.running) {
    // All-stop: nothing stopped yet (the stop reply is still to come); say so, change nothing.
    ctx.error(ErrorCode.unsupported, "The target is running: no stop to report yet");
    return;
  }
  const stop = ctx.state.lastStop;
  if (stop.kind === "exited") await ctx.console(`${stop.message}\n`);
  ctx.reply.text(ctx.stopReply(stop));
  return stop.kind === "exited" ? "close" : undefined;
}

/**
 * `qRcmd,hex` (gdb's `monitor`): output as `O` packets, then OK. Without a monitor on the
 * target the empty reply tells gdb the packet is unsupported.
 */
export async function monitor(ctx: Context, args: string): Promise<Outcome> {
  const command = hexToText(args);
  const session = command === undefined ? undefined : breakpointsMonitor(ctx, command);
  if (session !== undefined) {
    await ctx.console(session);
    ctx.reply.text("OK");
    return;
  }
  if (ctx.target.monitor === undefined) return;
  if (command === undefined) {
    ctx.error(ErrorCode.malformed, "Malformed qRcmd: the command is not hex");
    return;
  }
  const output = await ctx.target.monitor(command, ctx.thread(), (text) => ctx.console(text));
  if (output !== "") await ctx.console(output);
  ctx.reply.text("OK");
}

/** A fixed reply, for the queries whose answer never changes here. */
export function fixed(reply: string): (ctx: Context) => void {
  return (ctx) => {
    ctx.reply.text(reply);
  };
}
