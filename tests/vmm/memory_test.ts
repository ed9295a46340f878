import assert from "node:assert/strict";
import { TargetError } from "../../rsp/target.ts";
import { EFAULT, GuestMemory } from "../../vmm/memory.ts";
import { CpuMode, type GuestPaging, PagingMode } from "../../vmm/vmmapi.ts";
import { FakeVm, vmmError } from "./fake_vmm.ts";

const paging: GuestPaging = {
  cr3: 0x1000n,
  cpl: 0,
  cpuMode: CpuMode.LONG,
  pagingMode: PagingMode.LEVEL4,
};

function fake(): FakeVm {
  const vm = new FakeVm({
    ram: [{ gpa: 0n, size: 0x10000 }, { gpa: 0x1_0000_0000n, size: 0x2000 }],
  });
  for (let i = 0; i < 0x10000; i++) vm.ram[0]!.bytes[i] = i & 0xff;
  vm.ram[1]!.bytes.fill(0xee);
  return vm;
}

Deno.test("routing: RAM, in-kernel devices, and a refusal naming the address", () => {
  const m = new GuestMemory(fake());
  assert.equal(m.route(0x8000n).kind, "ram");
  assert.equal(m.route(0x1_0000_1fffn).kind, "ram");
  const lapic = m.route(0xfee0_0020n);
  assert.equal(lapic.kind === "device" && lapic.device.name, "local APIC");
  const mmio = m.route(0xc000_0000n);
  assert.equal(mmio.kind, "refused");
  assert.match(
    (mmio as { reason: string }).reason,
    /^0xc0000000 is not guest RAM: it is MMIO emulated inside the bhyve process/,
  );
});

Deno.test("a physical read stops where RAM ends; nothing readable is EFAULT", () => {
  const vm = fake();
  const m = new GuestMemory(vm);
  const tail = m.readPhysical(0, 0xfff0n, 0x40);
  assert.equal(tail.length, 0x10);
  assert.equal(tail[0], 0xf0);
  assert.throws(() => m.readPhysical(0, 0x2_0000n, 4), (e: unknown) => {
    assert.ok(e instanceof TargetError);
    assert.equal(e.code, EFAULT);
    assert.match(e.message, /Cannot read guest memory: 0x20000 is not guest RAM/);
    return true;
  });
});

Deno.test("in-kernel device reads use aligned 4-byte kernemu accesses", () => {
  const vm = fake();
  vm.kernemu.set(0xfec0_0000n, 0x0300_0000n); // I/O APIC IOREGSEL
  vm.kernemu.set(0xfec0_0004n, 0x4433_2211n);
  const m = new GuestMemory(vm);
  assert.deepEqual([...m.readPhysical(0, 0xfec0_0003n, 3)], [0x03, 0x11, 0x22]);
  // A register kernemu refuses ends the read there.
  assert.deepEqual([...m.readPhysical(0, 0xfec0_0000n, 12)], [0, 0, 0, 3, 0x11, 0x22, 0x33, 0x44]);
  assert.throws(() => m.readPhysical(0, 0xfee0_0100n, 4), /kernemu_device: EINVAL/);
});

Deno.test("the local APIC is read only at its 16-byte aligned registers", () => {
  const vm = fake();
  vm.kernemu.set(0xfee0_0020n, 0x0300_0000n); // APIC ID 3
  vm.kernemu.set(0xfee0_0030n, 0x0005_0014n); // version
  const m = new GuestMemory(vm);
  // vmm refuses 0x24..0x2f (EINVAL): reserved, read as 0 without asking.
  assert.deepEqual(
    [...m.readPhysical(0, 0xfee0_0020n, 0x14)],
    [0, 0, 0, 3, ...new Array(12).fill(0), 0x14, 0, 5, 0],
  );
  assert.equal(vm.calls.filter((c) => c === "vm_readwrite_kernemu_device").length, 2);
});

Deno.test("a local APIC in x2APIC mode is refused with the reason, not read as zeros", () => {
  const vm = fake();
  Object.assign(vm, { x2apicAllowed: () => true });
  vm.kernemu.set(0xfee0_0020n, 0n); // vlapic_read: 0 for MMIO in x2APIC mode
  vm.kernemu.set(0xfee0_0030n, 0n);
  const m = new GuestMemory(vm);
  assert.throws(
    () => m.readPhysical(0, 0xfee0_0020n, 4),
    /the local APIC is in x2APIC mode: not memory-mapped/,
  );
});

Deno.test("virtual reads translate once per page and split at page boundaries", () => {
  const vm = fake();
  vm.pages.set(0xffff_8000_0000_0000n, 0x3000n);
  vm.pages.set(0xffff_8000_0000_1000n, 0x7000n);
  const m = new GuestMemory(vm);
  const bytes = m.readVirtual(1, paging, 0xffff_8000_0000_0ff0n, 0x20);
  assert.equal(bytes.length, 0x20);
  assert.deepEqual([...bytes.subarray(0, 2)], [0xf0, 0xf1]); // 0x3ff0
  assert.deepEqual([...bytes.subarray(0x10, 0x12)], [0x00, 0x01]); // 0x7000
  assert.equal(vm.calls.filter((c) => c === "vm_gla2gpa_nofault").length, 2);
});

Deno.test("virtual reads: short at an unmapped page, EFAULT with the address when none", () => {
  const vm = fake();
  vm.pages.set(0xffff_8000_0000_0000n, 0x3000n);
  const m = new GuestMemory(vm);
  assert.equal(m.readVirtual(2, paging, 0xffff_8000_0000_0f00n, 0x200).length, 0x100);
  assert.throws(
    () => m.readVirtual(2, paging, 0xffff_8000_0000_1000n, 8),
    (e: unknown) => {
      assert.ok(e instanceof TargetError);
      assert.equal(e.code, 14);
      assert.equal(
        e.message,
        "Cannot read guest memory: 0xffff800000001000 is not mapped on vCPU 2",
      );
      return true;
    },
  );
});

Deno.test("virtual reads reaching MMIO say so", () => {
  const vm = fake();
  vm.pages.set(0xffff_8000_0000_0000n, 0xc000_0000n);
  const m = new GuestMemory(vm);
  assert.throws(
    () => m.readVirtual(0, paging, 0xffff_8000_0000_0010n, 8),
    /0xc0000010 is not guest RAM: it is MMIO emulated inside the bhyve process .* \(virtual address 0xffff800000000010 on vCPU 0\)/,
  );
});

Deno.test("a failed translation call is an EFAULT TargetError, not a crash", () => {
  const vm = fake();
  vm.gla2gpa = () => {
    throw vmmError("vm_gla2gpa_nofault", "EFAULT");
  };
  const m = new GuestMemory(vm);
  assert.throws(() => m.readVirtual(0, paging, 0x1000n, 8), (e: unknown) => {
    assert.ok(e instanceof TargetError);
    assert.equal(e.code, EFAULT);
    assert.match(e.message, /translating 0x1000 on vCPU 0 failed: vm_gla2gpa_nofault/);
    return true;
  });
});
