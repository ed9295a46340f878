/**
 * Registers and memory: `g`, `p`, `m`, `x`, and the refused writes `G`, `P`, `M`, `X`.
 *
 * @module
 */
import type { Context } from "../context.ts";
import { ErrorCode } from "../packets/error.ts";
import { clampRead, parseMemoryRead, parseMemoryWrite } from "../packets/memory.ts";
import { parseReadAll, parseReadOne } from "../packets/registers.ts";

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

/** `M`, `X`: refused with the target's reason. */
export function writeMemory(ctx: Context, args: string, body: string): void {
  if (parseMemoryWrite(args) === "malformed") return malformed(ctx, body);
  refuse(ctx, "write-memory", "Writing memory is not supported");
}

/** `G`, `P`: refused with the target's reason. */
export function writeRegisters(ctx: Context): void {
  refuse(ctx, "write-register", "Writing registers is not supported");
}

function refuse(ctx: Context, capability: "write-memory" | "write-register", fallback: string) {
  ctx.error(ErrorCode.unsupported, ctx.target.unsupported(capability) ?? fallback, {
    gdbShowsText: true,
  });
}
