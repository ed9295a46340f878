/**
 * A vCPU's state in and out of a Unicorn engine: registers by the engine's register ids (64-bit
 * ones in a UC_MODE_64 engine, 32-bit ones otherwise), EFER and KERNEL_GS_BASE as MSRs, GDTR,
 * IDTR, LDTR and TR as `uc_x86_mmr`, segment registers loaded with the vCPU's hidden parts.
 *
 * @module
 */
import type { CpuState, Scalar, Segment, SegmentName } from "../emu/emulator.ts";
import { EMULATED_SCALARS as SCALARS, EMULATED_SEGMENTS as SEGMENTS } from "../vmm/registers.ts";
import {
  UC_PROT_READ,
  UcErr,
  UcX86Reg,
  UcX86Reg32,
  type UnicornSymbols,
} from "./unicorn_symbols.ts";

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/**
 * The control state, loaded before everything else (segment loads walk the GDT through paging)
 * and read back on its own (EFER is an MSR); the other scalars go by their engine ids below.
 */
const CONTROL: readonly Scalar[] = ["cr0", "cr3", "cr4", "efer"];

/** x86.h names a register as gdb does, upper-cased (UC_X86_REG_RAX), but for RFLAGS. */
function ucId(name: string): number {
  const key = name === "eflags" ? "RFLAGS" : name.toUpperCase();
  const id = (UcX86Reg as Record<string, number>)[key];
  if (id === undefined) throw new Error(`UcX86Reg lacks UC_X86_REG_${key} (for ${name})`);
  return id;
}

/** In a UC_MODE_32 engine: the low halves (EAX…EIP, EFLAGS); R8-R15 do not exist there. */
function ucId32(name: string): number | undefined {
  if (/^r\d+$/.test(name)) return undefined;
  const low = /^r(ax|bx|cx|dx|si|di|bp|sp|ip)$/.test(name) ? `e${name.slice(1)}` : name;
  const id = (UcX86Reg32 as Record<string, number>)[low.toUpperCase()];
  return id ?? ucId(name);
}

/** The engine id of every scalar of the register table but the control state. */
function engineIds(id: (name: string) => number | undefined): Partial<Record<Scalar, number>> {
  const ids: Partial<Record<Scalar, number>> = {};
  for (const name of SCALARS) {
    const engineId = CONTROL.includes(name) ? undefined : id(name);
    if (engineId !== undefined) ids[name] = engineId;
  }
  return ids;
}

const SCALAR_REGS = engineIds(ucId);
const SCALAR_REGS_32 = engineIds(ucId32);
const SEGMENT_REGS = Object.fromEntries(SEGMENTS.map((name) => [name, ucId(name)])) as Record<
  SegmentName,
  number
>;

const MSR_EFER = 0xc000_0080;
const MSR_KERNEL_GS_BASE = 0xc000_0102;

/** One engine's registers. */
export class UnicornState {
  readonly wide: boolean;
  /** The engine's RIP (or EIP) register id. */
  readonly pc: number;
  #uc: UnicornSymbols;
  #engine: Deno.PointerObject;
  #scalarRegs: Partial<Record<Scalar, number>>;
  #u64 = new BigUint64Array(1);
  #mmr = new Uint8Array(24);
  #mmrView = new DataView(this.#mmr.buffer);
  #msr = new Uint8Array(16);
  #msrView = new DataView(this.#msr.buffer);

  constructor(uc: UnicornSymbols, engine: Deno.PointerObject, wide: boolean) {
    this.#uc = uc;
    this.#engine = engine;
    this.wide = wide;
    this.#scalarRegs = wide ? SCALAR_REGS : SCALAR_REGS_32;
    this.pc = wide ? UcX86Reg.RIP : UcX86Reg32.EIP;
  }

  /** The count register of a REP instruction (RCX, or ECX in a 32-bit engine). */
  counter(): bigint {
    return this.reg(this.wide ? UcX86Reg.RCX : UcX86Reg32.ECX);
  }

  /** Virtual to guest-physical through the engine's MMU (only while no run is under way). */
  translate(address: bigint): bigint | undefined {
    const err = this.#uc.uc_vmem_translate(this.#engine, address, UC_PROT_READ, this.#u64);
    return err === UcErr.OK ? this.#u64[0]! : undefined;
  }

  reg(id: number): bigint {
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, id, this.#u64), "uc_reg_read");
    return this.#u64[0]!;
  }

  setReg(id: number, value: bigint): void {
    this.#u64[0] = value;
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, id, this.#u64), `uc_reg_write(${id})`);
  }

  #writeMsr(msr: number, value: bigint): void {
    this.#msrView.setUint32(0, msr, true);
    this.#msrView.setBigUint64(8, value, true);
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, UcX86Reg.MSR, this.#msr), "wrmsr");
  }

  #readMsr(msr: number): bigint {
    this.#msrView.setUint32(0, msr, true);
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, UcX86Reg.MSR, this.#msr), "rdmsr");
    return this.#msrView.getBigUint64(8, true);
  }

  #writeMmr(id: number, selector: number, base: bigint, limit: number, access: number): void {
    const v = this.#mmrView;
    v.setUint16(0, selector, true);
    v.setBigUint64(8, base, true);
    v.setUint32(16, limit, true);
    v.setUint32(20, qemuFlags(access), true);
    check(this.#uc, this.#uc.uc_reg_write(this.#engine, id, this.#mmr), `uc_reg_write(${id})`);
  }

  #readMmr(id: number): { selector: number; base: bigint; limit: number } {
    check(this.#uc, this.#uc.uc_reg_read(this.#engine, id, this.#mmr), `uc_reg_read(${id})`);
    const v = this.#mmrView;
    return {
      selector: v.getUint16(0, true),
      base: v.getBigUint64(8, true),
      limit: v.getUint32(16, true),
    };
  }

  /** Puts `state` into the engine: control state first, so segment loads see the GDT. */
  load(state: CpuState): void {
    const s = state.scalars;
    this.setReg(UcX86Reg.CR4, s.cr4);
    this.#writeMsr(MSR_EFER, s.efer);
    this.setReg(UcX86Reg.CR3, s.cr3);
    this.setReg(UcX86Reg.CR0, s.cr0);
    this.#writeMmr(UcX86Reg.GDTR, 0, state.gdtr.base, state.gdtr.limit, 0);
    this.#writeMmr(UcX86Reg.IDTR, 0, state.idtr.base, state.idtr.limit, 0);
    for (const name of ["ldtr", "tr"] as const) {
      const seg = state.segments[name];
      this.#writeMmr(SEGMENT_REGS[name], seg.selector, seg.base, seg.limit, seg.access);
    }
    for (const name of ["cs", "ss", "ds", "es", "fs", "gs"] as const) {
      this.#loadSegment(name, state.segments[name], state.gdtr.base);
    }
    if (this.wide) {
      this.setReg(UcX86Reg.FS_BASE, state.segments.fs.base);
      this.setReg(UcX86Reg.GS_BASE, state.segments.gs.base);
    }
    if (state.kernelGsBase !== undefined) this.#writeMsr(MSR_KERNEL_GS_BASE, state.kernelGsBase);
    for (const name of SCALARS) {
      const id = this.#scalarRegs[name];
      if (id !== undefined) this.setReg(id, s[name]);
    }
  }

  /**
   * Loads a segment register with the vCPU's hidden part, not whatever its GDT slot says now
   * (they differ after a new LGDT until the next reload, as in Linux's PVH entry): Unicorn loads
   * segments only from descriptors, so the slot in the private RAM image briefly holds a
   * descriptor built from the hidden part, and gets its own bytes back right after.
   */
  #loadSegment(name: SegmentName, seg: Segment, gdtBase: bigint): void {
    const index = seg.selector & ~7;
    const slot = (seg.selector & 4) === 0 && index !== 0
      ? this.translate(gdtBase + BigInt(index))
      : undefined;
    const saved = new Uint8Array(8);
    const patched = slot !== undefined &&
      this.#uc.uc_mem_read(this.#engine, slot, saved, 8n) === UcErr.OK &&
      this.#uc.uc_mem_write(this.#engine, slot, descriptor(seg), 8n) === UcErr.OK;
    this.#u64[0] = BigInt(seg.selector);
    let err = this.#uc.uc_reg_write(this.#engine, SEGMENT_REGS[name], this.#u64);
    if (patched) this.#uc.uc_mem_write(this.#engine, slot, saved, 8n);
    if (err !== UcErr.OK && patched) {
      // The hidden part makes no loadable descriptor (say, unusable): the slot's own, then.
      err = this.#uc.uc_reg_write(this.#engine, SEGMENT_REGS[name], this.#u64);
    }
    if (err !== UcErr.OK) {
      throw new Error(
        `loading ${name.toUpperCase()} (selector ${hex(seg.selector)}) into the emulator ` +
          `failed: ${strerror(this.#uc, err)}`,
      );
    }
  }

  /** The engine's state after a run; segments keep their hidden parts (loads are refused). */
  save(before: CpuState): CpuState {
    const scalars = { ...before.scalars };
    for (const name of SCALARS) {
      const id = this.#scalarRegs[name];
      if (id === undefined) continue;
      const value = this.reg(id);
      scalars[name] = this.wide || id === SCALAR_REGS[name]
        ? value
        : (before.scalars[name] & ~0xffff_ffffn) | (value & 0xffff_ffffn);
    }
    scalars.cr0 = this.reg(UcX86Reg.CR0);
    scalars.cr3 = this.reg(UcX86Reg.CR3);
    scalars.cr4 = this.reg(UcX86Reg.CR4);
    scalars.efer = this.#readMsr(MSR_EFER);
    const segments = { ...before.segments } as Record<SegmentName, Segment>;
    if (this.wide) {
      segments.fs = { ...segments.fs, base: this.reg(UcX86Reg.FS_BASE) };
      segments.gs = { ...segments.gs, base: this.reg(UcX86Reg.GS_BASE) };
    }
    const gdtr = this.#readMmr(UcX86Reg.GDTR);
    const idtr = this.#readMmr(UcX86Reg.IDTR);
    const state: CpuState = {
      scalars,
      segments,
      gdtr: { base: gdtr.base, limit: gdtr.limit },
      idtr: { base: idtr.base, limit: idtr.limit },
    };
    if (before.kernelGsBase !== undefined) {
      state.kernelGsBase = this.#readMsr(MSR_KERNEL_GS_BASE);
    }
    return state;
  }
}

/** A GDT descriptor (8 bytes) for a segment's base, limit and VMX access rights. */
function descriptor(seg: Segment): Uint8Array {
  const granular = (seg.access & 0x8000) !== 0;
  const limit = granular ? seg.limit >>> 12 : seg.limit;
  const base = Number(seg.base & 0xffff_ffffn);
  const low = (limit & 0xffff) | ((base & 0xffff) << 16);
  const high = ((base >>> 16) & 0xff) | ((seg.access & 0xff) << 8) | (limit & 0xf_0000) |
    (((seg.access >> 12) & 0xf) << 20) | (base & 0xff00_0000);
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, low >>> 0, true);
  view.setUint32(4, high >>> 0, true);
  return bytes;
}

/** VMX access rights as QEMU's segment-cache flags (the descriptor's high dword, bits 8-23). */
function qemuFlags(access: number): number {
  return ((access & 0xff) << 8) | (((access >> 12) & 0xf) << 20);
}

export function strerror(uc: UnicornSymbols, err: number): string {
  const p = uc.uc_strerror(err);
  return p === null ? `error ${err}` : `${Deno.UnsafePointerView.getCString(p)} (${err})`;
}

export function check(uc: UnicornSymbols, err: number, what: string): void {
  if (err !== UcErr.OK) throw new Error(`${what} failed: ${strerror(uc, err)}`);
}
