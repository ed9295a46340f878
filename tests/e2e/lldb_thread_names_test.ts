/**
 * End-to-end: lldb 14's `thread list` shows each vCPU's state and mode as the thread's name
 * (from `hexname` in the stop reply and in qThreadStopInfo), after the attach and after an
 * interrupt.
 */
import assert from "node:assert/strict";
import { GuestProbe } from "../helpers/guest.ts";
import { runLldbSession } from "../helpers/lldb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;

Deno.test("lldb: thread list names each vCPU with its state and mode", async () => {
  await using vm = await TestVm.start({ cpus: 4, mem: "256M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  using probe = GuestProbe.open(vm);
  const { output, timedOut } = await runLldbSession([
    `gdb-remote ${stub.address}`,
    "thread list",
    "process continue",
    () => probe.running([0]),
    "process interrupt",
    () => probe.waitHeld([0]),
    "thread list",
    "process detach",
  ], { file: GUEST_ELF, timeoutMs: 60_000 });
  const all = `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;
  assert.ok(!timedOut, all);
  // Each `thread list`'s own output: up to the next prompt (the `version` mark runLldbSession adds).
  const lists = output.split("(lldb) thread list").slice(1).map((rest) =>
    rest.split("(lldb) ")[0]!
  );
  assert.equal(lists.length, 2, all);
  for (const list of lists) {
    assert.match(
      list,
      /thread #1: tid = 0x0001, .*name = 'vCPU 0, held by debugger, long mode, 4-level paging'/,
      all,
    );
    assert.match(list, /thread #2: tid = 0x0002, .*name = 'vCPU 1, held by debugger, long mode/);
    assert.match(
      list,
      /thread #3: tid = 0x0003, .*name = 'vCPU 2, held by debugger, protected mode/,
    );
    assert.match(
      list,
      /thread #4: tid = 0x0004, .*name = 'vCPU 3, held by bhyve, real mode, no paging'/,
    );
  }
  assert.match(lists[0]!, /name = 'vCPU \d[^']*', stop reason = signal SIGTRAP/);
  assert.match(lists[1]!, /name = 'vCPU \d[^']*', stop reason = signal SIGINT/);
  for (const list of lists) {
    const reasons = list.split("\n").filter((line) => /thread #\d: tid = .*stop reason/.test(line));
    assert.equal(reasons.length, 1, `only the vCPU that stopped has a stop reason:\n${list}`);
  }
  assert.match(output, /Process 1 detached/);
});
