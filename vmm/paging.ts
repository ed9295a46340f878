/**
 * A vCPU's paging state, built the way bhyve's own gdb stub builds it (vmm-facts.md §3):
 * cpu_mode from EFER.LMA and CR0.PE, paging_mode from CR0.PG, CR4.PAE, EFER.LME and CR4.LA57,
 * cpl 0 (a debugger reads with supervisor rights).
 *
 * @module
 */
import { CpuMode, type GuestPaging, PagingMode } from "./vmmapi.ts";

export const CR0_PE = 1n << 0n;
export const CR0_PG = 1n << 31n;
export const CR4_PSE = 1n << 4n;
export const CR4_PAE = 1n << 5n;
export const CR4_LA57 = 1n << 12n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
export const EFER_NXE = 1n << 11n;

/** The control registers translation depends on. */
export interface ControlRegisters {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** A vCPU's paging state: the control registers and the vm_guest_paging built from them. */
export interface PagingState extends ControlRegisters {
  paging: GuestPaging;
}

/** Builds vm_guest_paging from the control registers. */
export function guestPaging(regs: ControlRegisters): GuestPaging {
  const { cr0, cr3, cr4, efer } = regs;
  const cpuMode = efer & EFER_LMA ? CpuMode.LONG : cr0 & CR0_PE ? CpuMode.PROTECTED : CpuMode.REAL;
  const pagingMode = !(cr0 & CR0_PG)
    ? PagingMode.FLAT
    : !(cr4 & CR4_PAE)
    ? PagingMode.BITS32
    : efer & EFER_LME
    ? (cr4 & CR4_LA57 ? PagingMode.LEVEL5 : PagingMode.LEVEL4)
    : PagingMode.PAE;
  return { cr3, cpl: 0, cpuMode, pagingMode };
}

const CPU_MODE_NAMES: Record<CpuMode, string> = {
  [CpuMode.REAL]: "real mode",
  [CpuMode.PROTECTED]: "protected mode",
  [CpuMode.COMPATIBILITY]: "compatibility mode",
  [CpuMode.LONG]: "long mode",
};

const PAGING_MODE_NAMES: Record<PagingMode, string> = {
  [PagingMode.FLAT]: "no paging",
  [PagingMode.BITS32]: "32-bit paging",
  [PagingMode.PAE]: "PAE paging",
  [PagingMode.LEVEL4]: "4-level paging",
  [PagingMode.LEVEL5]: "5-level paging (LA57)",
};

/** "long mode", "protected mode" … */
export function cpuModeName(mode: CpuMode): string {
  return CPU_MODE_NAMES[mode];
}

/** "4-level paging", "no paging" … */
export function pagingModeName(mode: PagingMode): string {
  return PAGING_MODE_NAMES[mode];
}
