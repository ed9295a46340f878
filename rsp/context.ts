/**
 * What a packet handler sees of its session: the target, the per-connection state, the reply
 * under construction and the few session actions (console output, run control) it may use.
 *
 * @module
 */
import type { PacketWriter } from "./framing.ts";
import type { ErrorStyle } from "./packets/error.ts";
import type { ClientFeatures } from "./packets/supported.ts";
import type { ThreadId } from "./packets/thread_id.ts";
import type { Breakpoint, DebugTarget, RegisterInfo, StepRange, StopEvent } from "./target.ts";

/** Per-connection protocol state, changed by handshake packets. */
export interface SessionState {
  /** Set by QStartNoAckMode; the session stops acking after sending the OK. */
  noAckRequested: boolean;
  clientFeatures: ClientFeatures;
  /** The dialect of error replies for packets that accept only what the client announced. */
  errorStyle: ErrorStyle;
  /** The client is gdb: `E.text` replies are fine for the packets gdb 13 prints whole. */
  gdbClient: boolean;
  /** lldb's QListThreadsInStopReply: add `threads:` to stop replies. */
  listThreadsInStop: boolean;
  /** lldb before 17 probed `x0,0`: `x` replies are raw binary without the `b` prefix. */
  rawBinaryReads: boolean;
  /** The Hg thread: 0 or -1 mean "the thread of the last stop". */
  selectedThread: ThreadId;
  /** The Hc thread: the one gdb means to step (0 or -1: any). */
  continueThread: ThreadId;
  lastStop: StopEvent;
  /** Where qsThreadInfo continues. */
  threadCursor: number;
  /**
   * Breakpoints and watchpoints the client inserted that the target cannot honour, by packet
   * (`Z0,addr,kind`), with why: accepted so that the client goes on to resume, where the
   * refusal can be shown in words (gdb 13 and lldb 14 drop the text of an error reply to `Z`).
   */
  unarmed: Map<string, { breakpoint: Breakpoint; reason: string }>;
  /**
   * `monitor breakpoints ignore`: continues run past unarmed breakpoints (with a note) instead
   * of being refused, for breakpoints a user cannot delete (gdb's internal ones, such as the
   * one Linux's `lx-symbols` sets).
   */
  ignoreUnarmed: boolean;
}

/** What a handler asks the session to do after it returns. */
export type Outcome =
  /** Send the reply written into `ctx.reply` (empty means "unsupported"). */
  | undefined
  /** No reply now: the target runs and a stop reply follows later. */
  | "deferred"
  /** Send the reply, then end the session. */
  | "close"
  /** End the session without a reply. */
  | "close-silently";

export interface ErrorOptions {
  /** gdb 13 prints this packet's error reply whole, so `E.text` may go to gdb. */
  gdbShowsText?: boolean;
}

export interface Context {
  readonly target: DebugTarget;
  readonly state: SessionState;
  /** What the server advertised as PacketSize. */
  readonly packetSize: number;
  /** Registers in regnum order, and those of the `g` packet. */
  readonly registers: ReadonlyMap<number, RegisterInfo>;
  readonly gRegisters: readonly RegisterInfo[];
  /** The reply under construction (already begun). */
  readonly reply: PacketWriter;
  /** Writes an error reply in this client's dialect. */
  error(code: number, message: string, options?: ErrorOptions): void;
  /** Sends text to the debugger's console (`O` packets) before the reply. */
  console(text: string): Promise<void>;
  /** The thread a packet acts on: `explicit` if given, else the selected one. */
  thread(explicit?: ThreadId): number;
  /** The stop reply for `event` with this client's options (and lldb's stop description). */
  stopReply(event: StopEvent, description?: string): string;
  /** Records `event` as the current stop (what `?` reports) and forgets the Hg thread. */
  noteStop(event: StopEvent): void;
  /** Resumes `threads` (all when undefined); the session reports the next stop. */
  resume(threads?: readonly number[]): Promise<void>;
  /**
   * Starts a step of `thread` (a range step with `range`) through the target's `step`; the
   * session reports the stop.
   */
  step(thread: number, range?: StepRange): void;
  /** Whether a Ctrl-C came while nothing ran, just before this resume packet (and forgets it). */
  takeInterrupt(): boolean;
  /** Stops the (stopped) target again, e.g. for `vCont;t`, and returns the stop event. */
  stop(signal: number): Promise<StopEvent>;
  /** While running: stops the target; the session sends the stop reply with `signal`. */
  interrupt(signal: number): void;
  /** Detaches from the target (at most once per session). */
  detach(): Promise<void>;
  /** Whether the target is running (after `c`, before its stop reply). */
  readonly running: boolean;
}

/** A packet handler: `args` is the body after the matched prefix, `body` the whole packet. */
export type Handler = (
  ctx: Context,
  args: string,
  body: string,
) => Outcome | void | Promise<Outcome | void>;
