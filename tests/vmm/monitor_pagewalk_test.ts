/** `monitor pagewalk`: numbers, register names, and a vCPU without paging. */
import assert from "node:assert/strict";
import { VmTarget } from "../../vmm/mod.ts";
import { VmReg } from "../../vmm/vmmapi.ts";
import { FakeVm } from "./fake_vmm.ts";

/** vCPU 0: long mode, 4-level paging, rip and rsp in a page mapped at 0xffff800000000000. vCPU 1: real mode. */
function vm(): FakeVm {
  const vm = new FakeVm({ active: [0, 1], ram: [{ gpa: 0n, size: 0x20000 }] });
  vm.setReg(0, VmReg.CR0, 0x8000_0001n);
  vm.setReg(0, VmReg.CR4, 0x20n);
  vm.setReg(0, VmReg.EFER, 0x500n);
  vm.setReg(0, VmReg.CR3, 0x1000n);
  vm.setReg(0, VmReg.RIP, 0xffff_8000_0000_0123n);
  vm.setReg(0, VmReg.RSP, 0xffff_8000_0000_0ff0n);
  vm.poke64(0x1000n + 256n * 8n, 0x2003n);
  vm.poke64(0x2000n, 0x3003n);
  vm.poke64(0x3000n, 0x4003n);
  vm.poke64(0x4000n, 0x5003n);
  vm.pages.set(0xffff_8000_0000_0000n, 0x5000n);
  vm.setReg(1, VmReg.CR0, 0x10n);
  vm.setReg(1, VmReg.RIP, 0xfff0n);
  return vm;
}

const fast = { heldPollMs: 5, runningPollMs: 5 };

Deno.test("monitor pagewalk: a register name, $reg and gdb's $pc/$sp read the vCPU's register", async () => {
  const target = new VmTarget(vm(), fast);
  await target.stop();
  for (const arg of ["rip", "$rip", "$pc", "pc", "RIP"]) {
    const walk = await target.monitor(`pagewalk ${arg}`, 1);
    assert.match(walk, /^rip = 0xffff800000000123 on vCPU 0 \(4-level paging\):/, arg);
    assert.match(walk, /-> 0x5123 \(4 KiB page\)/, arg);
  }
  assert.match(
    await target.monitor("pagewalk $sp", 1),
    /^rsp = 0xffff800000000ff0 .*\n(.*\n)*.*-> 0x5ff0/,
  );
  assert.match(
    await target.monitor("pagewalk ffff800000000010", 1),
    /^0xffff800000000010 on vCPU 0/,
  );
  assert.match(
    await target.monitor("pagewalk $nosuch", 1),
    /^no register named \$nosuch.*\nusage:/,
  );
  assert.match(
    await target.monitor("pagewalk xyz", 1),
    /'xyz' is neither a hexadecimal address nor a register/,
  );
  assert.match(
    await target.monitor("pagewalk $st0", 1),
    /^st0 is unavailable on this vCPU\nusage:/,
  );
  await target.detach();
});

Deno.test("monitor pagewalk: without paging, one coherent answer (the address is physical)", async () => {
  const target = new VmTarget(vm(), fast);
  await target.stop();
  const walk = await target.monitor("pagewalk $pc", 2);
  assert.equal(
    walk,
    "rip = 0xfff0 on vCPU 1 (real mode, no paging):\n" +
      "  no page tables to walk: with paging off the address is the guest-physical address\n" +
      "  -> 0xfff0\n  reads: guest RAM (memory segment 0)\n",
  );
  assert.doesNotMatch(await target.monitor("pagewalk 0x100000000", 2), /not mapped|vm_gla2gpa/);
  await target.detach();
});
