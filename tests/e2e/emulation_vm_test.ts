/**
 * End to end on the test VM (KVM, or its software CPU where /dev/kvm is missing), served by
 * main.ts with --allow-write and libunicorn: the real gdb breaks in the running demo guest,
 * steps, nexts and watches a counter the guest itself increments; every step is emulated and
 * written back to the vCPU; after detach the guest runs on natively.
 */
import assert from "node:assert/strict";
import { latin1, RspClient } from "../../scripts/bench/rsp_client.ts";
import { GUEST_ELF } from "../emu/demo_vm.ts";
import { unicornPath } from "../emu/machine.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm, testvmBuilt } from "../helpers/testvm.ts";

/** A 2-vCPU test VM served by main.ts with --allow-write and libunicorn, for `body`. */
async function withEmulatingStub(
  args: string[],
  body: (stub: Stub) => Promise<void>,
): Promise<void> {
  await using vm = await TestVm.start({ cpus: 2 });
  const stub = await Stub.start({
    vm: vm.name,
    dir: vm.dir,
    args: ["--allow-write", "--unicorn", unicornPath() ?? "libunicorn.so.2", ...args],
  });
  try {
    await body(stub);
  } finally {
    stub.process.kill("SIGTERM");
    await stub.exited;
  }
}

Deno.test({
  name: "gdb on the test VM: break, continue, bt, next, stepi, watch -- emulated, then detach",
  ignore: !testvmBuilt(),
  fn: async () => {
    await withEmulatingStub([], async (stub) => {
      const { output, timedOut } = await runGdb([
        `file ${GUEST_ELF}`,
        `target remote ${stub.address}`,
        ...sectioned({
          break: ["break tick", "continue", "bt"],
          next: ["next", "print pc->counter", "stepi", "info registers rip"],
          watch: ["delete", "watch layout.percpu[0].counter", "continue"],
          emulation: ["delete", "monitor emulation"],
        }),
        "detach",
      ], { timeoutMs: 120_000 });
      assert.ok(!timedOut, output);
      const s = sectionsOf(output);
      assert.match(s.break!, /hit Breakpoint 1, tick \(pc=.*\) at guest\/main\.c:66/);
      assert.match(s.break!, /#1 .* in work_loop .*\n#2 .* in kmain/);
      assert.match(s.next!, /^67\t\tpc->counter\+\+;\n\$1 = \d+\n0x[0-9a-f]+\t67\t/);
      assert.match(s.next!, /rip +0x[0-9a-f]+ +0x[0-9a-f]+ <tick\+\d+>/);
      const [, before, after] = /Old value = (\d+)\nNew value = (\d+)/.exec(s.watch!)!;
      assert.equal(Number(after), Number(before) + 1);
      assert.match(s.emulation!, /Emulated execution: available \(Unicorn 2\.\d+\)/);
      assert.match(output, /\[Inferior 1 \(Remote target\) detached\]/);
    });
  },
});

Deno.test({
  name: "gdb's next over a loop: range steps (vCont;r), the same line as one step at a time, " +
    "and a range step past its budget stops in words",
  ignore: !testvmBuilt(),
  fn: async () => {
    await withEmulatingStub(["--log-level", "debug"], async (stub) => {
      // spin()'s loop is all one line: `next` from it runs 2,500 iterations.
      const { output, timedOut } = await runGdb([
        `file ${GUEST_ELF}`,
        `target remote ${stub.address}`,
        ...sectioned({
          ranged: ["break spin", "continue", "next"],
          single: ["continue", "set range-stepping off", "next"],
          budget: ["set range-stepping on", "continue", "monitor budget 1000", "next"],
        }),
        "delete",
        "detach",
      ], { timeoutMs: 180_000 });
      assert.ok(!timedOut, output);
      const s = sectionsOf(output);
      const lineAfterNext = (section: string) => /\n(.*\n\d+\t.*)\n?$/.exec(section.trimEnd())?.[1];
      assert.match(s.ranged!, /Breakpoint 1, spin \(n=/);
      const ranged = lineAfterNext(s.ranged!);
      assert.ok(ranged !== undefined && !/^spin /.test(ranged), s.ranged);
      assert.equal(lineAfterNext(s.single!), ranged, `${s.ranged}\n---\n${s.single}`);
      // gdb asked for ranges, and got them: one vCont;r per line instead of a step per
      // instruction.
      const ranges = stub.stderr.match(/<- vCont;r[0-9a-f]+,[0-9a-f]+/g) ?? [];
      assert.ok(ranges.length >= 1, "no vCont;r in the packet log");
      assert.match(s.budget!, /Range step stopped after 1000 instructions: the instruction budget/);
      assert.match(s.budget!, /Thread \d+ stopped\./);
      assert.match(output, /\[Inferior 1 \(Remote target\) detached\]/);
    });
  },
});

Deno.test({
  name: "vCont;r is offered, and Ctrl-C ends a range step that would run on (SIGINT, the thread)",
  ignore: !testvmBuilt(),
  fn: async () => {
    await withEmulatingStub([], async (stub) => {
      const client = await RspClient.connect(Number(stub.address.split(":")[1]));
      try {
        await client.handshake();
        await client.stopReason();
        assert.match(await client.request("vCont?"), /^vCont;c;C;s;S;t;r$/);
        // vCPU 1 only ticks (no port I/O): a range of all addresses runs until stopped.
        await client.send("vCont;r0,ffffffffffffffff:2");
        await new Promise((resolve) => setTimeout(resolve, 300));
        await client.interrupt();
        const stop = latin1((await client.receive()).body);
        assert.match(stop, /^T02.*thread:(p1\.)?0*2;/, stop);
        const hex = (text: string) =>
          [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("");
        // The monitor's text: O packets (or one hex reply), then OK.
        await client.send(`qRcmd,${hex("emulation")}`);
        let text = "";
        for (;;) {
          const reply = latin1((await client.receive()).body);
          if (reply === "OK") break;
          const payload = reply.startsWith("O") ? reply.slice(1) : reply;
          text += new TextDecoder().decode(
            Uint8Array.from(payload.match(/../g)!, (byte) => parseInt(byte, 16)),
          );
        }
        assert.match(
          text,
          /Last run: vCPU 1, [1-9]\d* instructions .*interrupted \(Ctrl-C\)/,
          text,
        );
        assert.equal(await client.request("D"), "OK");
      } finally {
        client.close();
      }
    });
  },
});
