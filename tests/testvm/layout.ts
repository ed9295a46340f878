/**
 * The test VM's demo guest, as numbers tests can check: addresses of what
 * each vCPU maps, and where the guest keeps its counters and strings.
 *
 * Mirrors tests/testvm/guest/layout.h and tests/testvm/include/testvm_abi.h
 * (see tests/testvm/guest/README.md). testvm_test.ts checks every constant
 * here against those headers and against build/guest.elf, so a drift fails
 * the suite.
 *
 * @module
 */

/** Where the build puts the test VM's binaries, relative to this file. */
export const BUILD_DIR = new URL("./build/", import.meta.url);

// ---- Guest-physical map (testvm_abi.h) --------------------------------

/** RAM above the 32-bit hole starts here; below it RAM is [0, lowmem). */
export const HIGHMEM_BASE = 0x1_0000_0000n;
/** Small VMs put their last 16 MiB of RAM at HIGHMEM_BASE. */
export const HIGHMEM_MIN = 16n << 20n;
/** The userspace MMIO device (in the hole): unreachable from other processes. */
export const MMIO_GPA = 0xd000_0000n;
/** MMIO register: a constant id. */
export const MMIO_REG_ID = 0x0n;
/** MMIO register: number of reads so far, this one included. */
export const MMIO_REG_READS = 0x8n;
/** Value of the MMIO id register. */
export const MMIO_ID = 0x544d_4d31n;
/** The framebuffer segment (--fbuf), mapped at its BAR; read through its devmem node. */
export const FBUF_GPA = 0xc000_0000n;
/** The string at the framebuffer's start. */
export const FBUF_SIGNATURE = "testvm framebuffer";
/** Known 32-bit pixels at FBUF_GPA + FBUF_PIXELS_OFF: {@link fbufPixel}(0 .. FBUF_NPIXELS-1). */
export const FBUF_PIXELS_OFF = 0x40n;
export const FBUF_NPIXELS = 8;
/** Pixel `i` of that row (testvm_abi.h TVM_FBUF_PIXEL). */
export const fbufPixel = (i: number): number => 0xfb00_0000 + i * 0x0001_0101;
/** In-kernel local APIC, readable through vm_readwrite_kernemu_device. */
export const LAPIC_GPA = 0xfee0_0000n;
/** Local APIC register offsets (32-bit registers at 16-byte strides). */
export const LAPIC_REG_ID = 0x20n;
export const LAPIC_REG_VERSION = 0x30n;

// ---- Virtual addresses (layout.h) -------------------------------------

/** Kernel image: phys [0, 1 GiB) here, on 2 MiB pages. */
export const KERNEL_VBASE = 0xffff_ffff_8000_0000n;
/** Direct map of phys [0, 1 GiB) (1 GiB pages if the CPU has them, else 2 MiB). */
export const DMAP_VBASE = 0xffff_f800_0000_0000n;
/** Identity map of phys [0, 1 GiB). */
export const IDENT_VBASE = 0x0n;
/** Per-vCPU 4 KiB window. */
export const WINDOW_VBASE = 0xffff_8000_0000_0000n;
/** One virtual address, a different page on every long-mode vCPU. */
export const PRIVATE_VA = WINDOW_VBASE + 0x0000n;
export const MMIO_VA = WINDOW_VBASE + 0x1000n;
export const LAPIC_VA = WINDOW_VBASE + 0x2000n;
/** The 32-bit vCPU's 4 KiB window (through its PAE or legacy 32-bit tables). */
export const PAE_WINDOW_VBASE = 0xc000_0000n;
export const PAE_PRIVATE_VA = PAE_WINDOW_VBASE + 0x0000n;
export const PAE_MMIO_VA = PAE_WINDOW_VBASE + 0x1000n;
export const PAE_LAPIC_VA = PAE_WINDOW_VBASE + 0x2000n;

// ---- Physical placement (layout.h) ------------------------------------

/** AP start vector page (SIPI vector 0x08). */
export const TRAMPOLINE_PHYS = 0x8000n;
export const KERNEL_PHYS = 0x10_0000n;
/** struct guest_layout. */
export const LAYOUT_PHYS = 0x40_0000n;
export const LAYOUT_VA = KERNEL_VBASE + LAYOUT_PHYS;
/** vCPU n's private page is at PRIVATE_PHYS + n * PRIVATE_STRIDE. */
export const PRIVATE_PHYS = 0x50_0000n;
export const PRIVATE_STRIDE = 0x1000n;
export const PRIVATE_PAGES_VA = KERNEL_VBASE + PRIVATE_PHYS;

// ---- struct guest_layout (offsets from LAYOUT_PHYS) ------------------

export const GUEST_MAGIC = 0x3130_4d56_5453_4554n; // "TESTVM01"
export const GUEST_MAXCPU = 8;
export const OFF_MAGIC = 0x00n; // u64 GUEST_MAGIC
export const OFF_NCPUS = 0x08n; // u32
export const OFF_START_AP = 0x0cn; // u32: a test writes 1, the BSP starts PARKED_CPU
export const OFF_AP_SPINUP_SENT = 0x10n; // u32: set just before that spin-up
export const OFF_MMIO_PROBE = 0x14n; // u32: a test writes 1, the BSP reads MMIO_REG_READS
export const OFF_MMIO_LAST_READS = 0x18n; // u64: what that read returned
export const OFF_MMIO_ID = 0x20n; // u64: MMIO id, read once at boot
export const OFF_GIANT_ROOT = 0x28n; // u64: spare PML4 built of 1 GiB pages
export const OFF_LIVE_GBPAGES = 0x30n; // u32: live tables use 1 GiB pages
export const OFF_PAE_ACTIVE = 0x34n; // u32: vCPU 2 got PAE paging
export const OFF_PAE_ROOT = 0x38n; // u64: PAE PDPT
export const OFF_LEGACY32_ROOT = 0x40n; // u64: spare 2-level 32-bit directory
export const OFF_INIT_AP = 0x48n; // u32: a test writes AP n, another AP sends it an INIT
export const OFF_INIT_SENT = 0x4cn; // u32: n, once that INIT is sent
export const OFF_SIPI_AP = 0x50n; // u32: a test writes AP n, another AP sends it a SIPI
export const OFF_SIPI_SENT = 0x54n; // u32: n, once that SIPI is sent
export const OFF_AP_MMIO_PROBE = 0x58n; // u32: a test writes vCPU n, AP n reads the MMIO device, clears
export const OFF_PERCPU = 0x80n; // struct percpu[GUEST_MAXCPU]

export const PERCPU_SIZE = 0x40n;
export const PC_COUNTER = 0x00n; // u64
export const PC_ID = 0x08n; // u32
export const PC_MODE = 0x0cn; // u32: 0 not started, 64, or 32
export const PC_CR3 = 0x10n; // u64
export const PC_MSG = 0x18n; // char[40]
export const PC_MSG_LEN = 40;

/** The AP started only when start_ap becomes nonzero. */
export const PARKED_CPU = 3;
/** The AP in 32-bit protected mode. */
export const PAE_CPU = 2;

/** Physical address of vCPU `cpu`'s struct percpu field at `off`. */
export function percpuPhys(cpu: number, off: bigint = 0n): bigint {
  return LAYOUT_PHYS + OFF_PERCPU + BigInt(cpu) * PERCPU_SIZE + off;
}

/** Contents of vCPU `cpu`'s private page. */
export function privateText(cpu: number): string {
  return `vcpu${cpu} private page`;
}

/** vCPU `cpu`'s PC_MSG string. */
export function vcpuMessage(cpu: number): string {
  if (cpu === 0) return "vcpu0 BSP long mode";
  if (cpu === PAE_CPU) return `vcpu${cpu} AP 32-bit protected mode`;
  if (cpu === PARKED_CPU) return `vcpu${cpu} AP long mode, started late`;
  return `vcpu${cpu} AP long mode`;
}

/** Guest symbols with fixed addresses (checked against `nm build/guest.elf`). */
export const SYMBOLS = {
  layout: LAYOUT_VA,
  private_pages: PRIVATE_PAGES_VA,
  ap_trampoline: TRAMPOLINE_PHYS,
} as const;

/** Functions on every long-mode vCPU's call chain, innermost last. */
export const CALL_CHAIN = ["kmain", "work_loop", "tick", "spin"] as const;

/** What work_loop calls after each tick (guest/main.c): bsp_chores on vCPU 0, else ap_chores. */
const CHORES = ["bsp_chores", "ap_chores"] as const;

/**
 * What a backtrace of a long-mode vCPU must show, innermost first, when it stopped in `fn`: the
 * call chain from `fn` out to kmain (undefined if `fn` is not on it). A vCPU is nearly always
 * stopped in spin, but not always: on the software CPU a stop lands outside spin's loop a few
 * times in a hundred, where the glue between translated blocks costs more time than on KVM.
 */
export function callChainFrom(fn: string): string[] | undefined {
  // work_loop's other callees: the BSP's chores after each tick, an AP's likewise.
  if ((CHORES as readonly string[]).includes(fn)) return [fn, "work_loop", "kmain"];
  const inner = CALL_CHAIN.indexOf(fn as typeof CALL_CHAIN[number]);
  return inner < 0 ? undefined : CALL_CHAIN.slice(0, inner + 1).reverse();
}
