/**
 * A fake {@link VmHandle} for unit tests of vmm/'s pure logic: registers, memory, paging and
 * the debug set live in plain maps, and every call is logged.
 */
import type { RamImage } from "../../emu/emulator.ts";
import { PrivateRam } from "../../ffi/ram_image.ts";
import {
  type GuestPaging,
  type MemoryRange,
  type SegDesc,
  type Topology,
  type VmHandle,
  VmmError,
} from "../../vmm/vmmapi.ts";

const ERRNO: Record<string, number> = { ENXIO: 6, EINVAL: 22, ENOENT: 2, EBADF: 9 };

export function vmmError(func: string, code: string): VmmError {
  return new VmmError(func, "", ERRNO[code] ?? 0, code, "fake");
}

/** A RAM range of system memory at `gpa` holding `bytes` (shared, not copied). */
export function ramEntry(
  gpa: bigint,
  bytes: Uint8Array,
): { range: MemoryRange; bytes: Uint8Array } {
  return {
    range: {
      gpa,
      length: BigInt(bytes.length),
      segid: 0,
      segoff: gpa,
      prot: 7,
      flags: 0,
      segmentName: "",
      readable: true,
    },
    bytes,
  };
}

export interface FakeOptions {
  active?: number[];
  debug?: number[];
  /** Whether FreeBSD 15's FS_BASE … TPR numbers work. */
  extended?: boolean;
  ram?: { gpa: bigint; size: number }[];
}

export class FakeVm implements VmHandle {
  readonly name = "fake";
  active: Set<number>;
  debug: Set<number>;
  extended: boolean;
  gone = false;
  closed = false;
  calls: string[] = [];
  regs = new Map<string, bigint>();
  segs = new Map<string, SegDesc>();
  kernemu = new Map<bigint, bigint>();
  /** page-aligned gva -> page-aligned gpa */
  pages = new Map<bigint, bigint>();
  ram: { range: MemoryRange; bytes: Uint8Array }[];
  /** Registers whose reads fail with EINVAL (beyond the extended ones). */
  rejected = new Set<number>();

  constructor(options: FakeOptions = {}) {
    this.active = new Set(options.active ?? [0]);
    this.debug = new Set(options.debug ?? []);
    this.extended = options.extended ?? false;
    this.ram = (options.ram ?? [{ gpa: 0n, size: 0x10000 }]).map(({ gpa, size }) =>
      ramEntry(gpa, new Uint8Array(size))
    );
  }

  setReg(vcpu: number, reg: number, value: bigint): void {
    this.regs.set(`${vcpu}:${reg}`, value);
  }

  #check(func: string): void {
    this.calls.push(func);
    if (this.gone) throw vmmError(func, "ENXIO");
  }

  #reg(vcpu: number, reg: number): bigint {
    if ((!this.extended && reg >= 45) || this.rejected.has(reg)) {
      throw vmmError("vm_get_register", "EINVAL");
    }
    return this.regs.get(`${vcpu}:${reg}`) ?? 0n;
  }

  activeCpus(): number[] {
    this.#check("vm_active_cpus");
    return [...this.active].sort((a, b) => a - b);
  }
  debugCpus(): number[] {
    this.#check("vm_debug_cpus");
    return [...this.debug].sort((a, b) => a - b);
  }
  suspendCpu(vcpu: number): void {
    this.#check(`vm_suspend_cpu ${vcpu}`);
    if (!this.active.has(vcpu)) throw vmmError("vm_suspend_cpu", "EINVAL");
    this.debug.add(vcpu);
  }
  resumeCpu(vcpu: number): void {
    this.#check(`vm_resume_cpu ${vcpu}`);
    this.debug.delete(vcpu);
  }
  getRegister(vcpu: number, reg: number): bigint {
    this.#check("vm_get_register");
    return this.#reg(vcpu, reg);
  }
  getRegisterSet(vcpu: number, regs: Int32Array, values: BigUint64Array): void {
    this.#check("vm_get_register_set");
    regs.forEach((reg, i) => values[i] = this.#reg(vcpu, reg));
  }
  getSegDesc(vcpu: number, reg: number): SegDesc {
    this.#check("vm_get_seg_desc");
    return this.segs.get(`${vcpu}:${reg}`) ?? { base: 0n, limit: 0, access: 0 };
  }
  gla2gpa(_vcpu: number, _paging: GuestPaging, gla: bigint, _prot: number): bigint | undefined {
    this.#check("vm_gla2gpa_nofault");
    const page = this.pages.get(gla & ~0xfffn);
    return page === undefined ? undefined : page | (gla & 0xfffn);
  }
  memoryRanges(): MemoryRange[] {
    this.#check("vm_mmap_getnext");
    return this.ram.map((r) => ({ ...r.range }));
  }
  readRam(gpa: bigint, into: Uint8Array): void {
    this.#check("readRam");
    into.set(this.#ramAt(gpa, into.length));
  }
  viewRam(gpa: bigint, length: number): Uint8Array {
    this.#check("viewRam");
    return this.#ramAt(gpa, length);
  }
  #ramAt(gpa: bigint, length: number): Uint8Array {
    const r = this.ram.find((r) =>
      gpa >= r.range.gpa && gpa + BigInt(length) <= r.range.gpa + r.range.length
    );
    if (r === undefined) throw new RangeError(`not RAM: ${gpa}`);
    const off = Number(gpa - r.range.gpa);
    return r.bytes.subarray(off, off + length);
  }
  /** The fake RAM in a temporary file, mapped privately as the emulator's image. */
  ramImage(): RamImage {
    this.#check("ramImage");
    const file = Deno.makeTempFileSync({ prefix: "fake-ram-" });
    const offsets: bigint[] = [];
    let offset = 0n;
    using out = Deno.openSync(file, { write: true });
    for (const r of this.ram) {
      offsets.push(offset);
      out.writeSync(r.bytes);
      offset += r.range.length;
    }
    try {
      return PrivateRam.fromFile(file, this.ram.map((r) => r.range), offsets);
    } finally {
      Deno.removeSync(file);
    }
  }
  writeRam(gpa: bigint, from: Uint8Array): void {
    this.#check(`writeRam ${gpa.toString(16)}+${from.length}`);
    const r = this.ram.find((r) =>
      gpa >= r.range.gpa && gpa + BigInt(from.length) <= r.range.gpa + r.range.length
    );
    if (r === undefined) throw new RangeError(`not RAM: ${gpa}`);
    r.bytes.set(from, Number(gpa - r.range.gpa));
  }
  setRegister(vcpu: number, reg: number, value: bigint): void {
    this.#check(`vm_set_register ${vcpu} ${reg}`);
    if (this.rejected.has(reg)) throw vmmError("vm_set_register", "EINVAL");
    this.setReg(vcpu, reg, value);
  }
  readKernemu(_vcpu: number, gpa: bigint, size: 1 | 2 | 4 | 8): bigint {
    this.#check("vm_readwrite_kernemu_device");
    if (gpa % BigInt(size) !== 0n) throw vmmError("vm_readwrite_kernemu_device", "EINVAL");
    const value = this.kernemu.get(gpa);
    if (value === undefined) throw vmmError("vm_readwrite_kernemu_device", "EINVAL");
    return value;
  }
  getCapability(_vcpu: number, _cap: number): number {
    this.#check("vm_get_capability");
    return 0;
  }
  topology(): Topology {
    this.#check("vm_get_topology");
    return { sockets: 1, cores: this.active.size, threads: 1, maxcpus: 16 };
  }
  close(): void {
    this.closed = true;
  }

  /** Writes little-endian bytes into fake RAM. */
  poke(gpa: bigint, bytes: Uint8Array | number[]): void {
    const r = this.ram.find((r) => gpa >= r.range.gpa && gpa < r.range.gpa + r.range.length)!;
    r.bytes.set(bytes, Number(gpa - r.range.gpa));
  }

  poke64(gpa: bigint, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.poke(gpa, b);
  }

  poke32(gpa: bigint, value: bigint): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, Number(value), true);
    this.poke(gpa, b);
  }
}
