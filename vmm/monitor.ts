/**
 * `monitor` commands (qRcmd): diagnostics a debugger cannot ask for otherwise.
 *
 * @module
 */
import { VERSION } from "../cli.ts";
import { TargetError, TargetGoneError } from "../rsp/target.ts";
import { KERNEL_DEVICES, type Route } from "./memory.ts";
import { walk, type WalkResult } from "./page_walk.ts";
import { monitorAddress } from "./monitor_address.ts";
import { cpuModeName, CR4_PSE, pagingModeName } from "./paging.ts";
import type { VmTarget } from "./target.ts";
import { isGone, PagingMode } from "./vmmapi.ts";
import { inX2apicMode, X2APIC_NOTE } from "./x2apic.ts";
import { monitorDump } from "./monitor_dump.ts";

const hex = (v: bigint) => `0x${v.toString(16)}`;
const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;

/** The local APIC registers `monitor lapic` shows: [name, offset in the APIC page]. */
export const LAPIC_REGISTERS: readonly [string, number][] = [
  ["ID", 0x20],
  ["Version", 0x30],
  ["TPR", 0x80],
  ["PPR", 0xa0],
  ["LDR", 0xd0],
  ["DFR", 0xe0],
  ["SVR", 0xf0],
  ["ESR", 0x280],
  ["ICR low", 0x300],
  ["ICR high", 0x310],
  ["LVT Timer", 0x320],
  ["LVT LINT0", 0x350],
  ["LVT LINT1", 0x360],
  ["LVT Error", 0x370],
  ["Timer initial count", 0x380],
  ["Timer current count", 0x390],
  ["Timer divide", 0x3e0],
];
const LAPIC_BASE = 0xfee0_0000n;

export const HELP_TEXT = `bhyve-gdbstub monitor commands:
  help            this text
  vcpus           each vCPU: who holds it, CPU mode, paging mode, CR3
  pagewalk ADDR   the page-table walk of a virtual address (or of a register: rip,
                  $pc, $sp) on the selected vCPU
  memmap          the guest-physical map: RAM ranges, holes, in-kernel devices
  phys on|off     read memory by guest-physical (on) or guest-virtual (off) address
  lapic           the selected vCPU's local APIC registers (through kernemu; 16-byte
                  aligned registers only; not in x2APIC mode, where they are MSRs)
  info version    the server's version; gdb thread N is vCPU N-1 (as in QEMU)
  breakpoints ignore|refuse
                  whether continue runs past breakpoints the VM cannot honour
  dump [-p] NAME  save the VM as an ELF core NAME in the server's --dump-dir (-p: by
                  virtual address, for gdb); never overwrites
  emulation       emulated execution: available or why not, its budget, what the last run did
  budget [N] [MS] the budget of an emulated continue or range step: N instructions, MS ms of wall time
`;

/** Runs one monitor command for the vCPU behind `thread`; returns console text. */
export function runMonitor(
  target: VmTarget,
  command: string,
  thread: number,
  print?: (text: string) => Promise<void>,
): string | Promise<string> {
  const [name = "", ...args] = command.trim().split(/\s+/);
  switch (name) {
    case "":
    case "help":
      return HELP_TEXT;
    case "vcpus":
      return vcpus(target);
    case "pagewalk":
      return pagewalk(target, thread, args[0]);
    case "memmap":
      return memmap(target);
    case "phys":
      return phys(target, args[0]);
    case "lapic":
      return lapic(target, thread);
    case "info":
      return info(args[0]);
    case "dump":
      return monitorDump(target, target.dumpDir, args, print);
    case "emulation":
      return target.emulated.describeLast();
    case "budget":
      return budget(target, args);
    default:
      return `Unknown monitor command "${name}". Try "monitor help".\n`;
  }
}

function budget(target: VmTarget, args: string[]): string {
  const [instructions, milliseconds] = args.map(Number);
  for (const n of [instructions, milliseconds]) {
    if (n !== undefined && (!Number.isSafeInteger(n) || n <= 0)) {
      return `Usage: monitor budget [INSTRUCTIONS] [MILLISECONDS] (positive integers)\n`;
    }
  }
  if (instructions !== undefined) target.emulated.budget.instructions = instructions;
  if (milliseconds !== undefined) target.emulated.budget.milliseconds = milliseconds;
  const b = target.emulated.budget;
  return `Budget of an emulated continue: ${b.instructions} instructions, ${b.milliseconds} ms\n`;
}

function vcpus(target: VmTarget): string {
  const active = target.activeCpus();
  const lines = active.map((vcpu) => {
    const head = `vCPU ${vcpu} (thread ${vcpu + 1}): ${target.control.state(vcpu, active)}`;
    try {
      const s = target.pagingState(vcpu);
      return `${head}, ${cpuModeName(s.paging.cpuMode)}, ${pagingModeName(s.paging.pagingMode)}` +
        `, cr3=${hex(s.cr3)}`;
    } catch (error) {
      if (error instanceof TargetGoneError) throw error;
      return `${head}, registers unreadable: ${(error as Error).message}`;
    }
  });
  const vm = target.vm;
  return `VM ${vm.name}: ${active.length} active vCPU(s)\n${lines.join("\n")}\n`;
}

function pagewalk(target: VmTarget, thread: number, arg: string | undefined): string {
  if (arg === undefined) return `${PAGEWALK_USAGE}\n`;
  const address = monitorAddress(target, thread, arg);
  if (typeof address === "string") return `${address}\n${PAGEWALK_USAGE}\n`;
  const gva = address.value;
  const vcpu = target.vcpuOf(thread);
  const state = target.pagingState(vcpu);
  const what = address.register === undefined ? hex(gva) : `${address.register} = ${hex(gva)}`;
  if (state.paging.pagingMode === PagingMode.FLAT) {
    const head = `${what} on vCPU ${vcpu} (${cpuModeName(state.paging.cpuMode)}, no paging):`;
    return withoutPaging(target, head, gva);
  }
  const read = (gpa: bigint, size: 4 | 8) => {
    const bytes = target.memory.readPhysical(vcpu, gpa, size);
    if (bytes.length < size) throw new TargetError(`short read at ${hex(gpa)}`, 14);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
    return v;
  };
  let result: WalkResult;
  try {
    result = walk(gva, {
      pagingMode: state.paging.pagingMode,
      cr3: state.cr3,
      pse: (state.cr4 & CR4_PSE) !== 0n,
    }, read);
  } catch (error) {
    if (error instanceof TargetGoneError || isGone(error)) throw error;
    return `page walk of ${hex(gva)} failed: ${(error as Error).message}\n`;
  }
  return formatWalk(target, vcpu, what, gva, result, pagingModeName(state.paging.pagingMode));
}

const PAGEWALK_USAGE =
  "usage: monitor pagewalk ADDRESS|REGISTER (hexadecimal, or a register such as rip, $pc, $sp)";

/** A vCPU with paging off has no tables: the address is the guest-physical one, as in vmm. */
function withoutPaging(target: VmTarget, head: string, gva: bigint): string {
  return `${head}\n` +
    "  no page tables to walk: with paging off the address is the guest-physical address\n" +
    `  -> ${hex(gva)}\n  reads: ${describeRoute(target.memory.route(gva))}\n`;
}

function formatWalk(
  target: VmTarget,
  vcpu: number,
  what: string,
  gva: bigint,
  result: WalkResult,
  mode: string,
): string {
  const lines = [`${what} on vCPU ${vcpu} (${mode}):`];
  for (const l of result.levels) {
    const bits = [l.present ? "P" : "-", l.writable ? "W" : "R", l.user ? "U" : "S"];
    if (l.large) bits.push("large");
    lines.push(
      `  ${l.name.padEnd(5)}[${String(l.index).padStart(3)}] at ${hex(l.entryGpa)} = ` +
        `${hex16(l.entry)} ${bits.join(" ")}`,
    );
  }
  if (result.gpa !== undefined) {
    lines.push(`  -> ${hex(result.gpa)} (${sizeName(result.pageSize ?? 4096n)} page)`);
    lines.push(`  reads: ${describeRoute(target.memory.route(result.gpa))}`);
  } else {
    lines.push(`  -> not mapped: ${result.fault ?? "unknown"}`);
  }
  try {
    const kernel = target.vm.gla2gpa(vcpu, target.pagingState(vcpu).paging, gva, 1);
    lines.push(`  vm_gla2gpa_nofault: ${kernel === undefined ? "not mapped" : hex(kernel)}`);
  } catch (error) {
    if (isGone(error)) throw error;
    lines.push(`  vm_gla2gpa_nofault: ${(error as Error).message}`);
  }
  return `${lines.join("\n")}\n`;
}

/** How a read of that guest-physical address is served, or why it is refused. */
function describeRoute(route: Route): string {
  switch (route.kind) {
    case "ram":
      return route.range.segmentName === ""
        ? `guest RAM (memory segment ${route.range.segid})`
        : `device memory "${route.range.segmentName}" (segment ${route.range.segid}), ` +
          "mapped through its own node (/dev/vmm.io/VM.SEGNAME)";
    case "device":
      return `the in-kernel ${route.device.name}, through vm_readwrite_kernemu_device`;
    case "refused":
      return `refused: ${route.reason}`;
  }
}

function sizeName(size: bigint): string {
  if (size >= 1n << 30n) return `${size >> 30n} GiB`;
  if (size >= 1n << 20n) return `${size >> 20n} MiB`;
  return `${size >> 10n} KiB`;
}

function memmap(target: VmTarget): string {
  const lines = ["guest-physical map:"];
  let next = 0n;
  for (const r of target.memory.ranges()) {
    if (r.gpa > next) lines.push(`  ${span(next, r.gpa)}  hole (MMIO or nothing)`);
    const what = r.segmentName === "" ? "RAM" : `segment "${r.segmentName}"`;
    lines.push(
      `  ${span(r.gpa, r.gpa + r.length)}  ${what} (segid ${r.segid}, ${sizeName(r.length)})${
        r.readable
          ? r.segmentName === "" ? "" : ", read through its devmem node"
          : ", not readable from outside bhyve"
      }`,
    );
    next = r.gpa + r.length;
  }
  lines.push("in-kernel devices (read through kernemu):");
  for (const d of KERNEL_DEVICES) lines.push(`  ${span(d.gpa, d.gpa + d.length)}  ${d.name}`);
  return `${lines.join("\n")}\n`;
}

function span(start: bigint, end: bigint): string {
  return `${hex16(start)}-${hex16(end - 1n)}`;
}

function phys(target: VmTarget, arg: string | undefined): string {
  if (arg === "on") target.physicalMode = true;
  else if (arg === "off") target.physicalMode = false;
  else if (arg !== undefined) return "usage: monitor phys on|off\n";
  return target.physicalMode
    ? "Memory addresses are guest-physical (no translation).\n"
    : "Memory addresses are guest-virtual (translated by the selected vCPU).\n";
}

function lapic(target: VmTarget, thread: number): string {
  const vcpu = target.vcpuOf(thread);
  const lines = [`local APIC of vCPU ${vcpu}:`];
  try {
    if (inX2apicMode(target.vm, vcpu)) return `${lines[0]} ${X2APIC_NOTE}\n`;
  } catch (error) {
    if (isGone(error)) throw error;
  }
  for (const [name, offset] of LAPIC_REGISTERS) {
    let text: string;
    try {
      const value = target.vm.readKernemu(vcpu, LAPIC_BASE + BigInt(offset), 4);
      text = `0x${value.toString(16).padStart(8, "0")}`;
    } catch (error) {
      if (isGone(error)) throw error;
      text = `unreadable (${(error as Error).message})`;
    }
    lines.push(`  ${name.padEnd(20)} (+0x${offset.toString(16).padStart(3, "0")}) ${text}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * `monitor info version`, QEMU's spelling, answered on purpose: Linux's gdb scripts
 * (scripts/gdb/linux/utils.py, get_gdbserver_type) ask it to learn whether gdb's thread N is
 * CPU N-1, which their per-CPU helpers ($lx_per_cpu, $lx_current, ...) need. That holds here:
 * thread N is vCPU N-1, and as bhyve activates every vCPU at start, gdb numbers them the same.
 * Any non-empty answer counts as yes, so the answer must never be empty.
 */
function info(what: string | undefined): string {
  if (what === "version") return `bhyve-gdbstub ${VERSION} (gdb thread N is vCPU N-1)\n`;
  return 'usage: monitor info version (the only "info" command)\n';
}
