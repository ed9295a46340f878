/**
 * End-to-end: the real gdb, with the demo guest's symbols, against bhyve-gdbstub (a separate
 * process, `deno run main.ts`) serving the test VM, through both libvmmapi generations.
 */
import assert from "node:assert/strict";
import { GuestProbe } from "../helpers/guest.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
const hex = (v: bigint) => `0x${v.toString(16)}`;

for (const generation of ["0200", "0103"] as const) {
  Deno.test(`gdb (libvmmapi ${generation}): threads, registers, source, memory per vCPU, refusals, continue and Ctrl-C, detach`, async () => {
    await using vm = await TestVm.start({ cpus: 4, mem: "256M" });
    await using stub = await Stub.start({ vm: vm.name, dir: vm.dir, generation });
    using probe = GuestProbe.open(vm);
    const running = [0, 1, 2];
    assert.ok(await probe.running(running), "the guest runs before gdb attaches");

    // Ctrl-C once the guest runs again after `continue` (it is held from the attach on).
    const continued = (async () => {
      await probe.waitHeld([0], true, 60_000);
      await probe.waitHeld([0], false, 60_000);
    })();
    const { output, timedOut } = await runGdb([
      `file ${GUEST_ELF}`,
      `target remote ${stub.address}`,
      ...sectioned({
        threads: ["info threads"],
        bt: ["bt"],
        regs0: ["info registers rip cr3 efer cs"],
        source: ["p layout.percpu[0].msg", "p layout.ncpus"],
        private0: [`x/s ${hex(L.PRIVATE_VA)}`],
        apic0: [`x/wx ${hex(L.LAPIC_VA + L.LAPIC_REG_ID)}`],
        mmio: [`x/wx ${hex(L.MMIO_VA)}`, `monitor pagewalk ${hex(L.MMIO_VA)}`],
        regs1: ["thread 2", "info registers cr3"],
        private1: [`x/s ${hex(L.PRIVATE_VA)}`],
        apic1: [`x/wx ${hex(L.LAPIC_VA + L.LAPIC_REG_ID)}`],
        fpu: ["thread 1", "p $st0", "p $xmm0"],
        step: ["thread 2", "stepi", "thread", "thread 1"],
        break: ["break tick", "continue", "delete"],
        before: ["p layout.percpu[0].counter"],
        run: ["continue"],
        after: ["p layout.percpu[0].counter", "info registers rip"],
        detach: ["detach"],
      }),
    ], { interruptOn: continued, timeoutMs: 60_000 });
    const s = sectionsOf(output);
    const all = `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;
    assert.ok(!timedOut && s.detach !== undefined, all);

    for (let cpu = 0; cpu < 4; cpu++) {
      assert.match(s.threads!, new RegExp(`Thread ${cpu + 1} \\(vCPU ${cpu}, held by`), output);
    }
    assert.match(s.threads!, /vCPU 0, held by debugger, long mode, 4-level paging/);
    assert.match(s.threads!, /vCPU 2, held by debugger, protected mode/);
    assert.match(s.threads!, /vCPU 3, held by bhyve/, "the parked AP stays bhyve's");

    const frames = [...s.bt!.matchAll(/^#\d+ +(?:0x[0-9a-f]+ in )?(\w+) /gm)].map((m) => m[1]);
    const chain = L.callChainFrom(frames[0] ?? "");
    assert.ok(chain !== undefined && chain.length >= 2, s.bt);
    assert.deepEqual(frames.slice(0, chain.length), chain, s.bt);

    assert.match(s.regs0!, /efer +0x[0-9a-f]+ +\[ .*LMA.* \]/);
    assert.match(s.regs0!, /rip +0xffffffff80[0-9a-f]+ +0xffffffff80[0-9a-f]+ <\w+(\+\d+)?>/);
    const cr3 = (text: string) => /cr3 +(0x[0-9a-f]+)/.exec(text)?.[1];
    assert.ok(cr3(s.regs0!) !== undefined && cr3(s.regs1!) !== undefined, output);
    assert.notEqual(cr3(s.regs0!), cr3(s.regs1!), "each vCPU has its own page-table root");

    assert.match(s.source!, new RegExp(`"${L.vcpuMessage(0)}"`));
    assert.match(s.source!, /= 4$/m);
    assert.match(s.private0!, new RegExp(`"${L.privateText(0)}"`));
    assert.match(s.private1!, new RegExp(`"${L.privateText(1)}"`));
    assert.match(s.apic0!, /:\t0x00000000/);
    assert.match(s.apic1!, /:\t0x01000000/, "vCPU 1's local APIC ID, through kernemu");
    assert.match(s.mmio!, /Cannot access memory at address/);
    assert.match(s.mmio!, /MMIO emulated inside the bhyve process/);
    assert.match(s.fpu!, /<unavailable>/);
    assert.match(s.step!, /Single-step is not available: .*outside bhyve/);
    assert.match(s.step!, /Current thread is 2/, "a refused step leaves gdb on its thread");
    // The breakpoint is taken; the continue that would run past it is refused, in words.
    assert.match(
      s.break!,
      /Cannot continue: the VM would run past the breakpoint at 0xffffffff80[0-9a-f]+, which cannot be set\. Breakpoints are not available: .*outside bhyve/,
    );
    assert.match(s.break!, /Thread \d+ stopped\./);

    const counter = (text: string) => BigInt(/\$\d+ = (\d+)/.exec(text)?.[1] ?? "-1");
    assert.ok(counter(s.before!) >= 0n, s.before);
    assert.match(s.run!, /received signal SIGINT/);
    assert.ok(counter(s.after!) > counter(s.before!), "continue ran the guest forward");
    assert.match(s.detach!, /\[Inferior 1 \(Remote target\) detached\]/);

    assert.ok(await probe.running(running), "the guest runs again after detach");
    assert.deepEqual(probe.debugCpus(), [L.PARKED_CPU], "only bhyve's parked AP is held");
  });
}

Deno.test("gdb: a second debugger is refused with a message while the first works on", async () => {
  await using vm = await TestVm.start({ cpus: 2, mem: "64M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  const first = runGdb([
    `target remote ${stub.address}`,
    // gdb runs `shell` synchronously: the second client connects while this one is attached.
    "shell sleep 2",
    "info threads",
    "detach",
  ]);
  // Wait until the stub holds the VM for the first debugger.
  using probe = GuestProbe.open(vm);
  assert.ok(await probe.waitHeld([0, 1]), "the first debugger holds the VM");
  const second = await runGdb([`target remote ${stub.address}`, "info threads"]);
  const firstResult = await first;
  assert.match(second.output, /already being debugged/);
  assert.match(firstResult.output, /Thread 2 \(vCPU 1, held by debugger/);
  assert.match(firstResult.output, /detached/);
  assert.ok(await probe.running([0, 1]), "the guest runs after the first detaches");
});

Deno.test("gdb: `w` holds a VM that does not exist yet, from its first moments until continue", async () => {
  const dir = await Deno.makeTempDir({ prefix: "testvm-w-" });
  const name = `w-${Deno.pid}`;
  await using stub = await Stub.start({ vm: name, dir, wait: true });
  assert.ok(
    await stub.waitForStderr(/waiting for VM \S+ to start, to hold its boot vCPU/),
    stub.stderr,
  );
  await using vm = await TestVm.start({ name, dir, cpus: 2, mem: "64M" });
  await stub.listening();
  using probe = GuestProbe.open(vm);
  assert.ok(await probe.waitHeld([0]), "held before any debugger attached");
  assert.ok(await probe.stopped([0], 300), "and does not run");
  const result = await runGdb([
    `target remote ${stub.address}`,
    "info threads",
    "p/x $rip",
    "detach",
  ]);
  assert.match(result.output, /Thread 1 \(vCPU 0, held by debugger/, result.output);
  assert.ok(await probe.running([0]), "the guest runs once the debugger lets it go");
  await Deno.remove(dir, { recursive: true }).catch(() => {});
});
