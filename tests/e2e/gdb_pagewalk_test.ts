/**
 * End-to-end: `monitor pagewalk` in the real gdb with a register (`$pc`, `rsp`) as well as a
 * number, on a vCPU with 4-level paging and on one without paging.
 */
import assert from "node:assert/strict";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;

Deno.test("gdb: monitor pagewalk $pc, a register name, and a vCPU without paging", async () => {
  await using vm = await TestVm.start({ cpus: 4, mem: "256M" });
  await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });
  const { output, timedOut } = await runGdb([
    `file ${GUEST_ELF}`,
    `target remote ${stub.address}`,
    ...sectioned({
      pc: ["monitor pagewalk $pc", "p/x $pc"],
      rsp: ["monitor pagewalk rsp", "p/x $rsp"],
      flat: ["thread 4", "monitor pagewalk $pc"],
      bad: ["monitor pagewalk $nosuch"],
      detach: ["detach"],
    }),
  ], { timeoutMs: 60_000 });
  const all = `${output}\n--- bhyve-gdbstub stderr ---\n${stub.stderr}`;
  const s = sectionsOf(output);
  assert.ok(!timedOut && s.detach !== undefined, all);
  const pc = /\$1 = (0x[0-9a-f]+)/.exec(s.pc!)?.[1];
  assert.ok(pc !== undefined, all);
  assert.match(s.pc!, new RegExp(`^rip = ${pc} on vCPU 0 \\(4-level paging\\):`, "m"), all);
  assert.match(s.pc!, /PML4 *\[ *\d+\] at 0x[0-9a-f]+ = 0x[0-9a-f]{16} P/);
  assert.match(s.pc!, /-> 0x[0-9a-f]+ \((4 KiB|2 MiB|1 GiB) page\)\n *reads: guest RAM/);
  const sp = /\$2 = (0x[0-9a-f]+)/.exec(s.rsp!)?.[1];
  assert.match(s.rsp!, new RegExp(`^rsp = ${sp} on vCPU 0`, "m"), all);
  assert.match(
    s.flat!,
    /rip = 0xfff0 on vCPU 3 \(real mode, no paging\):\n *no page tables to walk.*\n *-> 0xfff0\n *reads: guest RAM/,
    all,
  );
  assert.doesNotMatch(s.flat!, /not mapped|vm_gla2gpa/, "one answer, not two");
  assert.match(s.bad!, /no register named \$nosuch/);
});
