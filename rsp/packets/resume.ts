/**
 * Resume packets: `c [addr]`, `C sig[;addr]`, `s [addr]`, `S sig[;addr]` and
 * `vCont;action[:thread]...`, reduced to what an all-stop server does with them.
 *
 * @module
 */
import { parseHex64, parseHexInt } from "../hex.ts";
import type { StepRange } from "../target.ts";
import { ALL_THREADS, ANY_THREAD, parseThreadId, type ThreadId } from "./thread_id.ts";

/**
 * The effect of a resume packet in all-stop mode. `address` is a "resume at" address;
 * `signal` a signal the client asks to deliver (absent or 0: none).
 * - continue: `threads` run (gdb's scheduler-locking: `vCont;c:2`); undefined means all;
 * - step: `thread` executes one instruction (undefined: the Hc thread); the others stay held
 *   (in all-stop mode they would only run alongside it); with `range` (`vCont;rSTART,END`) it
 *   goes on while its pc stays in [START, END);
 * - stop: `vCont;t`.
 */
export type ResumeCommand =
  | { kind: "continue"; address?: bigint; signal?: number; threads?: number[] }
  | { kind: "step"; address?: bigint; signal?: number; thread?: number; range?: StepRange }
  | { kind: "stop" };

/** Parses a `c`, `C`, `s` or `S` body, letter included. */
export function parseResume(body: string): ResumeCommand | "malformed" {
  const letter = body[0];
  const args = body.slice(1);
  const kind = letter === "c" || letter === "C" ? "continue" : "step";
  let addressText = args;
  let signal = 0;
  if (letter === "C" || letter === "S") {
    const [signalText, address] = args.split(";");
    const parsed = parseHexInt(signalText ?? "");
    if (parsed === undefined) return "malformed";
    signal = parsed;
    addressText = address ?? "";
  }
  const command: { kind: "continue" | "step"; address?: bigint; signal?: number } = { kind };
  if (signal !== 0) command.signal = signal;
  if (addressText === "") return command;
  const address = parseHex64(addressText);
  if (address === undefined) return "malformed";
  command.address = address;
  return command;
}

/**
 * Parses `vCont;...` (after `vCont`). A step of any thread makes it a step of that thread;
 * otherwise the continue actions name the threads that run (all of them when one has no
 * thread id or -1); all-`t` is a stop.
 */
export function parseVCont(args: string): ResumeCommand | "malformed" {
  if (!args.startsWith(";")) return "malformed";
  let step: { thread: ThreadId; signal: number; range?: StepRange } | undefined;
  let all = false;
  let signal = 0;
  const threads: number[] = [];
  let sawContinue = false;
  for (const action of args.slice(1).split(";")) {
    const [verb = "", threadText] = action.split(":");
    let thread: ThreadId = ALL_THREADS;
    if (threadText !== undefined) {
      const parsed = parseThreadId(threadText);
      if (parsed === undefined) return "malformed";
      thread = parsed;
    }
    const letter = verb[0];
    let actionSignal = 0;
    let range: StepRange | undefined;
    if (letter === "C" || letter === "S") {
      const parsed = parseHexInt(verb.slice(1));
      if (parsed === undefined) return "malformed";
      actionSignal = parsed;
    } else if (letter === "r") {
      range = parseRange(verb.slice(1));
      if (range === undefined) return "malformed";
    } else if (verb.length !== 1) {
      return "malformed";
    }
    if (letter === "c" || letter === "C") {
      sawContinue = true;
      if (thread === ALL_THREADS || thread === ANY_THREAD) all = true;
      else if (!threads.includes(thread)) threads.push(thread);
      signal ||= actionSignal;
    } else if (letter === "s" || letter === "S" || letter === "r") {
      step ??= range === undefined
        ? { thread, signal: actionSignal }
        : { thread, signal: 0, range };
    } else if (letter !== "t") {
      return "malformed";
    }
  }
  if (step !== undefined) {
    const command: ResumeCommand & { kind: "step" } = { kind: "step" };
    if (step.thread > 0) command.thread = step.thread;
    if (step.signal !== 0) command.signal = step.signal;
    if (step.range !== undefined) command.range = step.range;
    return command;
  }
  if (!sawContinue) return { kind: "stop" };
  const command: ResumeCommand & { kind: "continue" } = { kind: "continue" };
  if (!all) command.threads = threads;
  if (signal !== 0) command.signal = signal;
  return command;
}

/** `START,END` of `vCont;r`: hex addresses, START <= END. */
function parseRange(text: string): StepRange | undefined {
  const [startText, endText, extra] = text.split(",");
  if (extra !== undefined) return undefined;
  const start = parseHex64(startText ?? "");
  const end = parseHex64(endText ?? "");
  if (start === undefined || end === undefined || end < start) return undefined;
  return { start, end };
}

/**
 * The `vCont?` reply: c and C always (gdb uses vCont only if both are there), s/S if stepping
 * works, r if the target steps ranges.
 */
export function formatVContActions(canStep: boolean, canRange = false): string {
  if (!canStep) return "vCont;c;C;t";
  return canRange ? "vCont;c;C;s;S;t;r" : "vCont;c;C;s;S;t";
}
