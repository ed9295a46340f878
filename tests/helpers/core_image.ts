/**
 * A machine rebuilt from a core file QEMU's `dump-guest-memory` wrote (no paging): its RAM
 * (each PT_LOAD at p_paddr) and every vCPU's registers (QEMU's CPU-state notes) in a
 * {@link FakeVm}. So bhyve-gdbstub's dump path can save the very machine QEMU saved, and the
 * two files can be given to the same crash and gdb commands side by side.
 */
import { QEMU_GENERAL_ORDER, QEMU_SEGMENT_ORDER } from "../../vmm/core_source.ts";
import { VmReg } from "../../vmm/vmmapi.ts";
import { FakeVm } from "../vmm/fake_vmm.ts";
import { addRam } from "./fake_machine.ts";

const GENERAL = QEMU_GENERAL_ORDER;
const SEGMENTS = QEMU_SEGMENT_ORDER;

/** The PT_LOADs of an ELF64 core: [offset, vaddr, paddr, filesz]. */
export function loads(
  core: Uint8Array,
): { offset: number; vaddr: bigint; paddr: bigint; size: number }[] {
  const v = new DataView(core.buffer, core.byteOffset);
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  const out = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * 56;
    if (v.getUint32(at, true) !== 1) continue;
    out.push({
      offset: Number(v.getBigUint64(at + 8, true)),
      vaddr: v.getBigUint64(at + 16, true),
      paddr: v.getBigUint64(at + 24, true),
      size: Number(v.getBigUint64(at + 32, true)),
    });
  }
  return out;
}

/** The descs of every note named `name`, in file order. */
export function notes(core: Uint8Array, name: string): Uint8Array[] {
  const v = new DataView(core.buffer, core.byteOffset);
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  const out: Uint8Array[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * 56;
    if (v.getUint32(ph, true) !== 4) continue;
    let at = Number(v.getBigUint64(ph + 8, true));
    const end = at + Number(v.getBigUint64(ph + 32, true));
    while (at < end) {
      const namesz = v.getUint32(at, true);
      const descsz = v.getUint32(at + 4, true);
      const noteName = new TextDecoder().decode(core.subarray(at + 12, at + 12 + namesz - 1));
      const descAt = at + 12 + ((namesz + 3) & ~3);
      if (noteName === name) out.push(core.subarray(descAt, descAt + descsz));
      at = descAt + ((descsz + 3) & ~3);
    }
  }
  return out;
}

/** A FakeVm holding the machine of a QEMU core (RAM shares `core`'s bytes). */
export function vmFromQemuCore(core: Uint8Array): FakeVm {
  const states = notes(core, "QEMU");
  const vm = new FakeVm({ active: states.map((_, i) => i), ram: [] });
  for (const l of loads(core)) {
    // QEMU's own firmware range (the BIOS at the top of 4 GiB) is no bhyve system memory.
    if (l.paddr >= 0xfff0_0000n) continue;
    addRam(vm, l.paddr, core.subarray(l.offset, l.offset + l.size));
  }
  states.forEach((state, vcpu) => {
    const v = new DataView(state.buffer, state.byteOffset, state.length);
    GENERAL.forEach((reg, i) => vm.setReg(vcpu, reg, v.getBigUint64(8 + 8 * i, true)));
    SEGMENTS.forEach((reg, i) => {
      const at = 152 + 24 * i;
      if (i < 8) vm.setReg(vcpu, reg, BigInt(v.getUint32(at, true)));
      vm.segs.set(`${vcpu}:${reg}`, {
        base: v.getBigUint64(at + 16, true),
        limit: v.getUint32(at + 4, true),
        access: (v.getUint32(at + 8, true) >>> 8) & 0xf0ff,
      });
    });
    const cr = (i: number) => v.getBigUint64(392 + 8 * i, true);
    vm.setReg(vcpu, VmReg.CR0, cr(0));
    vm.setReg(vcpu, VmReg.CR2, cr(2));
    vm.setReg(vcpu, VmReg.CR3, cr(3));
    vm.setReg(vcpu, VmReg.CR4, cr(4));
    // QEMUCPUState has no EFER: long mode is CR0.PG with CR4.PAE in a 64-bit kernel.
    vm.setReg(vcpu, VmReg.EFER, (cr(0) >> 31n) & 1n && (cr(4) >> 5n) & 1n ? 0xd01n : 0n);
  });
  return vm;
}

/** readelf -a: its output, and whatever it printed on stderr (warnings). */
export async function readelf(path: string): Promise<{ out: string; err: string }> {
  const r = await new Deno.Command("readelf", { args: ["-a", "-W", path] }).output();
  const dec = new TextDecoder();
  return { out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** The file bytes behind virtual address `va` in an ELF core, through its PT_LOADs. */
export function coreBytesAt(core: Uint8Array, va: bigint, length: number): Uint8Array {
  const v = new DataView(core.buffer, core.byteOffset);
  const phnum = v.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const at = 64 + i * 56;
    if (v.getUint32(at, true) !== 1) continue;
    const offset = v.getBigUint64(at + 8, true);
    const vaddr = v.getBigUint64(at + 16, true);
    const filesz = v.getBigUint64(at + 32, true);
    if (va >= vaddr && va + BigInt(length) <= vaddr + filesz) {
      const start = Number(offset + va - vaddr);
      return core.subarray(start, start + length);
    }
  }
  throw new Error(`0x${va.toString(16)} is in no PT_LOAD`);
}
