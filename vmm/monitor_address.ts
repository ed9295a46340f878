/**
 * The address argument of `monitor pagewalk`: a number, or a register of the selected vCPU.
 * gdb and lldb pass monitor text through unexpanded, so `$pc` arrives as the two words `$pc`;
 * this reads the register itself.
 *
 * @module
 */
import { TargetError, TargetGoneError } from "../rsp/target.ts";
import { registerByName } from "./registers.ts";
import type { VmTarget } from "./target.ts";

/** gdb's generic register names, as `$pc`, `$sp` and `$fp` are spelled in gdb. */
const ALIASES: Record<string, string> = { pc: "rip", sp: "rsp", fp: "rbp" };

/** An address, and how the user wrote it when it came from a register (`rip`). */
export interface MonitorAddress {
  value: bigint;
  register?: string;
}

/** Parses a number: hexadecimal, with or without 0x (underscores allowed). */
export function parseAddress(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const t = text.toLowerCase().replace(/_/g, "");
  if (/^0x[0-9a-f]+$/.test(t)) return BigInt(t);
  if (/^[0-9a-f]+$/.test(t)) return BigInt(`0x${t}`);
  return undefined;
}

/**
 * Resolves `text` on `thread`'s vCPU: `$name` or a bare register name reads that register,
 * anything else must be a number. Returns a one-line reason when it cannot.
 *
 * @example
 * monitorAddress(target, 1, "$pc"); // { value: 0xffffffff801000c5n, register: "rip" }
 */
export function monitorAddress(
  target: VmTarget,
  thread: number,
  text: string,
): MonitorAddress | string {
  const word = text.toLowerCase();
  const name = word.startsWith("$") ? word.slice(1) : word;
  const def = registerByName(ALIASES[name] ?? name);
  if (def === undefined) {
    if (word.startsWith("$")) return `no register named ${text} (try $pc, $sp, $rip, $cr3)`;
    const value = parseAddress(text);
    return value === undefined
      ? `'${text}' is neither a hexadecimal address nor a register name`
      : { value };
  }
  let bytes: Uint8Array | undefined;
  try {
    bytes = target.readRegister(thread, def.regnum);
  } catch (error) {
    if (error instanceof TargetGoneError || !(error instanceof TargetError)) throw error;
    return `cannot read ${def.name}: ${error.message}`;
  }
  if (bytes === undefined) return `${def.name} is unavailable on this vCPU`;
  let value = 0n;
  for (let i = Math.min(bytes.length, 8) - 1; i >= 0; i--) {
    value = (value << 8n) | BigInt(bytes[i]!);
  }
  return { value, register: def.name };
}
