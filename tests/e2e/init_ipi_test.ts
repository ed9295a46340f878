/**
 * End-to-end: an INIT IPI puts a running AP back into bhyve's debug set, and the SIPI takes it
 * out (bhyve's VM_EXITCODE_IPI handler, usr.sbin/bhyve/amd64/vmexit.c; docs/bhyve-facts.md),
 * while the real gdb debugs the VM through bhyve-gdbstub. The AP bhyve parked must show as held
 * by bhyve and be left parked by continue and detach (resumed, it would run from a state bhyve
 * never set); once the guest's SIPI releases it, it is an ordinary vCPU again: held at the next
 * stop, resumed by detach.
 *
 * The guest sends the IPIs when the test turns its knobs (layout.init_ap, layout.sipi_ap), as a
 * kernel takes a CPU offline and brings it back: vCPU 4 (a long-mode AP, hence 5 vCPUs) sends
 * them to vCPU 1 (tests/testvm/guest/ap_chores.c). The second test catches the AP in a slow exit
 * when bhyve parks it: its registers are read only once its thread has parked. Runs in every version mode of the test VM
 * (TESTVM_VMM_VERSION; 13.x's bhyve handles INIT and SIPI the same way).
 */
import assert from "node:assert/strict";
import { loadVmmapi } from "../../ffi/mod.ts";
import { openTarget, VmReg } from "../../vmm/mod.ts";
import { GuestProbe } from "../helpers/guest.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { runLldbSession } from "../helpers/lldb.ts";
import { Stub } from "../helpers/stub.ts";
import { envVmmVersion, generationFor, LIBVMMAPI, TestVm, testvmBuilt } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
const AP = 1;
const knob = (offset: bigint) => L.LAYOUT_PHYS + offset;
/** gdb commands showing the AP's RIP and loop counter, and what they printed. */
const SHOW_AP = [`thread ${AP + 1}`, "p/x $pc", `p layout.percpu[${AP}].counter`];
function apShown(text: string): { pc: string; counter: bigint } {
  const pc = /\$\d+ = (0x[0-9a-f]+)/.exec(text)?.[1];
  const counter = /\$\d+ = (\d+)\s*$/.exec(text)?.[1];
  assert.ok(pc !== undefined && counter !== undefined, text);
  return { pc, counter: BigInt(counter) };
}

Deno.test({
  name: "an AP bhyve parks at an INIT stays bhyve's through continue and detach; its SIPI frees it",
  ignore: !testvmBuilt(),
}, async () => {
  await using vm = await TestVm.start({ cpus: 5, mem: "256M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  using probe = GuestProbe.open(vm, true);
  assert.ok(await probe.running([0, AP]), "the guest runs before gdb attaches");
  const gdb = (sections: Record<string, string[]>, interruptOn: Promise<unknown>) =>
    runGdb([`file ${GUEST_ELF}`, `target remote ${stub.address}`, ...sectioned(sections)], {
      interruptOn,
      timeoutMs: 90_000,
    });
  /** Resolves once gdb's `continue` has let the BSP run again after the attach's hold. */
  const continued = async () => {
    assert.ok(await probe.waitHeld([0], true, 60_000), "gdb never attached");
    assert.ok(await probe.waitHeld([0], false, 60_000), "gdb's continue never resumed the BSP");
  };
  const all = (output: string) => `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;

  // 1. While gdb lets the guest run, the guest INITs the AP: bhyve parks it.
  const initSeen = (async () => {
    await continued();
    probe.setU32(knob(L.OFF_INIT_AP), AP);
    assert.ok(await probe.waitU32(knob(L.OFF_INIT_SENT), AP), "no AP sent the INIT");
    assert.ok(await probe.waitHeld([AP], true), "bhyve did not park the AP at the INIT");
  })();
  const first = await gdb({
    run: ["continue"],
    threads: ["info threads"],
    detach: ["detach"],
  }, initSeen);
  await initSeen;
  let s = sectionsOf(first.output);
  assert.ok(!first.timedOut && s.detach !== undefined, all(first.output));
  assert.match(
    s.threads!,
    new RegExp(`Thread ${AP + 1} \\(vCPU ${AP}, held by bhyve`),
    all(s.threads!),
  );
  assert.match(s.threads!, /Thread 1 \(vCPU 0, held by debugger/);
  // Detach resumed what gdb held, never bhyve's AP.
  assert.ok(await probe.running([0]), "the BSP runs after the detach");
  assert.ok(probe.held([AP]) && await probe.stopped([AP]), "bhyve's AP left parked by detach");

  // 2. A new session finds it bhyve's from the attach on; continue leaves it parked too.
  const stillParked = (async () => {
    await continued();
    assert.ok(await probe.running([0]), "the BSP runs under continue");
    assert.ok(probe.held([AP]) && await probe.stopped([AP]), "continue left bhyve's AP parked");
  })();
  const second = await gdb({
    attach: ["info threads"],
    run: ["continue"],
    threads: ["info threads"],
    before: SHOW_AP,
    detach: ["detach"],
  }, stillParked);
  await stillParked;
  s = sectionsOf(second.output);
  assert.ok(!second.timedOut && s.detach !== undefined, all(second.output));
  for (const when of [s.attach!, s.threads!]) {
    assert.match(when, new RegExp(`vCPU ${AP}, held by bhyve`), all(second.output));
  }
  const before = apShown(s.before!);
  assert.ok(probe.held([AP]) && await probe.stopped([AP]), "detach left it parked again");

  // 3. The guest's SIPI (while gdb lets it run) resets and resumes the AP: an ordinary vCPU
  // again, held by the debugger at the next stop and resumed by detach.
  const sipiSeen = (async () => {
    await continued();
    probe.setU32(knob(L.OFF_SIPI_AP), AP);
    assert.ok(await probe.waitU32(knob(L.OFF_SIPI_SENT), AP), "no AP sent the SIPI");
    assert.ok(await probe.running([AP]), "the AP never ran after its SIPI");
  })();
  const third = await gdb({
    run: ["continue"],
    threads: ["info threads"],
    after: SHOW_AP,
    detach: ["detach"],
  }, sipiSeen);
  await sipiSeen;
  s = sectionsOf(third.output);
  assert.ok(!third.timedOut && s.detach !== undefined, all(third.output));
  assert.match(s.threads!, new RegExp(`vCPU ${AP}, held by debugger, long mode`), all(s.threads!));
  // It ran from the SIPI's trampoline back into its loop: the counter moved on.
  const after = apShown(s.after!);
  assert.ok(
    after.counter > before.counter,
    `${before.pc} ${before.counter} -> ${after.pc} ${after.counter}`,
  );
  assert.ok(await probe.running([0, AP]), "detach resumed the AP with the rest");
  assert.deepEqual(probe.debugCpus().filter((cpu) => cpu !== L.PARKED_CPU), []);
});

Deno.test({
  name: "an AP bhyve parks at an INIT while it emulates the AP's exit is read only once parked",
  ignore: !testvmBuilt(),
}, async () => {
  // Each read of the userspace MMIO device takes 1.5 s to emulate: the AP reads it when named
  // in layout.ap_mmio_probe, then clears that (tests/testvm/guest/main.c).
  await using vm = await TestVm.start({ cpus: 5, ioDelayMs: 1500 });
  using probe = GuestProbe.open(vm, true);
  const api = loadVmmapi({ path: LIBVMMAPI[generationFor(envVmmVersion())] });
  const target = openTarget(api, vm.name, { heldPollMs: 20, runningPollMs: 20 });
  try {
    assert.ok(await probe.running([0, AP]));
    await target.stop(); // attach ...
    await target.resume(); // ... and continue: the AP runs under this debugger
    const emulating = `vCPU ${AP}: emulating an MMIO read`;
    probe.setU32(knob(L.OFF_AP_MMIO_PROBE), AP);
    const deadline = Date.now() + 30_000;
    while (!vm.stderr.includes(emulating)) {
      assert.ok(Date.now() < deadline, `no emulation started:\n${vm.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // bhyve parks the AP while its thread still emulates the read; the debugger stops now.
    probe.setU32(knob(L.OFF_INIT_AP), AP);
    assert.ok(await probe.waitU32(knob(L.OFF_INIT_SENT), AP), "no AP sent the INIT");
    assert.ok(await probe.waitHeld([AP], true));
    await target.stop();
    assert.equal(target.control.state(AP, target.activeCpus()), "held by bhyve");
    const rip = target.readRegisters(AP + 1)[16]!; // gdb thread numbers are vCPU + 1
    const held = new DataView(rip.buffer, rip.byteOffset).getBigUint64(0, true);
    // The load completed (applied at the parked "VM_RUN"), the store clearing the knob not.
    assert.equal(probe.u32(knob(L.OFF_AP_MMIO_PROBE)), AP);
    await new Promise((resolve) => setTimeout(resolve, 1700));
    assert.equal(target.vm.getRegister(AP, VmReg.RIP), held, "the snapshot was final");
    await target.resume();
    assert.ok(probe.held([AP]) && await probe.stopped([AP]), "bhyve's AP stays parked");
  } finally {
    await target.close();
    api.close();
  }
});

Deno.test({
  name: "lldb: the AP's thread name follows it from the debugger's hands to bhyve's and back",
  ignore: !testvmBuilt(),
}, async () => {
  await using vm = await TestVm.start({ cpus: 5, mem: "256M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  using probe = GuestProbe.open(vm, true);
  const ok = async (what: string, check: Promise<boolean> | boolean) => {
    if (!await check) throw new Error(what); // surfaces in the session's output
  };
  const { output, timedOut } = await runLldbSession([
    `gdb-remote ${stub.address}`,
    "thread list",
    "process continue",
    () => ok("running", probe.running([0, AP])),
    () => {
      probe.setU32(knob(L.OFF_INIT_AP), AP);
      return ok("INIT parked the AP", probe.waitHeld([AP]));
    },
    "process interrupt",
    () => probe.waitHeld([0]),
    "thread list",
    "process continue",
    () => ok("still parked under continue", probe.running([0]).then((r) => r && probe.held([AP]))),
    () => {
      probe.setU32(knob(L.OFF_SIPI_AP), AP);
      return ok("the SIPI freed the AP", probe.running([AP]));
    },
    "process interrupt",
    () => probe.waitHeld([0, AP]),
    "thread list",
    "process detach",
  ], { file: GUEST_ELF, timeoutMs: 90_000 });
  const all = `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;
  assert.ok(!timedOut && /Process 1 detached/.test(output), all);
  const lists = output.split("(lldb) thread list").slice(1).map((rest) =>
    rest.split("(lldb) ")[0]!
  );
  assert.equal(lists.length, 3, all);
  const name = (list: string) =>
    new RegExp(`thread #${AP + 1}: .*name = '([^']*)'`).exec(list)?.[1];
  assert.match(name(lists[0]!) ?? "", /^vCPU 1, held by debugger, long mode/, all);
  assert.match(name(lists[1]!) ?? "", /^vCPU 1, held by bhyve, long mode/, all);
  assert.match(name(lists[2]!) ?? "", /^vCPU 1, held by debugger, long mode/, all);
  assert.ok(await probe.running([0, AP]), "detach resumed every vCPU, the AP too");
});
