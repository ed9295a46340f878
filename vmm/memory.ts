/**
 * Guest memory as a debugger reads it: by guest-virtual address through one vCPU's paging
 * state, or by guest-physical address, routed by the guest-physical map.
 *
 * RAM is read through the mapped device fd; the in-kernel devices (local APIC, I/O APIC,
 * HPET) through vm_readwrite_kernemu_device, in aligned 4-byte accesses; everything else is
 * MMIO that bhyve emulates in its own process, or nothing, and is refused with a message
 * that says so. Virtual reads go page by page: translate once, clip at the page end, copy.
 * A "page" is the guest's own page: the kernel translates its first byte, and a walk of the
 * guest's page tables tells how large it is, so a 2 MiB mapping costs one translation, not 512.
 *
 * @module
 */
import { TargetError } from "../rsp/target.ts";
import { walk } from "./page_walk.ts";
import { inX2apicMode, X2APIC_NOTE } from "./x2apic.ts";
import {
  type GuestPaging,
  isGone,
  type MemoryRange,
  PagingMode,
  type VmHandle,
  VmmError,
} from "./vmmapi.ts";

/** EFAULT, the code every refused read carries. */
export const EFAULT = 14;
/** PROT_READ, for vm_gla2gpa_nofault. */
const PROT_READ = 1;
const PAGE = 4096n;
/** The span of one page-directory entry in every paging mode (2 MiB, or 4 MiB in 32-bit). */
const DIRECTORY_SPAN = 0x20_0000n;

/** An in-kernel device whose registers kernemu reads. */
export interface KernelDevice {
  name: string;
  gpa: bigint;
  length: bigint;
}

/** The devices vmm.ko emulates itself (sys/amd64/vmm: vlapic, vioapic, vhpet). */
const LOCAL_APIC: KernelDevice = { name: "local APIC", gpa: 0xfee0_0000n, length: 0x1000n };

export const KERNEL_DEVICES: readonly KernelDevice[] = [
  LOCAL_APIC,
  { name: "I/O APIC", gpa: 0xfec0_0000n, length: 0x1000n },
  { name: "HPET", gpa: 0xfed0_0000n, length: 0x400n },
];

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Where a guest-physical address leads. */
export type Route =
  | { kind: "ram"; range: MemoryRange }
  | { kind: "device"; device: KernelDevice }
  | { kind: "refused"; reason: string };

/** Reads guest memory of one VM. */
/** A translated guest page: `size` bytes at guest-virtual `base` are at guest-physical `gpa`. */
interface CachedPage {
  base: bigint;
  gpa: bigint;
  size: bigint;
}

/** Pages remembered per vCPU before the cache starts over. */
const CACHED_PAGES = 4096;
const PAGE_SIZES = [PAGE, 0x20_0000n, 0x4000_0000n] as const;

export class GuestMemory {
  #vm: VmHandle;
  #ranges: MemoryRange[] | undefined;
  /** Translations per vCPU, valid only while the caller says the guest cannot change them. */
  #pages = new Map<number, { cr3: bigint; pages: Map<bigint, CachedPage> }>();

  constructor(vm: VmHandle) {
    this.#vm = vm;
  }

  /** The guest-physical map (vm_mmap_getnext), read once. */
  ranges(): MemoryRange[] {
    if (this.#ranges === undefined || this.#ranges.length === 0) {
      // Not cached while empty: a VM caught early (`w` mode) may not have its memory yet.
      this.#ranges = this.#vm.memoryRanges().sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
    }
    return this.#ranges;
  }

  /** Where `gpa` leads: RAM, an in-kernel device, or a refusal with its reason. */
  route(gpa: bigint): Route {
    const range = this.ranges().find((r) => gpa >= r.gpa && gpa < r.gpa + r.length);
    if (range !== undefined) {
      if (range.readable) return { kind: "ram", range };
      return {
        kind: "refused",
        reason: `${hex(gpa)} is in memory segment "${range.segmentName}", which cannot be ` +
          "mapped from outside bhyve",
      };
    }
    const device = KERNEL_DEVICES.find((d) => gpa >= d.gpa && gpa < d.gpa + d.length);
    if (device !== undefined) return { kind: "device", device };
    return {
      kind: "refused",
      reason: `${hex(gpa)} is not guest RAM: it is MMIO emulated inside the bhyve process ` +
        "(or unbacked), which cannot be read from outside it",
    };
  }

  /**
   * Up to `length` bytes at guest-physical `gpa`; `vcpu` picks whose local APIC kernemu
   * reads. Stops early where the route changes to something unreadable; throws TargetError
   * (EFAULT) if nothing could be read.
   */
  readPhysical(vcpu: number, gpa: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    const done = this.#readPhysicalInto(vcpu, gpa, out);
    return done === length ? out : out.subarray(0, done);
  }

  #readPhysicalInto(vcpu: number, gpa: bigint, out: Uint8Array): number {
    let done = 0;
    while (done < out.length) {
      const at = gpa + BigInt(done);
      const route = this.route(at);
      let chunk: number;
      try {
        chunk = this.#readRoute(vcpu, at, route, out.subarray(done));
      } catch (error) {
        if (done > 0 && error instanceof TargetError) break;
        throw error;
      }
      done += chunk;
    }
    return done;
  }

  /** Reads what `route` allows at `gpa` into `into`, returning the byte count (> 0). */
  #readRoute(vcpu: number, gpa: bigint, route: Route, into: Uint8Array): number {
    switch (route.kind) {
      case "refused":
        throw new TargetError(`Cannot read guest memory: ${route.reason}`, EFAULT);
      case "ram": {
        const end = route.range.gpa + route.range.length;
        const n = Number(bigMin(BigInt(into.length), end - gpa));
        this.#vm.readRam(gpa, into.subarray(0, n));
        return n;
      }
      case "device":
        return this.#readDevice(vcpu, gpa, route.device, into);
    }
  }

  #readDevice(vcpu: number, gpa: bigint, device: KernelDevice, into: Uint8Array): number {
    const end = bigMin(device.gpa + device.length, gpa + BigInt(into.length));
    const lapic = device === LOCAL_APIC;
    let done = 0;
    let anyNonZero = false;
    for (let word = gpa & ~3n; word < end; word += 4n) {
      let value: bigint;
      try {
        // The local APIC's registers are the first 4 bytes of each 16-byte slot; vmm's
        // lapic_mmio_read refuses the rest (EINVAL), which are reserved: read as 0.
        value = lapic && (word & 0xfn) !== 0n ? 0n : this.#vm.readKernemu(vcpu, word, 4);
      } catch (error) {
        if (isGone(error) || !(error instanceof VmmError)) throw error;
        if (done > 0) return done;
        throw new TargetError(
          `Cannot read guest memory: ${hex(word)} (${device.name}) cannot be read through ` +
            `vm_readwrite_kernemu_device: ${error.code}`,
          EFAULT,
          { cause: error },
        );
      }
      anyNonZero ||= value !== 0n;
      for (let b = 0n; b < 4n; b++) {
        const at = word + b;
        if (at >= gpa && at < end) into[done++] = Number((value >> (8n * b)) & 0xffn);
      }
    }
    // In x2APIC mode vmm reads every register as 0: only then is it worth asking.
    if (lapic && !anyNonZero && inX2apicMode(this.#vm, vcpu)) {
      throw new TargetError(`Cannot read guest memory: ${hex(gpa)}: ${X2APIC_NOTE}`, EFAULT);
    }
    return done;
  }

  #translate(vcpu: number, paging: GuestPaging, gva: bigint): bigint | undefined {
    try {
      return this.#vm.gla2gpa(vcpu, paging, gva, PROT_READ);
    } catch (error) {
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      // e.g. EFAULT: a page-table page outside guest RAM.
      throw new TargetError(
        `Cannot read guest memory: translating ${hex(gva)} on vCPU ${vcpu} failed: ` +
          error.message,
        EFAULT,
        { cause: error },
      );
    }
  }

  /** Forgets the translations of `vcpus` (all when undefined): the guest may change them. */
  forget(vcpus?: readonly number[]): void {
    if (vcpus === undefined) this.#pages.clear();
    else for (const vcpu of vcpus) this.#pages.delete(vcpu);
  }

  /**
   * Up to `length` bytes at guest-virtual `gva` as `vcpu` sees it through `paging`.
   * A short result means the read reached an unmapped or unreadable page; if not even the
   * first byte can be read, throws TargetError (EFAULT). With `cache`, translations are kept
   * across calls (a stopped vCPU's page tables do not change) until {@link forget}.
   */
  readVirtual(
    vcpu: number,
    paging: GuestPaging,
    gva: bigint,
    length: number,
    options: { cache?: boolean } = {},
  ): Uint8Array {
    const out = new Uint8Array(length);
    const cache = options.cache ? this.#cacheFor(vcpu, paging) : undefined;
    let done = 0;
    // Below this address (in the same directory span) the guest maps 4 KiB pages: no walk.
    let smallPagesUntil = -1n;
    while (done < length) {
      const at = (gva + BigInt(done)) & 0xffff_ffff_ffff_ffffn;
      const cached = cache === undefined ? undefined : lookUp(cache, at);
      let gpa: bigint | undefined = cached === undefined
        ? undefined
        : cached.gpa + (at - cached.base);
      let pageSize = cached?.size ?? PAGE;
      if (cached === undefined) {
        try {
          gpa = this.#translate(vcpu, paging, at);
        } catch (error) {
          if (done > 0 && error instanceof TargetError) break;
          throw error;
        }
        if (gpa === undefined) {
          if (done > 0) break;
          throw new TargetError(
            `Cannot read guest memory: ${hex(at)} is not mapped on vCPU ${vcpu}`,
            EFAULT,
          );
        }
        if (at >= smallPagesUntil) {
          pageSize = this.#pageSize(vcpu, paging, at, gpa);
          if (pageSize === PAGE) smallPagesUntil = at - (at % DIRECTORY_SPAN) + DIRECTORY_SPAN;
        }
        if (cache !== undefined) remember(cache, at, gpa, pageSize);
      }
      if (gpa === undefined) break; // unreachable: a cached page always has a gpa
      const chunk = Number(bigMin(BigInt(length - done), pageSize - (at % pageSize)));
      let n: number;
      try {
        n = this.#readPhysicalInto(vcpu, gpa, out.subarray(done, done + chunk));
      } catch (error) {
        if (done > 0 && error instanceof TargetError) break;
        if (error instanceof TargetError) {
          throw new TargetError(
            `${error.message} (virtual address ${hex(at)} on vCPU ${vcpu})`,
            error.code,
            { cause: error },
          );
        }
        throw error;
      }
      done += n;
      if (n < chunk) break;
    }
    return done === length ? out : out.subarray(0, done);
  }

  /**
   * The size of the guest page that maps `gva`, which the kernel translated to `gpa`. Our own
   * walk of the page tables (reading guest RAM, no libvmmapi call) gives the size, trusted only
   * when the walk lands on the kernel's own answer; anything else says 4 KiB, the old,
   * always-correct step. 32-bit paging always says 4 KiB: its 4 MiB pages depend on CR4.PSE,
   * which `paging` does not carry.
   */
  #pageSize(vcpu: number, paging: GuestPaging, gva: bigint, gpa: bigint): bigint {
    if (paging.pagingMode === PagingMode.FLAT) return PAGE;
    const readEntry = (entryGpa: bigint, size: 4 | 8): bigint => {
      const bytes = this.readPhysical(vcpu, entryGpa, size);
      if (bytes.length < size) throw new TargetError("short page-table read", EFAULT);
      let value = 0n;
      for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!);
      return value;
    };
    try {
      const input = { pagingMode: paging.pagingMode, cr3: paging.cr3, pse: false };
      const result = walk(gva, input, readEntry);
      if (result.gpa === gpa && result.pageSize !== undefined) return result.pageSize;
    } catch (error) {
      if (!(error instanceof TargetError)) throw error;
    }
    return PAGE;
  }

  #cacheFor(vcpu: number, paging: GuestPaging): Map<bigint, CachedPage> {
    let entry = this.#pages.get(vcpu);
    if (entry === undefined || entry.cr3 !== paging.cr3) {
      entry = { cr3: paging.cr3, pages: new Map() };
      this.#pages.set(vcpu, entry);
    }
    return entry.pages;
  }
}

/** The cached page holding `gva`, whatever its size. */
function lookUp(pages: Map<bigint, CachedPage>, gva: bigint): CachedPage | undefined {
  for (const size of PAGE_SIZES) {
    const page = pages.get(gva - (gva % size));
    if (page !== undefined && page.size === size) return page;
  }
  return undefined;
}

function remember(pages: Map<bigint, CachedPage>, gva: bigint, gpa: bigint, size: bigint): void {
  if (pages.size >= CACHED_PAGES) pages.clear();
  const offset = gva % size;
  pages.set(gva - offset, { base: gva - offset, gpa: gpa - offset, size });
}

function bigMin(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
