/**
 * vmm/emulation.ts with the real emulator: a vCPU's state captured from a (fake) VM handle,
 * executed, and committed through the write paths: changed registers (RIP last) and the bytes
 * written; a refused instruction commits nothing.
 */
import assert from "node:assert/strict";
import { loadEmulator } from "../../ffi/emulator.ts";
import { type CommitPaths, Emulation, SCALAR_IDS } from "../../vmm/emulation.ts";
import { VmTarget } from "../../vmm/target.ts";
import { VmReg } from "../../vmm/vmmapi.ts";
import { CODE, DATA, longModeState, RAM_BYTES, unicornPath, writeMachine } from "../emu/machine.ts";
import { FakeVm } from "./fake_vmm.ts";

/** A fake VM holding the tiny machine, vCPU 0 at CODE in long mode. */
function machineVm(code: number[]): FakeVm {
  const vm = new FakeVm({ ram: [{ gpa: 0n, size: RAM_BYTES }] });
  const file = Deno.makeTempFileSync();
  writeMachine(file, code);
  vm.poke(0n, Deno.readFileSync(file));
  Deno.removeSync(file);
  const state = longModeState();
  for (const [name, id] of Object.entries(SCALAR_IDS)) {
    vm.setReg(0, id, state.scalars[name as keyof typeof SCALAR_IDS]);
  }
  const segs = [
    ["cs", VmReg.CS],
    ["ss", VmReg.SS],
    ["ds", VmReg.DS],
    ["es", VmReg.ES],
    [
      "fs",
      VmReg.FS,
    ],
    ["gs", VmReg.GS],
    ["ldtr", VmReg.LDTR],
    ["tr", VmReg.TR],
  ] as const;
  for (const [name, id] of segs) {
    const seg = state.segments[name];
    vm.setReg(0, id, BigInt(seg.selector));
    vm.segs.set(`0:${id}`, { base: seg.base, limit: seg.limit, access: seg.access });
  }
  vm.segs.set(`0:${VmReg.GDTR}`, { ...state.gdtr, access: 0 });
  vm.segs.set(`0:${VmReg.IDTR}`, { ...state.idtr, access: 0 });
  return vm;
}

function writerFor(vm: FakeVm, log: string[]): CommitPaths {
  return {
    setRegister(vcpu, reg, value) {
      log.push(`reg ${reg}`);
      vm.setReg(vcpu, reg, value);
    },
    writePhysical(gpa, bytes) {
      log.push(`ram 0x${gpa.toString(16)}`);
      vm.poke(gpa, bytes);
    },
  };
}

Deno.test("an emulated step commits the changed registers (RIP last) and the written bytes", async () => {
  // mov rax, 0x1234; mov [DATA], rax
  const vm = machineVm([
    ...[0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00],
    ...[0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00],
  ]);
  const lib = loadEmulator(unicornPath());
  const log: string[] = [];
  const emulation = new Emulation(vm, lib, writerFor(vm, log));
  try {
    const one = await emulation.run(0, 1);
    assert.equal(one.stop.kind, "count");
    assert.deepEqual(log, [`reg ${VmReg.RAX}`, `reg ${VmReg.RIP}`]);
    assert.equal(vm.getRegister(0, VmReg.RIP), CODE + 7n);
    assert.equal(vm.getRegister(0, VmReg.RAX), 0x1234n);

    log.length = 0;
    await emulation.run(0, 1);
    assert.deepEqual(log, [`ram 0x${DATA.toString(16)}`, `reg ${VmReg.RIP}`]);
    const bytes = new Uint8Array(2);
    vm.readRam(DATA, bytes);
    assert.deepEqual(bytes, Uint8Array.of(0x34, 0x12));
    assert.equal(emulation.last?.executed, 1);
  } finally {
    emulation.forget();
    lib.close();
  }
});

Deno.test("a refused instruction commits nothing", async () => {
  const vm = machineVm([0xe4, 0x60]); // in al, 0x60
  const lib = loadEmulator(unicornPath());
  const log: string[] = [];
  const emulation = new Emulation(vm, lib, writerFor(vm, log));
  try {
    const run = await emulation.run(0, 1);
    assert.equal(run.stop.kind, "refused");
    assert.match((run.stop as { message: string }).message, /IN: port I\/O/);
    assert.deepEqual(log, []);
    assert.equal(vm.getRegister(0, VmReg.RIP), CODE);
    assert.match(emulation.last!.stop, /refused/);
  } finally {
    emulation.forget();
    lib.close();
  }
});

Deno.test("VmTarget: step and an emulated continue to a breakpoint; without --allow-write a refusal", async () => {
  // l: inc rax; inc rbx; jmp l
  const code = [0x48, 0xff, 0xc0, 0x48, 0xff, 0xc3, 0xeb, 0xf8];
  const lib = loadEmulator(unicornPath());
  const vm = machineVm(code);
  const log: string[] = [];
  const target = new VmTarget(vm, {
    heldPollMs: 5,
    emulation: { factory: lib, writer: writerFor(vm, log) },
  });
  try {
    await target.stop();
    const step = await target.step(1, new AbortController().signal);
    assert.deepEqual(step, { kind: "stopped", thread: 1, signal: 5, reason: { type: "step" } });
    assert.equal(vm.getRegister(0, VmReg.RIP), CODE + 3n);
    // The register cache saw the commit.
    assert.deepEqual(target.readRegister(1, 16), Uint8Array.of(0x03, 0, 1, 0, 0, 0, 0, 0));

    target.insertBreakpoint({ kind: "hw", address: CODE + 6n, length: 1 });
    await target.resume();
    const hit = await target.waitForStop(new AbortController().signal);
    assert.deepEqual(hit, { kind: "stopped", thread: 1, signal: 5, reason: { type: "hwbreak" } });
    assert.equal(vm.getRegister(0, VmReg.RIP), CODE + 6n);
    assert.equal(vm.getRegister(0, VmReg.RBX), 1n);
    assert.match(
      await target.monitor("emulation", 1),
      /Last run: vCPU 0, 1 instructions.*breakpoint/s,
    );
    assert.match(await target.monitor("budget 1000 50", 1), /1000 instructions, 50 ms/);
  } finally {
    await target.close();
    lib.close();
  }
  const readOnly = new VmTarget(machineVm(code), { emulation: { factory: lib } });
  assert.match(readOnly.unsupported("step")!, /--allow-write/);
});

Deno.test("Ctrl-C ends an emulated continue (what ran is committed, the wait aborts); a detach runs natively", async () => {
  // l: inc rax; inc rbx; jmp l -- with a breakpoint it never reaches
  const lib = loadEmulator(unicornPath());
  const vm = machineVm([0x48, 0xff, 0xc0, 0x48, 0xff, 0xc3, 0xeb, 0xf8]);
  const target = new VmTarget(vm, {
    heldPollMs: 5,
    emulation: { factory: lib, writer: writerFor(vm, []) },
  });
  try {
    await target.stop();
    target.insertBreakpoint({ kind: "sw", address: CODE + 0x100n, length: 1 });
    await target.resume();
    const ctrlC = new AbortController();
    setTimeout(() => ctrlC.abort(), 300);
    await assert.rejects(target.waitForStop(ctrlC.signal), (e: Error) => e.name === "AbortError");
    const rax = vm.getRegister(0, VmReg.RAX);
    assert.ok(rax > 1000n, `ran ${rax} turns before the Ctrl-C`);
    const rip = vm.getRegister(0, VmReg.RIP);
    assert.ok([CODE, CODE + 3n, CODE + 6n].includes(rip), `at an instruction: ${rip}`);
    const stop = await target.stop();
    assert.equal(stop.kind, "stopped");
    assert.match(await target.monitor("emulation", 1), /interrupted \(Ctrl-C\)/);
  } finally {
    await target.close();
    lib.close();
  }
  // The breakpoint was still set at the detach: the guest runs on natively, not emulated.
  assert.deepEqual([...vm.debug], []);
});

Deno.test("without libunicorn, stepping says how to get it, on one line", () => {
  const target = new VmTarget(new FakeVm(), {
    allowWrite: true,
    emulation: { factory: "Cannot load libunicorn. Tried:\n  libunicorn.so.2: missing\nGet it." },
  });
  const why = target.unsupported("step")!;
  assert.match(
    why,
    /^Single-step is not available: .*outside bhyve.*Tried: libunicorn\.so\.2: missing Get it\.$/,
  );
  assert.ok(!why.includes("\n"));
});
