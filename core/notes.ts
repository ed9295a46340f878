/**
 * The PT_NOTE contents QEMU's `dump-guest-memory` writes for x86-64 (target/i386/arch_dump.c):
 * one "CORE" NT_PRSTATUS per vCPU, in vCPU order, then one "QEMU" note (type 0) per vCPU with
 * QEMUCPUState. gdb turns each NT_PRSTATUS into a thread named by its pr_pid (so the pids must
 * differ: vCPU + 1, as QEMU's cpu index + 1); crash reads QEMUCPUState for CR3 and the IDT.
 *
 * @module
 */
import { ElfConst, encodeNote } from "./elf.ts";
import type { CpuState, SegmentState } from "./source.ts";

/** sizeof(struct elf_prstatus) on x86-64 Linux: pr_pid at 32, pr_reg at 112, 8 bytes after. */
export const PRSTATUS_SIZE = 336;
const PR_PID = 32;
const PR_REG = 112;

/** QEMUCPUState version 1 with kernel_gs_base (the optional last field). */
export const QEMU_CPU_STATE_VERSION = 1;
export const QEMU_CPU_STATE_SIZE = 440;

/** NT_PRSTATUS: pr_reg is `struct user_regs_struct`, in its own order. */
export function prstatus(cpu: CpuState): Uint8Array {
  const desc = new Uint8Array(PRSTATUS_SIZE);
  const v = new DataView(desc.buffer);
  v.setUint32(PR_PID, cpu.vcpu + 1, true);
  const regs = [
    cpu.r15,
    cpu.r14,
    cpu.r13,
    cpu.r12,
    cpu.rbp,
    cpu.rbx,
    cpu.r11,
    cpu.r10,
    cpu.r9,
    cpu.r8,
    cpu.rax,
    cpu.rcx,
    cpu.rdx,
    cpu.rsi,
    cpu.rdi,
    0n, // orig_rax: no system call in progress
    cpu.rip,
    BigInt(cpu.cs.selector),
    cpu.rflags,
    cpu.rsp,
    BigInt(cpu.ss.selector),
    cpu.fs.base,
    cpu.gs.base,
    BigInt(cpu.ds.selector),
    BigInt(cpu.es.selector),
    BigInt(cpu.fs.selector),
    BigInt(cpu.gs.selector),
  ];
  regs.forEach((value, i) => v.setBigUint64(PR_REG + 8 * i, value, true));
  return encodeNote("CORE", ElfConst.NT_PRSTATUS, desc);
}

/** QEMU's own CPU-state note: general registers, segments, descriptor tables, CR0-CR4. */
export function qemuCpuState(cpu: CpuState): Uint8Array {
  const desc = new Uint8Array(QEMU_CPU_STATE_SIZE);
  const v = new DataView(desc.buffer);
  v.setUint32(0, QEMU_CPU_STATE_VERSION, true);
  v.setUint32(4, QEMU_CPU_STATE_SIZE, true);
  let at = 8;
  const u64 = (value: bigint) => {
    v.setBigUint64(at, value, true);
    at += 8;
  };
  const segment = (s: SegmentState) => {
    v.setUint32(at, s.selector, true);
    v.setUint32(at + 4, s.limit >>> 0, true);
    v.setUint32(at + 8, s.flags >>> 0, true);
    v.setBigUint64(at + 16, s.base, true);
    at += 24;
  };
  for (
    const r of [
      cpu.rax,
      cpu.rbx,
      cpu.rcx,
      cpu.rdx,
      cpu.rsi,
      cpu.rdi,
      cpu.rsp,
      cpu.rbp,
      cpu.r8,
      cpu.r9,
      cpu.r10,
      cpu.r11,
      cpu.r12,
      cpu.r13,
      cpu.r14,
      cpu.r15,
      cpu.rip,
      cpu.rflags,
    ]
  ) u64(r);
  for (const s of [cpu.cs, cpu.ds, cpu.es, cpu.fs, cpu.gs, cpu.ss]) segment(s);
  for (const s of [cpu.ldt, cpu.tr, cpu.gdt, cpu.idt]) segment(s);
  for (const cr of cpu.cr) u64(cr);
  u64(cpu.kernelGsBase);
  return encodeNote("QEMU", 0, desc);
}

/** The whole PT_NOTE segment: every NT_PRSTATUS, then every QEMU note, in vCPU order. */
export function encodeNotes(cpus: readonly CpuState[]): Uint8Array {
  const parts = [...cpus.map(prstatus), ...cpus.map(qemuCpuState)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
