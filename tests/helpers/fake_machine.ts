/**
 * A machine for core-dump tests where the test VM cannot run: a {@link FakeVm} whose RAM holds
 * the demo guest (guest.elf's segments at their physical addresses, so its own boot page tables
 * at 0x9000 map the kernel at -2 GiB), four vCPUs in the demo's modes, and a string in vCPU 0's
 * private page. gdb then reads the core of it with guest.elf's symbols.
 */
import { VmReg } from "../../vmm/vmmapi.ts";
import * as L from "../testvm/layout.ts";
import { FakeVm, ramEntry } from "../vmm/fake_vmm.ts";

export const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
/** The demo guest's boot PML4 (guest/boot.S). */
export const BOOT_CR3 = 0x9000n;
export const PRIVATE_TEXT = "vcpu0 private page";

/** Adds `bytes` as system memory (RAM) at `gpa` to `vm`, sharing the buffer. */
export function addRam(vm: FakeVm, gpa: bigint, bytes: Uint8Array): void {
  vm.ram.push(ramEntry(gpa, bytes));
}

/** Symbol addresses of guest.elf, from nm. */
export async function symbols(): Promise<Map<string, bigint>> {
  const out = await new Deno.Command("nm", { args: [GUEST_ELF], stdout: "piped" }).output();
  const map = new Map<string, bigint>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [addr, , name] = line.split(" ");
    if (addr && name) map.set(name, BigInt(`0x${addr}`));
  }
  return map;
}

/** Loads guest.elf's PT_LOAD segments into `vm`'s RAM at their physical addresses. */
function loadElf(vm: FakeVm, elf: Uint8Array): void {
  const v = new DataView(elf.buffer, elf.byteOffset);
  const phoff = Number(v.getBigUint64(32, true));
  const phnum = v.getUint16(56, true);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * 56;
    if (v.getUint32(at, true) !== 1) continue;
    const offset = Number(v.getBigUint64(at + 8, true));
    const paddr = v.getBigUint64(at + 24, true);
    const filesz = Number(v.getBigUint64(at + 32, true));
    if (filesz > 0) vm.poke(paddr, elf.subarray(offset, offset + filesz));
  }
}

/** The fake demo machine: `ramMiB` of RAM at 0, vCPUs 0-3 as the demo guest runs them. */
export async function fakeDemoMachine(ramMiB = 32): Promise<FakeVm> {
  const vm = new FakeVm({ active: [0, 1, 2, 3], ram: [{ gpa: 0n, size: ramMiB << 20 }] });
  loadElf(vm, await Deno.readFile(GUEST_ELF));
  vm.poke(0x50_0000n, new TextEncoder().encode(`${PRIVATE_TEXT}\0`));
  const sym = await symbols();
  const long = (vcpu: number, rip: bigint, rsp: bigint) => {
    vm.setReg(vcpu, VmReg.CR0, 0x8000_0011n);
    vm.setReg(vcpu, VmReg.CR3, BOOT_CR3);
    vm.setReg(vcpu, VmReg.CR4, 0x20n);
    vm.setReg(vcpu, VmReg.EFER, 0xd00n);
    vm.setReg(vcpu, VmReg.RIP, rip);
    vm.setReg(vcpu, VmReg.RSP, rsp);
    vm.setReg(vcpu, VmReg.CS, 0x8n);
    vm.setReg(vcpu, VmReg.RAX, 0x1000n + BigInt(vcpu));
  };
  long(0, sym.get("spin")! + 12n, 0xffff_ffff_8014_0000n);
  long(1, sym.get("ap_main")!, 0xffff_ffff_8013_0000n);
  vm.setReg(2, VmReg.CR0, 0x11n);
  vm.setReg(2, VmReg.RIP, sym.get("pae32_main")!);
  vm.setReg(3, VmReg.RIP, 0xfff0n);
  vm.segs.set(`0:${VmReg.CS}`, { base: 0n, limit: 0xffff_ffff, access: 0xa09b });
  vm.segs.set(`0:${VmReg.IDTR}`, { base: 0xffff_ffff_8010_0000n, limit: 0xfff, access: 0 });
  return vm;
}
