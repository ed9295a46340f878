/**
 * Breakpoint and watchpoint packets: `Z type,addr,kind` inserts, `z type,addr,kind` removes.
 * Types: 0 software, 1 hardware, 2 write, 3 read, 4 access watchpoint.
 *
 * @module
 */
import { parseHex64, parseHexInt } from "../hex.ts";
import type { Breakpoint, BreakpointKind } from "../target.ts";

export interface BreakpointCommand {
  insert: boolean;
  type: number;
  address: bigint;
  kind: number;
  breakpoint: Breakpoint;
}

const KINDS: readonly BreakpointKind[] = ["sw", "hw", "write", "read", "access"];

/** Parses a whole `Z`/`z` body, letter included; conditions after `;` are ignored. */
export function parseBreakpoint(body: string): BreakpointCommand | "malformed" {
  const insert = body.startsWith("Z");
  const fields = body.slice(1).split(";")[0]!.split(",");
  if (fields.length !== 3) return "malformed";
  const type = parseHexInt(fields[0]!);
  const address = parseHex64(fields[1]!);
  const kind = parseHexInt(fields[2]!);
  if (type === undefined || type > 4 || address === undefined || kind === undefined) {
    return "malformed";
  }
  const breakpoint = { kind: KINDS[type]!, address, length: kind };
  return { insert, type, address, kind, breakpoint };
}

/** In words, e.g. "the breakpoint at 0xffffffff801000ca", "a write watchpoint on 4 bytes at …". */
export function describeBreakpoint(bp: Breakpoint): string {
  const at = `0x${bp.address.toString(16)}`;
  switch (bp.kind) {
    case "sw":
      return `the breakpoint at ${at}`;
    case "hw":
      return `the hardware breakpoint at ${at}`;
    default:
      return `the ${bp.kind} watchpoint on ${bp.length} bytes at ${at}`;
  }
}
