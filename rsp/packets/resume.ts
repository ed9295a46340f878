/**
 * Resume packets: `c [addr]`, `C sig[;addr]`, `s [addr]`, `S sig[;addr]` and
 * `vCont;action[:thread]...`, reduced to what an all-stop server does with them.
 *
 * @module
 */
import { parseHex64, parseHexInt } from "../hex.ts";
import { parseThreadId } from "./thread_id.ts";

/**
 * The effect of a resume packet in all-stop mode: every thread continues, or a step was
 * asked for (of some thread), or a stop (vCont;t). `address` is a "resume at" address.
 */
export type ResumeCommand =
  | { kind: "continue"; address?: bigint }
  | { kind: "step"; address?: bigint }
  | { kind: "stop" };

/** Parses a `c`, `C`, `s` or `S` body, letter included. */
export function parseResume(body: string): ResumeCommand | "malformed" {
  const letter = body[0];
  const args = body.slice(1);
  const kind = letter === "c" || letter === "C" ? "continue" : "step";
  let addressText = args;
  if (letter === "C" || letter === "S") {
    const [signal, address] = args.split(";");
    if (parseHexInt(signal ?? "") === undefined) return "malformed";
    addressText = address ?? "";
  }
  if (addressText === "") return { kind };
  const address = parseHex64(addressText);
  return address === undefined ? "malformed" : { kind, address };
}

/**
 * Parses `vCont;...` (after `vCont`). In all-stop mode a step of any thread is a step (the
 * others would only run alongside it); otherwise any continue is a continue; all-`t` is a stop.
 */
export function parseVCont(args: string): ResumeCommand | "malformed" {
  if (!args.startsWith(";")) return "malformed";
  let sawContinue = false;
  let sawStep = false;
  for (const action of args.slice(1).split(";")) {
    const [verb = "", thread] = action.split(":");
    if (thread !== undefined && parseThreadId(thread) === undefined) return "malformed";
    const letter = verb[0];
    if (letter === "c" || letter === "C") sawContinue = true;
    else if (letter === "s" || letter === "S" || letter === "r") sawStep = true;
    else if (letter !== "t") return "malformed";
    if ((letter === "C" || letter === "S") && parseHexInt(verb.slice(1)) === undefined) {
      return "malformed";
    }
  }
  if (sawStep) return { kind: "step" };
  return sawContinue ? { kind: "continue" } : { kind: "stop" };
}

/** The `vCont?` reply: c and C always (gdb uses vCont only if both are there), s/S if stepping works. */
export function formatVContActions(canStep: boolean): string {
  return canStep ? "vCont;c;C;s;S;t" : "vCont;c;C;t";
}
