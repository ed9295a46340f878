import assert from "node:assert/strict";
import { TargetError, TargetGoneError } from "../../rsp/target.ts";
import { registerByName } from "../../vmm/registers.ts";
import { VmTarget, waitAndHold, waitForVm } from "../../vmm/mod.ts";
import { type Vmmapi, VmReg } from "../../vmm/vmmapi.ts";
import { FakeVm, vmmError } from "./fake_vmm.ts";

const CR0_PE_PG = 0x8000_0001n;
const CR4_PAE = 0x20n;
const EFER_LME_LMA = 0x500n;

/** Two vCPUs in long mode with 4-level paging; vCPU 1 maps one page at 0xffff800000000000. */
function longModeVm(): FakeVm {
  const vm = new FakeVm({ active: [0, 1], ram: [{ gpa: 0n, size: 0x20000 }] });
  for (const vcpu of [0, 1]) {
    vm.setReg(vcpu, VmReg.CR0, CR0_PE_PG);
    vm.setReg(vcpu, VmReg.CR4, CR4_PAE);
    vm.setReg(vcpu, VmReg.EFER, EFER_LME_LMA);
    vm.setReg(vcpu, VmReg.CR3, 0x1000n);
    vm.setReg(vcpu, VmReg.RIP, 0xffff_ffff_8000_0000n + BigInt(vcpu));
  }
  // Page tables at 0x1000.. for the walker (monitor pagewalk): 0xffff800000000000 -> 0x5000.
  vm.poke64(0x1000n + 256n * 8n, 0x2003n);
  vm.poke64(0x2000n, 0x3003n);
  vm.poke64(0x3000n, 0x4003n);
  vm.poke64(0x4000n, 0x5003n);
  vm.pages.set(0xffff_8000_0000_0000n, 0x5000n);
  vm.poke(0x5000n, new TextEncoder().encode("hello, debugger"));
  return vm;
}

const fast = { heldPollMs: 5, runningPollMs: 5 };

Deno.test("threads are the active vCPUs, id = vCPU + 1, with their state and mode", async () => {
  const vm = longModeVm();
  const target = new VmTarget(vm, fast);
  await target.stop();
  assert.deepEqual(target.threads(), [
    { id: 1, name: "vCPU 0", extra: "vCPU 0, held by debugger, long mode, 4-level paging" },
    { id: 2, name: "vCPU 1", extra: "vCPU 1, held by debugger, long mode, 4-level paging" },
  ]);
  assert.throws(() => target.readRegisters(3), (e: unknown) => {
    assert.ok(e instanceof TargetError);
    assert.equal(e.code, 3);
    assert.match(e.message, /Thread 3 is not an active vCPU \(active: vCPU 0 = thread 1/);
    return true;
  });
  await target.close();
  assert.ok(vm.closed);
});

Deno.test("every stop is an interrupt (the session picks the signal); registers are cached while held", async () => {
  const vm = longModeVm();
  const target = new VmTarget(vm, fast);
  const held = { kind: "stopped", thread: 1, signal: 5, reason: { type: "interrupt" } };
  assert.deepEqual(await target.stop(), held);
  const rip = registerByName("rip")!.regnum;
  const regs = target.readRegisters(2);
  assert.deepEqual([...regs[rip]!], [1, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff]);
  assert.equal(regs[registerByName("st0")!.regnum], undefined);
  const batches = vm.calls.filter((c) => c === "vm_get_register_set").length;
  target.readRegisters(2);
  assert.deepEqual(target.readRegister(2, rip), regs[rip]);
  assert.equal(vm.calls.filter((c) => c === "vm_get_register_set").length, batches);
  await target.resume();
  assert.deepEqual([...vm.debug], []);
  vm.setReg(1, VmReg.RIP, 0x1234n);
  assert.deepEqual(await target.stop(), held);
  assert.deepEqual([...target.readRegister(2, rip)!], [0x34, 0x12, 0, 0, 0, 0, 0, 0]);
  await target.detach();
});

Deno.test("memory reads go through the thread's paging, or physical in phys mode", async () => {
  const vm = longModeVm();
  const target = new VmTarget(vm, fast);
  await target.stop();
  const text = new TextDecoder().decode(target.readMemory(2, 0xffff_8000_0000_0000n, 15));
  assert.equal(text, "hello, debugger");
  assert.match(await target.monitor("phys on", 2), /guest-physical/);
  assert.equal(new TextDecoder().decode(target.readMemory(2, 0x5000n, 5)), "hello");
  await target.monitor("phys off", 2);
  assert.throws(() => target.readMemory(2, 0x5000n, 5), /0x5000 is not mapped on vCPU 1/);
  await target.detach();
});

Deno.test("monitor: help, vcpus, pagewalk, memmap, lapic, and unknown commands", async () => {
  const vm = longModeVm();
  vm.kernemu.set(0xfee0_0020n, 0x0100_0000n);
  const target = new VmTarget(vm, fast);
  await target.stop();
  assert.match(await target.monitor("help", 1), /pagewalk ADDR/);
  assert.match(
    await target.monitor("vcpus", 1),
    /vCPU 1 \(thread 2\): held by debugger, long mode, 4-level paging, cr3=0x1000/,
  );
  const walk = await target.monitor("pagewalk 0xffff800000000010", 2);
  assert.match(walk, /PML4 \[256\] at 0x1800 = 0x0000000000002003 P W S/);
  assert.match(walk, /PT {3}\[ {2}0\] at 0x4000 = 0x0000000000005003/);
  assert.match(walk, /-> 0x5010 \(4 KiB page\)/);
  assert.match(walk, /vm_gla2gpa_nofault: 0x5010/);
  assert.match(await target.monitor("pagewalk", 2), /usage/);
  assert.match(await target.monitor("memmap", 1), /0x0000000000000000-0x000000000001ffff {2}RAM/);
  const lapic = await target.monitor("lapic", 1);
  assert.match(lapic, /ID +\(\+0x020\) 0x01000000/);
  assert.match(lapic, /TPR .*unreadable/);
  assert.match(await target.monitor("frobnicate", 1), /Unknown monitor command "frobnicate"/);
  // Linux's gdb scripts take a non-empty answer as "thread N is CPU N-1" (QEMU's numbering).
  assert.match(
    await target.monitor("info version", 1),
    /^bhyve-gdbstub \d+\.\d+\.\d+ .*thread N is vCPU N-1/,
  );
  assert.match(await target.monitor("info registers", 1), /usage: monitor info version/);
  await target.detach();
});

Deno.test("unsupported capabilities explain why", () => {
  const target = new VmTarget(new FakeVm(), fast);
  // Without an emulator: stepping and breakpoints say why native ones are impossible, and why
  // emulation is unavailable.
  assert.match(
    target.unsupported("step")!,
    /^Single-step is not available: .*outside bhyve.*MTRAP.*emulation is unavailable/,
  );
  assert.match(
    target.unsupported("breakpoint")!,
    /^Breakpoints are not available: .*by emulation.*unavailable/,
  );
  assert.match(
    target.unsupported("write-memory")!,
    /started without --allow-write, so it never writes/,
  );
  assert.match(target.unsupported("write-register")!, /started without --allow-write/);
});

Deno.test("the VM vanishing: reads throw TargetGoneError, waitForStop resolves exited", async () => {
  const vm = longModeVm();
  const target = new VmTarget(vm, fast);
  await target.stop();
  await target.resume();
  const waiting = target.waitForStop(new AbortController().signal);
  vm.gone = true;
  const event = await waiting;
  assert.equal(event.kind, "exited");
  assert.throws(() => target.readRegisters(1), TargetGoneError);
  assert.equal((await target.stop()).kind, "exited");
  await target.detach();
});

Deno.test("waitForStop rejects with AbortError when aborted", async () => {
  const target = new VmTarget(longModeVm(), fast);
  const controller = new AbortController();
  const waiting = target.waitForStop(controller.signal);
  controller.abort();
  await assert.rejects(waiting, { name: "AbortError" });
});

Deno.test("w mode: waits for the VM to appear, then holds its first active vCPU", async () => {
  const vm = new FakeVm({ active: [] });
  let opens = 0;
  const api: Vmmapi = {
    generation: "0200",
    path: "fake",
    open() {
      if (++opens < 3) throw vmmError("vm_open", "ENOENT");
      return vm;
    },
    close() {},
  };
  setTimeout(() => vm.active.add(0), 30);
  const target = await waitAndHold(api, "fake", { intervalMs: 5, ...fast });
  assert.equal(opens, 3);
  assert.deepEqual([...target.control.mine], [0]);
  assert.ok(vm.debug.has(0));
  assert.equal((await target.stop()).kind, "stopped");
  await target.close();
  assert.deepEqual([...vm.debug], []);

  const controller = new AbortController();
  const never: Vmmapi = {
    ...api,
    open: () => {
      throw vmmError("vm_open", "ENOENT");
    },
  };
  const waiting = waitForVm(never, "nope", { signal: controller.signal, intervalMs: 5 });
  controller.abort();
  await assert.rejects(waiting, { name: "AbortError" });
});

Deno.test("the held poll holds an AP bhyve releases, and resume runs it", async () => {
  const vm = longModeVm();
  vm.active.add(2);
  vm.debug.add(2);
  const target = new VmTarget(vm, fast);
  await target.stop();
  vm.debug.delete(2);
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(vm.debug.has(2));
  await target.resume();
  assert.deepEqual([...vm.debug], []);
});

Deno.test("a per-thread resume runs that vCPU only; the held poll leaves it running", async () => {
  const vm = longModeVm();
  const target = new VmTarget(vm, fast);
  await target.stop();
  await target.resume([2]);
  assert.deepEqual([...vm.debug], [0]);
  assert.match(target.threads()[1]!.extra, /^vCPU 1, running/);
  await new Promise((r) => setTimeout(r, 30)); // several held polls
  assert.deepEqual([...vm.debug], [0]);
  await target.stop();
  assert.deepEqual([...vm.debug].sort(), [0, 1]);
  await assert.rejects(() => target.resume([7]), /Thread 7 is not an active vCPU/);
  assert.deepEqual([...vm.debug].sort(), [0, 1], "a bad thread resumes nothing");
  await target.detach();
  assert.deepEqual([...vm.debug], []);
});

Deno.test("writes: refused without --allow-write; with it, page by page, registers, caches dropped", async () => {
  const readOnly = new VmTarget(longModeVm(), fast);
  await readOnly.stop();
  assert.match(readOnly.unsupported("write-memory")!, /started without --allow-write/);
  assert.throws(
    () => readOnly.writeMemory(2, 0xffff_8000_0000_0000n, Uint8Array.of(1)),
    /started without --allow-write/,
  );
  assert.throws(() => readOnly.writeRegister(1, 0, new Uint8Array(8)), /without --allow-write/);
  await readOnly.detach();

  const vm = longModeVm();
  const target = new VmTarget(vm, { ...fast, allowWrite: true });
  assert.equal(target.unsupported("write-register"), undefined);
  assert.throws(
    () => target.writeRegister(1, 0, new Uint8Array(8)),
    /vCPU 0 is running: stop it before writing/,
  );
  await target.stop();
  const hello = 0xffff_8000_0000_0000n;
  assert.equal(new TextDecoder().decode(target.readMemory(2, hello, 5)), "hello");
  target.writeMemory(2, hello, new TextEncoder().encode("HE"));
  assert.equal(new TextDecoder().decode(target.readMemory(2, hello, 5)), "HEllo");
  // Across the page end: the next page does not translate, so 3 of 6 bytes are written.
  assert.throws(
    () => target.writeMemory(2, hello + 0xffdn, Uint8Array.of(1, 2, 3, 4, 5, 6)),
    /^TargetError: Wrote 3 of 6 bytes at 0xffff800000000ffd, then stopped: 0xffff800000001000 is not mapped on vCPU 1$/,
  );
  assert.deepEqual([...vm.ram[0]!.bytes.subarray(0x5ffd, 0x6000)], [1, 2, 3]);
  // In-kernel MMIO (phys mode): refused, nothing written.
  target.physicalMode = true;
  assert.throws(
    () => target.writeMemory(1, 0xfee0_0020n, Uint8Array.of(1)),
    /^TargetError: Cannot write guest memory: 0xfee00020 is the local APIC: writes to MMIO are refused$/,
  );
  target.physicalMode = false;

  const rip = registerByName("rip")!.regnum;
  const rax = registerByName("rax")!.regnum;
  assert.deepEqual([...target.readRegister(2, rip)!], [1, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff]);
  target.writeRegister(2, rip, Uint8Array.of(0x10, 0x20, 0, 0x80, 0xff, 0xff, 0xff, 0xff));
  target.writeRegister(1, rax, Uint8Array.of(0x2a, 0, 0, 0, 0, 0, 0, 0));
  assert.ok(vm.calls.includes(`vm_set_register 1 ${VmReg.RIP}`));
  assert.deepEqual([...target.readRegister(2, rip)!], [
    0x10,
    0x20,
    0,
    0x80,
    0xff,
    0xff,
    0xff,
    0xff,
  ]);
  assert.equal(target.readRegisters(1)[rax]![0], 0x2a, "the register cache was dropped");
  assert.throws(
    () => target.writeRegister(1, registerByName("st0")!.regnum, new Uint8Array(10)),
    /Register st0 cannot be written: libvmmapi has no call that sets it/,
  );
  await target.detach();
});

Deno.test("a per-thread resume of a vCPU bhyve holds runs nothing and says why", async () => {
  const vm = longModeVm();
  vm.debug.add(1); // an AP bhyve has not started
  const target = new VmTarget(vm, fast);
  await target.stop();
  await assert.rejects(
    () => target.resume([2]),
    /^TargetError: Nothing to run: vCPU 1 is held by bhyve \(bhyve starts an AP itself, on its SIPI\)$/,
  );
  assert.deepEqual([...vm.debug].sort(), [0, 1]);
  await target.detach();
});
