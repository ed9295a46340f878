/**
 * End-to-end: the real lldb, with the demo guest's symbols, against bhyve-gdbstub (a separate
 * process) serving the test VM, through both libvmmapi generations.
 */
import assert from "node:assert/strict";
import { GuestProbe } from "../helpers/guest.ts";
import { runLldb, runLldbSession } from "../helpers/lldb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
const hex = (v: bigint) => `0x${v.toString(16)}`;

for (const generation of ["0200", "0103"] as const) {
  Deno.test(`lldb (libvmmapi ${generation}): threads, registers, memory per vCPU, interrupt, detach`, async () => {
    await using vm = await TestVm.start({ cpus: 4, mem: "256M" });
    await using stub = await Stub.start({ vm: vm.name, dir: vm.dir, generation });
    using probe = GuestProbe.open(vm);
    assert.ok(await probe.running([0, 1]), "the guest runs before lldb attaches");

    const { output, timedOut } = await runLldbSession([
      `gdb-remote ${stub.address}`,
      "thread list",
      "register read rip cr3 efer fs_base",
      "bt",
      `memory read --format c --count 18 ${hex(L.PRIVATE_VA)}`,
      `memory read --format x --size 4 --count 1 ${hex(L.LAPIC_VA + L.LAPIC_REG_ID)}`,
      "thread select 2",
      "register read cr3",
      `memory read --count 4 ${hex(L.MMIO_VA)}`,
      "process continue",
      () => probe.running([0]),
      "process interrupt",
      () => probe.waitHeld([0]),
      "register read rip",
      "process detach",
    ], { file: GUEST_ELF, timeoutMs: 60_000 });
    const all = `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;
    assert.ok(!timedOut, all);

    assert.match(output, /stop reason = signal SIGTRAP/, all);
    for (let cpu = 0; cpu < 4; cpu++) {
      assert.match(output, new RegExp(`thread #${cpu + 1}: tid = 0x000${cpu + 1}`), all);
    }
    assert.match(output, /rip = 0xffffffff80[0-9a-f]+ +guest\.elf`\w+/);
    assert.match(output, /efer = 0x0000000000000d00/);
    assert.match(output, /fs_base = 0x/);
    const stoppedIn = /frame #0: 0x[0-9a-f]+ guest\.elf`(\w+)/.exec(output)?.[1] ?? "";
    const chain = L.callChainFrom(stoppedIn);
    assert.ok(chain !== undefined && chain.length >= 2, all);
    for (const fn of chain) assert.match(output, new RegExp(`guest\\.elf\`${fn}`));
    const cr3s = [...output.matchAll(/cr3 = (0x[0-9a-f]+)/g)].map((m) => m[1]);
    assert.equal(cr3s.length, 2, all);
    assert.notEqual(cr3s[0], cr3s[1], "each vCPU has its own page-table root");
    // lldb reads memory per process, without naming a thread: the server translates through
    // the vCPU that stopped (thread 1), so vCPU 0's private page and local APIC show.
    assert.match(output, new RegExp(`: ${L.privateText(0)}`));
    assert.match(output, /0xffff800000002020: 0x00000000/, "vCPU 0's APIC ID through kernemu");
    assert.match(output, /memory read failed for 0xffff800000001000/);
    assert.match(output, /Process 1 resuming/);
    assert.match(output, /stop reason = signal SIGINT/);
    assert.match(output, /Process 1 detached/);
    assert.ok(await probe.running([0, 1]), "the guest runs again after detach");
  });
}

Deno.test("lldb: a refused single-step is shown with its reason", async () => {
  await using vm = await TestVm.start({ cpus: 1, mem: "64M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  using probe = GuestProbe.open(vm);
  // In batch mode lldb ends the script at a stop it takes for an exception: step last.
  const { output } = await runLldb([`gdb-remote ${stub.address}`, "thread step-inst"]);
  assert.match(output, /stop reason = Single-step is not available: .*outside bhyve/, output);
  assert.ok(await probe.running([0]), "the guest runs again after lldb leaves");
});
