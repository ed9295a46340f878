/**
 * The demo guest's image in a fake VM handle, vCPU 0 about to run `work_loop` in long mode, for
 * driving emulated execution end to end (real server, real VmTarget, real emulator, real gdb and
 * lldb) where no test VM can run (no /dev/kvm): only the hypervisor is a stand-in. RAM holds the
 * ELF's PT_LOAD segments at their physical addresses, page tables for the kernel map
 * (KERNEL_VBASE, 2 MiB pages) and the identity map, and a GDT like boot.S's.
 *
 * @module
 */
import { VmReg } from "../../vmm/vmmapi.ts";
import { SCALAR_IDS } from "../../vmm/emulation.ts";
import { FakeVm } from "../vmm/fake_vmm.ts";

export const GUEST_ELF = new URL("../testvm/build/guest.elf", import.meta.url).pathname;
const RAM_BYTES = 16 * 1024 * 1024;
const PML4 = 0x70_0000n;
const GDT = 0x70_4000n;
const KERNEL_VBASE = 0xffff_ffff_8000_0000n;

/** The guest's symbols (nm). */
export function guestSymbols(): (name: string) => bigint {
  const text = new TextDecoder().decode(
    new Deno.Command("nm", { args: [GUEST_ELF] }).outputSync().stdout,
  );
  return (name) => {
    const match = new RegExp(`^(\\w+) \\w ${name}$`, "m").exec(text);
    if (match === null) throw new Error(`no symbol ${name} in ${GUEST_ELF}`);
    return BigInt(`0x${match[1]}`);
  };
}

/** A fake VM with the demo guest; vCPU 0 at work_loop(&layout.percpu[0]). */
export function demoVm(): FakeVm {
  const vm = new FakeVm({ ram: [{ gpa: 0n, size: RAM_BYTES }], active: [0] });
  loadElf(vm, Deno.readFileSync(GUEST_ELF));
  // PML4[0] and PML4[511] -> PDPTs whose [0] and [510] share one PD: 8 x 2 MiB from phys 0.
  vm.poke64(PML4, (PML4 + 0x3000n) | 3n);
  vm.poke64(PML4 + 511n * 8n, (PML4 + 0x1000n) | 3n);
  vm.poke64(PML4 + 0x1000n + 510n * 8n, (PML4 + 0x2000n) | 3n);
  vm.poke64(PML4 + 0x3000n, (PML4 + 0x2000n) | 3n);
  for (let i = 0n; i < 8n; i++) vm.poke64(PML4 + 0x2000n + i * 8n, (i << 21n) | 0x83n);
  // boot.S's selectors: 0x08 code32, 0x10 data, 0x18 code64.
  vm.poke64(GDT + 0x08n, 0x00cf_9a00_0000_ffffn);
  vm.poke64(GDT + 0x10n, 0x00cf_9200_0000_ffffn);
  vm.poke64(GDT + 0x18n, 0x00af_9a00_0000_ffffn);

  // The fake's own translations (vm_gla2gpa_nofault) for the debugger's reads: the kernel map.
  for (let page = 0n; page < BigInt(RAM_BYTES); page += 0x1000n) {
    vm.pages.set(KERNEL_VBASE + page, page);
  }

  const at = guestSymbols();
  // A caller's frame: kmain called work_loop (its last instruction, 5 bytes), rbp chain ends.
  const stackTop = at("stacks") + 0x4000n;
  const sp = stackTop - 0x18n;
  vm.poke64(sp - KERNEL_VBASE, at("kmain") + 0x1a6n + 5n);
  vm.poke64(sp + 8n - KERNEL_VBASE, 0n);
  const scalars: Partial<Record<keyof typeof SCALAR_IDS, bigint>> = {
    rip: at("work_loop"),
    rdi: at("layout") + 0x80n, // &layout.percpu[0]
    rsp: sp,
    rbp: sp + 8n,
    eflags: 0x2n,
    cr0: 0x8001_0011n,
    cr3: PML4,
    cr4: 0x20n,
    efer: 0x500n,
    dr6: 0xffff_0ff0n,
    dr7: 0x400n,
  };
  for (const [name, id] of Object.entries(SCALAR_IDS)) {
    vm.setReg(0, id, scalars[name as keyof typeof SCALAR_IDS] ?? 0n);
  }
  const flat = (selector: number, access: number) => ({
    selector,
    base: 0n,
    limit: 0xffff_ffff,
    access,
  });
  const segments: [number, ReturnType<typeof flat>][] = [
    [VmReg.CS, flat(0x18, 0xa09b)],
    [VmReg.SS, flat(0x10, 0xc093)],
    [VmReg.DS, flat(0x10, 0xc093)],
    [VmReg.ES, flat(0x10, 0xc093)],
    [VmReg.FS, flat(0x10, 0xc093)],
    [VmReg.GS, flat(0x10, 0xc093)],
    [VmReg.LDTR, { selector: 0, base: 0n, limit: 0, access: 0x1_0000 }],
    [VmReg.TR, { selector: 0, base: 0n, limit: 0xffff, access: 0x8b }],
  ];
  for (const [id, seg] of segments) {
    vm.setReg(0, id, BigInt(seg.selector));
    vm.segs.set(`0:${id}`, { base: seg.base, limit: seg.limit, access: seg.access });
  }
  vm.segs.set(`0:${VmReg.GDTR}`, { base: GDT, limit: 0x1f, access: 0 });
  vm.segs.set(`0:${VmReg.IDTR}`, { base: 0n, limit: 0, access: 0 });
  return vm;
}

/** Copies each PT_LOAD segment to its physical address (bss zero, as RAM already is). */
function loadElf(vm: FakeVm, image: Uint8Array): void {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const phoff = Number(view.getBigUint64(0x20, true));
  const phentsize = view.getUint16(0x36, true);
  for (let i = 0; i < view.getUint16(0x38, true); i++) {
    const at = phoff + i * phentsize;
    if (view.getUint32(at, true) !== 1) continue;
    const offset = Number(view.getBigUint64(at + 8, true));
    const paddr = view.getBigUint64(at + 24, true);
    const fileSize = Number(view.getBigUint64(at + 32, true));
    if (fileSize > 0) vm.poke(paddr, image.subarray(offset, offset + fileSize));
  }
}
