/**
 * One open VM over libvmmapi: the {@link VmHandle} vmm/ uses, for either API generation.
 *
 * Every wrapper does the same four steps: fill a reused out-buffer, call, turn -1 into a
 * {@link VmmError} carrying errno and the call's name, decode with a DataView. The hot paths
 * (registers, translation) allocate nothing.
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import {
  type GuestPaging,
  type MemoryRange,
  type SegDesc,
  type Topology,
  VM_REG_NAMES,
  type VmHandle,
} from "../vmm/vmmapi.ts";
import { lastError } from "./errno.ts";
import type { LoadedLibrary } from "./library.ts";
import type { RamImage } from "../emu/emulator.ts";
import { MappedRange } from "./memory.ts";
import { PrivateRam } from "./ram_image.ts";
import { mapDeviceMemory } from "./devmem.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** cpuset_t on amd64 userland: 4 * MAXCPU bits. */
export const CPUSET_BYTES = 512;
const SEG_DESC_BYTES = 16;
const GUEST_PAGING_BYTES = 24;
const MEMSEG_NAME_BYTES = 256;
/** vmm_stat's description of VMEXIT_USERSPACE (sys/amd64/vmm/vmm.c), found by name. */
export const VMEXIT_USERSPACE_DESC = "number of vm exits handled in userspace";
/** enum x2apic_state: X2APIC_DISABLED 0, X2APIC_ENABLED 1. */
const X2APIC_ENABLED = 1;

/** Decodes a cpuset_t (an array of little-endian longs) into sorted CPU numbers. */
export function decodeCpuset(bytes: Uint8Array): number[] {
  const cpus: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0) continue;
    for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) cpus.push(i * 8 + bit);
  }
  return cpus;
}

const regName = (reg: number) => VM_REG_NAMES[reg] ?? `reg ${reg}`;
const hex = (value: bigint) => `0x${value.toString(16)}`;

/**
 * vm_open through `lib`; throws VmmError (ENOENT when there is no such VM). `writable` maps
 * guest RAM read-write (`--allow-write`).
 */
export function openVm(lib: LoadedLibrary, name: string, writable = false): VmHandle {
  const cname = new TextEncoder().encode(`${name}\0`);
  const ctx = lib.symbols.vm_open(cname);
  if (ctx === null) throw lastError("vm_open", JSON.stringify(name));
  log.debug("opened VM {name} (libvmmapi API {generation})", {
    name,
    generation: lib.generation,
  });
  return new FfiVm(lib, ctx, name, writable);
}

class FfiVm implements VmHandle {
  readonly name: string;
  #lib: LoadedLibrary;
  #ctx: Deno.PointerObject | null;
  #vcpus = new Map<number, Deno.PointerObject>();
  #mapped: MappedRange[] | undefined;
  #ranges: MemoryRange[] | undefined;
  /** VMEXIT_USERSPACE's index in vm_get_stats' buffer; null when absent (looked up once). */
  #userspaceStat: number | null | undefined;
  readonly #writable: boolean;

  // Reused out-buffers.
  #u64 = new BigUint64Array(1);
  #u64b = new BigUint64Array(1);
  #i32 = new Int32Array(1);
  #cpuset = new Uint8Array(CPUSET_BYTES);
  #seg = new Uint8Array(SEG_DESC_BYTES);
  #segView = new DataView(this.#seg.buffer);
  #paging = new Uint8Array(GUEST_PAGING_BYTES);
  #pagingView = new DataView(this.#paging.buffer);

  constructor(lib: LoadedLibrary, ctx: Deno.PointerObject, name: string, writable: boolean) {
    this.#lib = lib;
    this.#ctx = ctx;
    this.name = name;
    this.#writable = writable;
  }

  get #c(): Deno.PointerObject {
    if (this.#ctx === null) throw new Error(`VM ${this.name} is closed`);
    return this.#ctx;
  }

  /** 0200: the struct vcpu * for `vcpu` (vm_vcpu_open is a malloc, done once per vCPU). */
  #vcpu(vcpu: number): Deno.PointerObject {
    let handle = this.#vcpus.get(vcpu);
    if (handle === undefined) {
      if (this.#lib.generation !== "0200") throw new Error("vm_vcpu_open is 0200 only");
      const opened = this.#lib.symbols.vm_vcpu_open(this.#c, vcpu);
      if (opened === null) throw lastError("vm_vcpu_open", `vCPU ${vcpu}`);
      handle = opened;
      this.#vcpus.set(vcpu, handle);
    }
    return handle;
  }

  #cpus(func: "vm_active_cpus" | "vm_debug_cpus" | "vm_suspended_cpus"): number[] {
    this.#cpuset.fill(0);
    if (this.#lib.symbols[func](this.#c, this.#cpuset) !== 0) throw lastError(func, "");
    return decodeCpuset(this.#cpuset);
  }

  activeCpus(): number[] {
    return this.#cpus("vm_active_cpus");
  }

  debugCpus(): number[] {
    return this.#cpus("vm_debug_cpus");
  }

  suspendCpu(vcpu: number): void {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_suspend_cpu(this.#vcpu(vcpu))
      : l.symbols.vm_suspend_cpu(this.#c, vcpu);
    if (rc !== 0) throw lastError("vm_suspend_cpu", `vCPU ${vcpu}`);
  }

  resumeCpu(vcpu: number): void {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_resume_cpu(this.#vcpu(vcpu))
      : l.symbols.vm_resume_cpu(this.#c, vcpu);
    if (rc !== 0) throw lastError("vm_resume_cpu", `vCPU ${vcpu}`);
  }

  getRegister(vcpu: number, reg: number): bigint {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_get_register(this.#vcpu(vcpu), reg, this.#u64)
      : l.symbols.vm_get_register(this.#c, vcpu, reg, this.#u64);
    if (rc !== 0) throw lastError("vm_get_register", `vCPU ${vcpu}, ${regName(reg)}`);
    return this.#u64[0]!;
  }

  getRegisterSet(vcpu: number, regs: Int32Array, values: BigUint64Array): void {
    if (values.length < regs.length) throw new RangeError("values shorter than regs");
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_get_register_set(this.#vcpu(vcpu), regs.length, regs, values)
      : l.symbols.vm_get_register_set(this.#c, vcpu, regs.length, regs, values);
    if (rc !== 0) {
      throw lastError("vm_get_register_set", `vCPU ${vcpu}, ${regs.length} registers`);
    }
  }

  getSegDesc(vcpu: number, reg: number): SegDesc {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_get_seg_desc(this.#vcpu(vcpu), reg, this.#seg)
      : l.symbols.vm_get_seg_desc(this.#c, vcpu, reg, this.#seg);
    if (rc !== 0) throw lastError("vm_get_seg_desc", `vCPU ${vcpu}, ${regName(reg)}`);
    const v = this.#segView;
    return {
      base: v.getBigUint64(0, true),
      limit: v.getUint32(8, true),
      access: v.getUint32(12, true),
    };
  }

  gla2gpa(vcpu: number, paging: GuestPaging, gla: bigint, prot: number): bigint | undefined {
    const p = this.#pagingView;
    p.setBigUint64(0, paging.cr3, true);
    p.setInt32(8, paging.cpl, true);
    p.setInt32(12, paging.cpuMode, true);
    p.setInt32(16, paging.pagingMode, true);
    this.#i32[0] = 0;
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_gla2gpa_nofault(
        this.#vcpu(vcpu),
        this.#paging,
        gla,
        prot,
        this.#u64,
        this.#i32,
      )
      : l.symbols.vm_gla2gpa_nofault(this.#c, vcpu, this.#paging, gla, prot, this.#u64, this.#i32);
    if (rc !== 0) throw lastError("vm_gla2gpa_nofault", `vCPU ${vcpu}, ${hex(gla)}`);
    return this.#i32[0] === 0 ? this.#u64[0]! : undefined;
  }

  memoryRanges(): MemoryRange[] {
    // Not cached while empty: a VM caught early (`w` mode) may not have its memory yet.
    if (this.#ranges === undefined || this.#ranges.length === 0) this.#ranges = this.#scanRanges();
    return this.#ranges.map((range) => ({ ...range }));
  }

  #scanRanges(): MemoryRange[] {
    const gpa = new BigUint64Array(1);
    const segid = new Int32Array(1);
    const segoff = new BigInt64Array(1);
    const len = new BigUint64Array(1);
    const prot = new Int32Array(1);
    const flags = new Int32Array(1);
    const ranges: MemoryRange[] = [];
    const fd = this.#lib.symbols.vm_get_device_fd(this.#c);
    const mapped: MappedRange[] = [];
    for (;;) {
      if (this.#lib.symbols.vm_mmap_getnext(this.#c, gpa, segid, segoff, len, prot, flags) !== 0) {
        const error = lastError("vm_mmap_getnext", hex(gpa[0]!));
        if (error.code === "ENOENT") break; // no range at or above gpa: the end
        throw error;
      }
      const range: MemoryRange = {
        gpa: gpa[0]!,
        length: len[0]!,
        segid: segid[0]!,
        segoff: segoff[0]!,
        prot: prot[0]!,
        flags: flags[0]!,
        segmentName: this.#segmentName(segid[0]!),
        readable: false,
      };
      // System memory maps through the VM's device fd at offset = GPA; a named device-memory
      // segment (boot ROM, framebuffer) only through its own node, at the segment offset
      // (/dev/vmm/NAME would map hole or nothing there).
      try {
        mapped.push(
          range.segmentName === ""
            ? MappedRange.map(fd, range.gpa, range.length, { writable: this.#writable })
            : mapDeviceMemory(this.name, range),
        );
        range.readable = true;
      } catch (error) {
        log.debug("cannot map {segment} at {gpa}: {error}", {
          segment: range.segmentName || "sysmem",
          gpa: hex(range.gpa),
          error: (error as Error).message,
        });
      }
      ranges.push(range);
      gpa[0] = range.gpa + range.length;
    }
    for (const range of this.#mapped ?? []) range.unmap();
    this.#mapped = mapped;
    return ranges;
  }

  #segmentName(segid: number): string {
    const len = new BigUint64Array(1);
    const name = new Uint8Array(MEMSEG_NAME_BYTES);
    if (this.#lib.symbols.vm_get_memseg(this.#c, segid, len, name, BigInt(name.length)) !== 0) {
      return `segment ${segid}`;
    }
    const end = name.indexOf(0);
    return new TextDecoder().decode(name.subarray(0, end < 0 ? name.length : end));
  }

  readRam(gpa: bigint, into: Uint8Array): void {
    this.#rangeOf(gpa, into.length).read(gpa, into);
  }

  viewRam(gpa: bigint, length: number): Uint8Array {
    return this.#rangeOf(gpa, length).view(gpa, length);
  }

  writeRam(gpa: bigint, from: Uint8Array): void {
    this.#rangeOf(gpa, from.length).write(gpa, from);
  }

  #rangeOf(gpa: bigint, length: number): MappedRange {
    if (this.#mapped === undefined) this.memoryRanges();
    const range = this.#mapped!.find((r) => r.contains(gpa, length));
    if (range === undefined) {
      throw new RangeError(`${hex(gpa)} (+${length}) is not inside one mapped RAM range`);
    }
    return range;
  }

  setRegister(vcpu: number, reg: number, value: bigint): void {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_set_register(this.#vcpu(vcpu), reg, value)
      : l.symbols.vm_set_register(this.#c, vcpu, reg, value);
    if (rc !== 0) {
      throw lastError("vm_set_register", `vCPU ${vcpu}, ${regName(reg)}, ${hex(value)}`);
    }
  }

  ramImage(): RamImage {
    const ram = this.memoryRanges().filter((r) => r.segmentName === "" && r.readable);
    const fd = this.#lib.symbols.vm_get_device_fd(this.#c);
    return PrivateRam.map(fd, ram.map(({ gpa, length }) => ({ gpa, length })));
  }

  readKernemu(vcpu: number, gpa: bigint, size: 1 | 2 | 4 | 8): bigint {
    this.#u64b[0] = 0n;
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_readwrite_kernemu_device(this.#vcpu(vcpu), gpa, false, size, this.#u64b)
      : l.symbols.vm_readwrite_kernemu_device(this.#c, vcpu, gpa, false, size, this.#u64b);
    if (rc !== 0) {
      throw lastError("vm_readwrite_kernemu_device", `vCPU ${vcpu}, ${hex(gpa)}, ${size} bytes`);
    }
    const mask = size === 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n;
    return this.#u64b[0]! & mask;
  }

  getCapability(vcpu: number, cap: number): number {
    const l = this.#lib;
    const rc = l.generation === "0200"
      ? l.symbols.vm_get_capability(this.#vcpu(vcpu), cap, this.#i32)
      : l.symbols.vm_get_capability(this.#c, vcpu, cap, this.#i32);
    if (rc !== 0) throw lastError("vm_get_capability", `vCPU ${vcpu}, capability ${cap}`);
    return this.#i32[0]!;
  }

  topology(): Topology {
    const out = [new Uint16Array(1), new Uint16Array(1), new Uint16Array(1), new Uint16Array(1)];
    const [sockets, cores, threads, maxcpus] = out as [
      Uint16Array,
      Uint16Array,
      Uint16Array,
      Uint16Array,
    ];
    if (this.#lib.symbols.vm_get_topology(this.#c, sockets, cores, threads, maxcpus) !== 0) {
      throw lastError("vm_get_topology", "");
    }
    return { sockets: sockets[0]!, cores: cores[0]!, threads: threads[0]!, maxcpus: maxcpus[0]! };
  }

  userspaceExits(vcpu: number): bigint | undefined {
    const index = this.#userspaceStatIndex(vcpu);
    if (index === null) return undefined;
    const stats = this.#stats(vcpu);
    if (stats === null) throw lastError("vm_get_stats", `vCPU ${vcpu}`);
    return new Deno.UnsafePointerView(stats).getBigUint64(index * 8);
  }

  /** vm_get_stats' buffer (valid until the next call on this thread), or null with errno. */
  #stats(vcpu: number): Deno.PointerValue {
    const l = this.#lib;
    const entries = this.#i32;
    if (l.generation === "0200") {
      return l.symbols.vm_get_stats === null
        ? null
        : l.symbols.vm_get_stats(this.#vcpu(vcpu), null, entries);
    }
    return l.symbols.vm_get_stats === null
      ? null
      : l.symbols.vm_get_stats(this.#c, vcpu, null, entries);
  }

  /** Finds VMEXIT_USERSPACE by its description: its index depends on module load order. */
  #userspaceStatIndex(vcpu: number): number | null {
    if (this.#userspaceStat !== undefined) return this.#userspaceStat;
    this.#userspaceStat = null;
    const describe = this.#lib.symbols.vm_get_stat_desc;
    if (describe === null || this.#stats(vcpu) === null) return null;
    const entries = this.#i32[0]!;
    for (let index = 0; index < entries; index++) {
      const text = describe(this.#c, index);
      if (text === null) break;
      if (Deno.UnsafePointerView.getCString(text) === VMEXIT_USERSPACE_DESC) {
        this.#userspaceStat = index;
        break;
      }
    }
    log.debug("VMEXIT_USERSPACE counter: {found}", {
      found: this.#userspaceStat === null ? "not offered" : `index ${this.#userspaceStat}`,
    });
    return this.#userspaceStat;
  }

  x2apicAllowed(vcpu: number): boolean | undefined {
    const l = this.#lib;
    let rc: number;
    if (l.generation === "0200") {
      if (l.symbols.vm_get_x2apic_state === null) return undefined;
      rc = l.symbols.vm_get_x2apic_state(this.#vcpu(vcpu), this.#i32);
    } else {
      if (l.symbols.vm_get_x2apic_state === null) return undefined;
      rc = l.symbols.vm_get_x2apic_state(this.#c, vcpu, this.#i32);
    }
    if (rc !== 0) throw lastError("vm_get_x2apic_state", `vCPU ${vcpu}`);
    return this.#i32[0] === X2APIC_ENABLED;
  }

  close(): void {
    if (this.#ctx === null) return;
    for (const range of this.#mapped ?? []) range.unmap();
    this.#mapped = undefined;
    if (this.#lib.generation === "0200") {
      for (const handle of this.#vcpus.values()) this.#lib.symbols.vm_vcpu_close(handle);
    }
    this.#vcpus.clear();
    this.#lib.symbols.vm_close(this.#ctx);
    this.#ctx = null;
    log.debug("closed VM {name}", { name: this.name });
  }
}
