/**
 * Emulated execution of a held vCPU: its state in from libvmmapi, instructions executed by the
 * emulator room (emu/) over a private image of guest RAM, and, when the run ends cleanly at an
 * instruction boundary, the registers that changed and the bytes written committed to the vCPU
 * and guest RAM through the guest write paths. Nothing of the guest changes during a run; a run
 * that fails commits nothing.
 *
 * @module
 */
import type {
  AddressRange,
  CpuState,
  EmuBreakpoint,
  Emulator,
  RamImage,
  RunResult,
  Scalar,
  SegmentName,
} from "../emu/emulator.ts";
import {
  EMULATED_SCALARS as SCALARS,
  EMULATED_SEGMENTS as SEGMENTS,
  encodeRegister,
  registerByName,
  REGISTERS,
} from "./registers.ts";
import { type VmHandle, VmmError, VmReg } from "./vmmapi.ts";
import type { GuestWriter } from "./write/mod.ts";

/** The emulator library as vmm/ sees it (ffi/ implements it over libunicorn). */
export interface EmulatorFactory {
  readonly version: string;
  open(ram: RamImage): Emulator;
}

/** Where a run's results go: the guest write paths (vm_set_register, guest RAM). */
export interface CommitPaths {
  /** vm_set_register; RIP also moves vmm's nextrip, so the vCPU resumes there. */
  setRegister(vcpu: number, reg: number, value: bigint): void;
  /** Writes guest RAM at a guest-physical address. */
  writePhysical(gpa: bigint, bytes: Uint8Array): void;
}

/**
 * The commit paths over the one guest write path (vmm/write/): registers of the register
 * table through its writeRegister, memory by guest-physical address through its writeMemory.
 * Segment bases (FS_BASE, GS_BASE, KGS_BASE, FreeBSD 15) have no row of their own there and go
 * to vm_set_register directly.
 */
export function commitPaths(vm: VmHandle, writer: GuestWriter): CommitPaths {
  return {
    setRegister(vcpu, reg, value) {
      const def = REGISTERS.find((d) => d.source.kind === "vmm" && d.source.id === reg);
      if (def !== undefined) {
        writer.writeRegister(vcpu, def, encodeRegister(def.bitsize, value));
      } else if (vm.setRegister !== undefined) {
        vm.setRegister(vcpu, reg, value);
      } else {
        throw new Error(`register ${reg} cannot be written: the VM was opened read-only`);
      }
    },
    writePhysical(gpa, bytes) {
      writer.writeMemory(0, undefined, gpa, bytes);
    },
  };
}

/** The vm_reg_name of each register the emulator's state carries, from the register table. */
function vmmIds<N extends string>(names: readonly N[]): Record<N, number> {
  return Object.fromEntries(names.map((name) => {
    const source = registerByName(name)?.source;
    if (source?.kind !== "vmm") throw new Error(`${name} has no vm_reg_name in the table`);
    return [name, source.id];
  })) as Record<N, number>;
}

/** vm_reg_name of each scalar of the emulator's state. */
export const SCALAR_IDS: Record<Scalar, number> = vmmIds(SCALARS);
const SEGMENT_IDS: Record<SegmentName, number> = vmmIds(SEGMENTS);

/**
 * The held vCPU's state: one vm_get_register_set for the scalars and selectors, one
 * vm_get_seg_desc per segment and table; KERNEL_GS_BASE where the kernel has it (FreeBSD 15).
 */
export function captureState(vm: VmHandle, vcpu: number): CpuState {
  const ids = Int32Array.from([
    ...SCALARS.map((name) => SCALAR_IDS[name]),
    ...SEGMENTS.map((name) => SEGMENT_IDS[name]),
  ]);
  const values = new BigUint64Array(ids.length);
  vm.getRegisterSet(vcpu, ids, values);
  const scalars = Object.fromEntries(SCALARS.map((name, i) => [name, values[i]!])) as Record<
    Scalar,
    bigint
  >;
  const segments = Object.fromEntries(SEGMENTS.map((name, i) => {
    const desc = vm.getSegDesc(vcpu, SEGMENT_IDS[name]);
    return [name, { selector: Number(values[SCALARS.length + i]! & 0xffffn), ...desc }];
  })) as CpuState["segments"];
  const gdtr = vm.getSegDesc(vcpu, VmReg.GDTR);
  const idtr = vm.getSegDesc(vcpu, VmReg.IDTR);
  const state: CpuState = {
    scalars,
    segments,
    gdtr: { base: gdtr.base, limit: gdtr.limit },
    idtr: { base: idtr.base, limit: idtr.limit },
  };
  try {
    state.kernelGsBase = vm.getRegister(vcpu, VmReg.KGS_BASE);
  } catch (error) {
    // Before FreeBSD 15 there is no such register: SWAPGS is then refused.
    if (!(error instanceof VmmError) || error.code !== "EINVAL") throw error;
  }
  return state;
}

/**
 * Commits a run: the bytes written, then every register that changed (RIP last, so the vCPU
 * resumes after everything else is in place). Returns the names of what was written.
 */
export function commitRun(
  writer: CommitPaths,
  vcpu: number,
  before: CpuState,
  result: RunResult,
): string[] {
  const written: string[] = [];
  for (const write of result.writes) {
    writer.writePhysical(write.gpa, write.bytes);
    written.push(`${write.bytes.length} bytes at 0x${write.gpa.toString(16)}`);
  }
  const after = result.state;
  const changed: string[] = SCALARS.filter((name) => name !== "rip")
    .filter((name) => after.scalars[name] !== before.scalars[name]);
  for (const name of changed as Scalar[]) {
    writer.setRegister(vcpu, SCALAR_IDS[name], after.scalars[name]);
  }
  for (const [name, id] of [["fs", VmReg.FS_BASE], ["gs", VmReg.GS_BASE]] as const) {
    if (after.segments[name].base !== before.segments[name].base) {
      writer.setRegister(vcpu, id, after.segments[name].base);
      changed.push(`${name}_base`);
    }
  }
  if (
    after.kernelGsBase !== undefined && after.kernelGsBase !== before.kernelGsBase
  ) {
    writer.setRegister(vcpu, VmReg.KGS_BASE, after.kernelGsBase);
  }
  if (after.scalars.rip !== before.scalars.rip) {
    writer.setRegister(vcpu, VmReg.RIP, after.scalars.rip);
    changed.push("rip");
  }
  return [...written, ...changed];
}

/** What the last emulated run did, for `monitor emulation`. */
export interface RunSummary {
  vcpu: number;
  executed: number;
  stop: string;
  milliseconds: number;
}

/** Emulated runs on one VM: one RAM image and emulator while the VM stays held. */
export class Emulation {
  #vm: VmHandle;
  #factory: EmulatorFactory;
  #writer: CommitPaths;
  #image: RamImage | undefined;
  #emulator: Emulator | undefined;
  last: RunSummary | undefined;

  constructor(vm: VmHandle, factory: EmulatorFactory, writer: CommitPaths) {
    this.#vm = vm;
    this.#factory = factory;
    this.#writer = writer;
  }

  /**
   * Runs vCPU `vcpu` (held) for up to `count` instructions, honouring `breakpoints`, and
   * commits the result. Throws for failures of the emulator itself (nothing committed then).
   */
  async run(
    vcpu: number,
    count: number,
    options: {
      breakpoints?: readonly EmuBreakpoint[];
      maxMs?: number;
      interrupted?: () => boolean;
      range?: AddressRange;
    } = {},
  ): Promise<RunResult> {
    const started = performance.now();
    const before = captureState(this.#vm, vcpu);
    this.#image ??= this.#vm.ramImage();
    this.#emulator ??= this.#factory.open(this.#image);
    let result: RunResult;
    try {
      result = await this.#emulator.run({ state: before, count, ...options });
    } catch (error) {
      this.forget(); // the image may hold a half-run's writes
      throw error;
    }
    if (result.executed > 0) commitRun(this.#writer, vcpu, before, result);
    this.last = {
      vcpu,
      executed: result.executed,
      stop: describeStop(result),
      milliseconds: performance.now() - started,
    };
    return result;
  }

  /** Drops the RAM image: some vCPU ran natively, so guest RAM may have changed. */
  forget(): void {
    this.#emulator?.close();
    this.#image?.close();
    this.#emulator = undefined;
    this.#image = undefined;
  }
}

/** A stop in words. */
export function describeStop(result: RunResult): string {
  const stop = result.stop;
  switch (stop.kind) {
    case "count":
      return "the requested instructions were executed";
    case "range":
      return "the next instruction is outside the stepping range";
    case "budget":
      return `the ${stop.what === "time" ? "wall-time" : "instruction"} budget ran out`;
    case "breakpoint":
      return `breakpoint at 0x${stop.breakpoint.address.toString(16)}`;
    case "watch":
      return `watchpoint on 0x${stop.breakpoint.address.toString(16)} (${stop.breakpoint.kind})`;
    case "refused":
      return `refused: ${stop.message}`;
  }
}
