/**
 * Registers and memory: `g`, `p`, `m`, `x`, and the writes `G`, `P`, `M`, `X` (refused unless
 * the target writes: `--allow-write`).
 *
 * @module
 */
import { getLogger } from "../../log/mod.ts";
import type { Context } from "../context.ts";
import { ErrorCode } from "../packets/error.ts";
import { clampRead, parseMemoryRead, parseMemoryWriteData } from "../packets/memory.ts";
import { parseReadAll, parseReadOne, parseWriteAll, parseWriteOne } from "../packets/registers.ts";

const log = getLogger(["bhyve-gdbstub", "rsp"]);

const X_DIGITS = "x".repeat(256);

function malformed(ctx: Context, body: string): void {
  ctx.error(ErrorCode.malformed, `Malformed packet: ${body.slice(0, 40)}`);
}

/** `g`: every register of the `g` set in regnum order; unreadable ones as `xx` digits. */
export function readAllRegisters(ctx: Context, args: string, body: string): void {
  const parsed = parseReadAll(args);
  if (parsed === "malformed") return malformed(ctx, body);
  const values = ctx.target.readRegisters(ctx.thread(parsed.thread));
  for (const reg of ctx.gRegisters) {
    const value = values[reg.regnum];
    const size = reg.bitsize / 8;
    if (value !== undefined && value.length === size) ctx.reply.hex(value);
    else ctx.reply.text(X_DIGITS.slice(0, size * 2).padEnd(size * 2, "x"));
  }
}

/** `p n`: one register; an error with the reason when it is unknown or unreadable. */
export function readOneRegister(ctx: Context, args: string, body: string): void {
  const parsed = parseReadOne(args);
  if (parsed === "malformed") return malformed(ctx, body);
  const reg = ctx.registers.get(parsed.regnum);
  if (reg === undefined) {
    ctx.error(ErrorCode.malformed, `No register number ${parsed.regnum}`, { gdbShowsText: true });
    return;
  }
  const value = ctx.target.readRegister(ctx.thread(parsed.thread), parsed.regnum);
  if (value === undefined) {
    ctx.error(ErrorCode.unsupported, `Register ${reg.name} cannot be read on this target`, {
      gdbShowsText: true,
    });
    return;
  }
  ctx.reply.hex(value);
}

/**
 * `m addr,len` (hex) and `x addr,len` (binary). A read that stops at an unmapped page
 * returns the bytes before it; the length is clamped to what one reply can carry.
 */
export function readMemory(ctx: Context, args: string, body: string): void {
  const binary = body.startsWith("x");
  const parsed = parseMemoryRead(args);
  if (parsed === "malformed") return malformed(ctx, body);
  if (binary && parsed.length === 0n) {
    // lldb before 17 probes `x0,0`, wants OK, then expects replies without gdb's `b` prefix.
    ctx.state.rawBinaryReads = true;
    ctx.reply.text("OK");
    return;
  }
  const budget = binary ? ctx.packetSize - 1 : Math.floor(ctx.packetSize / 2);
  const count = clampRead(parsed, budget);
  if (count === "overflow") {
    ctx.error(
      ErrorCode.fault,
      `Cannot read memory: 0x${parsed.address.toString(16)} + 0x${
        parsed.length.toString(16)
      } goes past the end of the 64-bit address space`,
    );
    return;
  }
  if (count === 0) return;
  const bytes = ctx.target.readMemory(ctx.thread(), parsed.address, count);
  if (!binary) ctx.reply.hexRunLength(bytes);
  else if (ctx.state.rawBinaryReads) ctx.reply.binary(bytes);
  else ctx.reply.text("b").binary(bytes);
}

/**
 * `M`, `X`: through the target when it writes (`--allow-write`); otherwise refused with its
 * reason. gdb 13 shows the text of a `P`/`G` error but not of an `M`/`X` one ("Cannot access
 * memory"); lldb shows both.
 */
export function writeMemory(ctx: Context, args: string, body: string): void {
  const parsed = parseMemoryWriteData(args, body.startsWith("X"));
  if (parsed === "malformed") return malformed(ctx, body);
  const write = writable(ctx, "write-memory", ctx.target.writeMemory);
  if (write === undefined) return;
  // `X addr,0:` is gdb's probe for X support: it writes nothing.
  if (parsed.data.length > 0) write.call(ctx.target, ctx.thread(), parsed.address, parsed.data);
  ctx.reply.text("OK");
}

/** `P n=value`: one register, through the target when it writes. */
export function writeOneRegister(ctx: Context, args: string, body: string): void {
  const parsed = parseWriteOne(args);
  if (parsed === "malformed") return malformed(ctx, body);
  const write = writable(ctx, "write-register", ctx.target.writeRegister);
  if (write === undefined) return;
  const reg = ctx.registers.get(parsed.regnum);
  if (reg === undefined) {
    ctx.error(ErrorCode.malformed, `No register number ${parsed.regnum}`, { gdbShowsText: true });
    return;
  }
  write.call(ctx.target, ctx.thread(parsed.thread), reg.regnum, parsed.value);
  ctx.reply.text("OK");
}

/**
 * `G`: the `g` set, in its layout. Only registers whose bytes differ from what they hold now
 * are written (gdb sends them all back after changing one), and `xx` means "leave it".
 */
export function writeAllRegisters(ctx: Context, args: string, body: string): void {
  const parsed = parseWriteAll(args);
  if (parsed === "malformed") return malformed(ctx, body);
  const write = writable(ctx, "write-register", ctx.target.writeRegister);
  if (write === undefined) return;
  const thread = ctx.thread(parsed.thread);
  const current = ctx.target.readRegisters(thread);
  let at = 0;
  for (const reg of ctx.gRegisters) {
    const size = reg.bitsize / 8;
    const sent = parsed.bytes.slice(at, at + size);
    at += size;
    if (sent.length < size || sent.some((b) => b === undefined)) continue;
    const value = Uint8Array.from(sent as number[]);
    const now = current[reg.regnum];
    if (now !== undefined && now.every((b, i) => b === value[i])) continue;
    write.call(ctx.target, thread, reg.regnum, value);
  }
  ctx.reply.text("OK");
}

/** The target's write method, or undefined after replying with why it cannot write. */
function writable<F>(
  ctx: Context,
  capability: "write-memory" | "write-register",
  method: F | undefined,
): F | undefined {
  const reason = ctx.target.unsupported(capability);
  if (reason === undefined && method !== undefined) return method;
  const fallback = capability === "write-memory"
    ? "Writing memory is not supported"
    : "Writing registers is not supported";
  // gdb 13 and lldb 14 show no text for a refused memory write (and lldb none for a register
  // write): say it where the user started us too.
  log.warn("refused a write: {reason}", { reason: reason ?? fallback });
  ctx.error(ErrorCode.unsupported, reason ?? fallback, { gdbShowsText: true });
  return undefined;
}
