import assert from "node:assert/strict";
import { registerByName } from "../../vmm/registers.ts";
import { VmTarget } from "../../vmm/target.ts";
import { X2APIC_NOTE } from "../../vmm/x2apic.ts";
import { FakeVm } from "./fake_vmm.ts";

/** vCPU 0 in xAPIC mode (TPR 0x50), vCPU 1 in x2APIC mode; bhyve allows x2APIC (-x). */
function vm(): FakeVm {
  const fake = new FakeVm({ active: [0, 1] });
  Object.assign(fake, { x2apicAllowed: () => true });
  fake.kernemu.set(0xfee0_0030n, 0x0005_0014n);
  fake.kernemu.set(0xfee0_0080n, 0x50n);
  fake.kernemu.set(0xfee0_0020n, 0n);
  const read = fake.readKernemu.bind(fake);
  fake.readKernemu = (vcpu, gpa, size) => vcpu === 1 ? 0n : read(vcpu, gpa, size);
  return fake;
}

Deno.test("monitor lapic says x2APIC mode instead of showing zeros", async () => {
  const target = new VmTarget(vm());
  await target.stop();
  assert.match(await target.monitor("lapic", 1), /Version\s+\(\+0x030\) 0x00050014/);
  assert.equal(await target.monitor("lapic", 2), `local APIC of vCPU 1: ${X2APIC_NOTE}\n`);
  await target.close();
});

Deno.test("cr8 falls back to the TPR in xAPIC mode and is unavailable in x2APIC mode", async () => {
  const target = new VmTarget(vm());
  await target.stop();
  const cr8 = registerByName("cr8")!.regnum;
  assert.equal(target.readRegisters(1)[cr8]?.[0], 5);
  assert.equal(target.readRegisters(2)[cr8], undefined);
  await target.close();
});
