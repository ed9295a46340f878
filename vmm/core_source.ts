/**
 * A bhyve VM as core/'s {@link CoreSource}: every active vCPU's registers, the RAM ranges of
 * system memory, and (with paging) the boot vCPU's page-table mappings.
 *
 * The caller decides whether the VM is held while this is read and copied.
 *
 * @module
 */
import type { CoreSource, CpuState, RamRange, SegmentState, VirtualMapping } from "../core/mod.ts";
import type { GuestMemory } from "./memory.ts";
import { pageMappings } from "./page_map.ts";
import { guestPaging } from "./paging.ts";
import { PagingMode, type VmHandle, VmReg } from "./vmmapi.ts";

/** QEMUCPUState's general registers, in its order (rax … rflags). */
export const QEMU_GENERAL_ORDER = [
  VmReg.RAX,
  VmReg.RBX,
  VmReg.RCX,
  VmReg.RDX,
  VmReg.RSI,
  VmReg.RDI,
  VmReg.RSP,
  VmReg.RBP,
  VmReg.R8,
  VmReg.R9,
  VmReg.R10,
  VmReg.R11,
  VmReg.R12,
  VmReg.R13,
  VmReg.R14,
  VmReg.R15,
  VmReg.RIP,
  VmReg.RFLAGS,
] as const;

/** QEMUCPUState's segments and descriptor tables, in its order (cs … idt). */
export const QEMU_SEGMENT_ORDER = [
  VmReg.CS,
  VmReg.DS,
  VmReg.ES,
  VmReg.FS,
  VmReg.GS,
  VmReg.SS,
  VmReg.LDTR,
  VmReg.TR,
  VmReg.GDTR,
  VmReg.IDTR,
] as const;

/** The registers one vm_get_register_set reads for a core, in this order. */
const GENERAL: readonly number[] = [
  ...QEMU_GENERAL_ORDER,
  VmReg.CR0,
  VmReg.CR2,
  VmReg.CR3,
  VmReg.CR4,
  VmReg.EFER,
  ...QEMU_SEGMENT_ORDER.slice(0, 8), // the selectors (GDTR and IDTR have none)
];

/** Options for {@link vmCoreSource}. */
export interface CoreSourceOptions {
  /** PT_LOADs by virtual address from the boot vCPU's page tables (QEMU's `-p`). */
  paging?: boolean;
}

/** Reads the vCPUs (and page tables) of `vm` now; RAM is copied when the writer asks. */
export function vmCoreSource(
  vm: VmHandle,
  memory: GuestMemory,
  options: CoreSourceOptions = {},
): CoreSource {
  const cpus = vm.activeCpus().map((vcpu) => readCpu(vm, vcpu));
  const ranges: RamRange[] = memory.ranges()
    .filter((r) => r.readable && r.segmentName === "")
    .map((r) => ({ gpa: r.gpa, length: r.length }));
  const source: CoreSource = {
    cpus,
    ranges,
    read: (gpa, into) => vm.readRam(gpa, into),
    // The writer scans and writes each chunk straight from the mapping, and drops the view
    // before the dump returns (the ranges are mapped anew only by a later memoryRanges()).
    ...(vm.viewRam ? { view: (gpa: bigint, length: number) => vm.viewRam!(gpa, length) } : {}),
    // Any call fails once the VM is destroyed, while its mapping may still read fine.
    check: () => void vm.activeCpus(),
  };
  if (options.paging) source.mappings = bootMappings(vm, memory, cpus);
  return source;
}

function readCpu(vm: VmHandle, vcpu: number): CpuState {
  const values = new BigUint64Array(GENERAL.length);
  vm.getRegisterSet(vcpu, Int32Array.from(GENERAL), values);
  const r = (reg: number) => values[GENERAL.indexOf(reg)]!;
  const segment = (reg: number, selector: bigint): SegmentState => {
    const desc = vm.getSegDesc(vcpu, reg);
    // vmm's access rights (VMX layout: type in bits 0-3 … G in 15) sit 8 bits higher in a
    // descriptor's high dword, which is where QEMU keeps its segment flags.
    return {
      selector: Number(selector),
      limit: desc.limit,
      flags: (desc.access & 0xf0ff) << 8,
      base: desc.base,
    };
  };
  return {
    vcpu,
    rax: r(VmReg.RAX),
    rbx: r(VmReg.RBX),
    rcx: r(VmReg.RCX),
    rdx: r(VmReg.RDX),
    rsi: r(VmReg.RSI),
    rdi: r(VmReg.RDI),
    rsp: r(VmReg.RSP),
    rbp: r(VmReg.RBP),
    r8: r(VmReg.R8),
    r9: r(VmReg.R9),
    r10: r(VmReg.R10),
    r11: r(VmReg.R11),
    r12: r(VmReg.R12),
    r13: r(VmReg.R13),
    r14: r(VmReg.R14),
    r15: r(VmReg.R15),
    rip: r(VmReg.RIP),
    rflags: r(VmReg.RFLAGS),
    cs: segment(VmReg.CS, r(VmReg.CS)),
    ds: segment(VmReg.DS, r(VmReg.DS)),
    es: segment(VmReg.ES, r(VmReg.ES)),
    fs: segment(VmReg.FS, r(VmReg.FS)),
    gs: segment(VmReg.GS, r(VmReg.GS)),
    ss: segment(VmReg.SS, r(VmReg.SS)),
    ldt: segment(VmReg.LDTR, r(VmReg.LDTR)),
    tr: segment(VmReg.TR, r(VmReg.TR)),
    gdt: segment(VmReg.GDTR, 0n),
    idt: segment(VmReg.IDTR, 0n),
    cr: [r(VmReg.CR0), 0n, r(VmReg.CR2), r(VmReg.CR3), r(VmReg.CR4)],
    kernelGsBase: kernelGsBase(vm, vcpu),
  };
}

/** MSR_KERNEL_GS_BASE has a register number only on FreeBSD 15 and later: 0 elsewhere. */
function kernelGsBase(vm: VmHandle, vcpu: number): bigint {
  try {
    return vm.getRegister(vcpu, VmReg.KGS_BASE);
  } catch {
    return 0n;
  }
}

/** The first vCPU with paging on (QEMU's choice too), or none: then no virtual mappings. */
function bootMappings(
  vm: VmHandle,
  memory: GuestMemory,
  cpus: readonly CpuState[],
): VirtualMapping[] {
  for (const cpu of cpus) {
    const efer = vm.getRegister(cpu.vcpu, VmReg.EFER);
    const paging = guestPaging({ cr0: cpu.cr[0], cr3: cpu.cr[3], cr4: cpu.cr[4], efer });
    if (paging.pagingMode === PagingMode.FLAT) continue;
    return pageMappings(paging, cpu.cr[4], (gpa, into) => {
      const route = memory.route(gpa);
      // A table outside RAM (a corrupt or hostile entry) maps nothing: never a device read.
      if (
        route.kind !== "ram" || gpa + BigInt(into.length) > route.range.gpa + route.range.length
      ) {
        return false;
      }
      vm.readRam(gpa, into);
      return true;
    });
  }
  // No vCPU pages: virtual addresses are physical ones (QEMU does the same).
  return memory.ranges()
    .filter((r) => r.readable && r.segmentName === "")
    .map((r) => ({ gva: r.gpa, gpa: r.gpa, length: r.length }));
}
