/**
 * issue 15 and issue 11 (4) against the real main.ts and the test VM, with the real gdb and
 * lldb where what matters is what the client shows:
 * - a packet dribbled one byte a second is dropped by its first byte's deadline;
 * - a SIGSTOPped gdb mid-dump: with --max-hold the guest runs again when the bound is reached,
 *   and without it the unread reply drops the debugger after --stall-timeout;
 * - `monitor phys on` does not reach the next debugger;
 * - the VM killed in the middle of a gdb dump: gdb shows its own "Cannot access memory" (never
 *   "Invalid hex digit") and its `continue` says the VM is gone;
 * - a second gdb and a second lldb show why they were refused.
 */
import assert from "node:assert/strict";
import { runGdb } from "../helpers/gdb.ts";
import { runLldb } from "../helpers/lldb.ts";
import { testvmBuilt } from "../helpers/testvm.ts";
import { RawClient } from "../rsp/tcp_client.ts";
import * as L from "../testvm/layout.ts";
import { RunningVm, Server, sleep, until } from "./harness.ts";

const ignore = !testvmBuilt();
const CPUS = 2;
/** 48 MiB of the guest's direct map: a dump long enough to be stopped in the middle. */
const DUMP = `0x${L.DMAP_VBASE.toString(16)} 0x${(L.DMAP_VBASE + (48n << 20n)).toString(16)}`;
/** The server's packet log (debug level) shows gdb reading the dump's memory. */
const DUMPING = new RegExp(`<- m${L.DMAP_VBASE.toString(16)},`);

/** gdb in batch mode as a child process the test can signal; output collected. */
function spawnGdb(commands: string[]): { child: Deno.ChildProcess; output: () => Promise<string> } {
  const args = [
    "-nx",
    "-batch",
    "-ex",
    "set pagination off",
    ...commands.flatMap((c) => ["-ex", c]),
  ];
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$0" "$@" 2>&1', "gdb", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  const done = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  return { child, output: async () => (await done, text) };
}

Deno.test({
  name: "main.ts: a packet sent one byte a second is dropped by its first byte's deadline",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm, { args: ["--stall-timeout", "3s"] });
    const client = await RawClient.connect(server.port);
    assert.equal(await client.ask("?"), "T05thread:1;");
    assert.deepEqual(observer.debugCpus(), [0, 1]);
    let sent = 0;
    try {
      await client.write("$m0,");
      // 20 bytes a second apart: each within 3 s of the last, the packet 20 s long.
      for (; sent < 20 && observer.debugCpus().length > 0; sent++) {
        await client.write("0");
        await sleep(1000);
      }
    } catch {
      // the server hung up under the writer
    }
    await observer.allRunning(CPUS, 10_000);
    assert.ok(sent < 20, `held for ${sent} s by a packet that never ends`);
    assert.match(server.stderr, /has not finished a packet in 3 s: dropping the connection/);
    client.close();
  },
});

for (const mode of ["--max-hold"] as const) {
  Deno.test({
    name: `main.ts: a SIGSTOPped gdb mid-dump does not keep the guest (${mode} 3s)`,
    ignore,
    async fn() {
      await using running = await RunningVm.start(CPUS);
      const { vm, observer } = running;
      const file = await Deno.makeTempFile();
      try {
        await using server = await Server.start(vm, { args: [mode, "3s"], logLevel: "debug" });
        const gdb = spawnGdb([
          "set architecture i386:x86-64",
          `target remote 127.0.0.1:${server.port}`,
          `dump binary memory ${file} ${DUMP}`,
          "info threads",
        ]);
        await until(() => DUMPING.test(server.stderr), "gdb dumping", 30_000);
        gdb.child.kill("SIGSTOP");
        const stopped = performance.now();
        await observer.allRunning(CPUS, 30_000);
        console.log(`guest running ${((performance.now() - stopped) / 1000).toFixed(1)} s later`);
        assert.match(server.stderr, /let the guest run again: it was held for --max-hold 3 s/);
        gdb.child.kill("SIGCONT");
        await gdb.child.status;
        const output = await gdb.output();
        // What gdb says once it runs again: its next read is refused, or the line is gone.
        assert.match(
          output,
          /Cannot access memory at address 0x/,
          output,
        );
        assert.doesNotMatch(output, /Invalid hex digit/, output);
        await observer.counting(CPUS);
      } finally {
        await Deno.remove(file).catch(() => {});
      }
    },
  });
}

Deno.test({
  name: "main.ts: monitor phys on does not reach the next debugger",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm);
    const at = `0x${L.LAYOUT_VA.toString(16)}`;
    const first = await runGdb([
      `target remote 127.0.0.1:${server.port}`,
      "monitor phys on",
      `x/2xw ${at}`,
      "detach",
    ]);
    assert.match(first.output, /Memory addresses are guest-physical/);
    assert.match(first.output, new RegExp(`Cannot access memory at address ${at}`));
    const second = await runGdb([
      `target remote 127.0.0.1:${server.port}`,
      "monitor phys",
      `x/2xw ${at}`,
      "detach",
    ]);
    assert.match(second.output, /Memory addresses are guest-virtual/);
    // The guest's magic "TESTVM01", read through the page tables again.
    assert.match(second.output, /:\s+0x54534554\s+0x31304d56/, second.output);
    await observer.allRunning(CPUS);
  },
});

Deno.test({
  name: "main.ts: the VM killed mid-dump: gdb says Cannot access memory, then that it is gone",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    const file = await Deno.makeTempFile();
    try {
      await using server = await Server.start(vm, { logLevel: "debug" });
      const gdb = spawnGdb([
        "set architecture i386:x86-64",
        `target remote 127.0.0.1:${server.port}`,
        `dump binary memory ${file} ${DUMP}`,
        "continue",
      ]);
      await until(() => DUMPING.test(server.stderr), "gdb dumping", 30_000);
      observer[Symbol.dispose]();
      vm.process.kill("SIGKILL");
      await vm.exited;
      await gdb.child.status;
      const output = await gdb.output();
      assert.doesNotMatch(output, /Invalid hex digit/, output);
      assert.match(output, /Cannot access memory at address 0x/, output);
      assert.match(output, new RegExp(`VM ${vm.name} is gone`), output);
      assert.match(output, /\[Inferior 1 \(Remote target\) exited normally\]/, output);
      const status = await server.exited(20_000);
      assert.equal(status?.code, 1, server.stderr);
    } finally {
      await Deno.remove(file).catch(() => {});
    }
  },
});

Deno.test({
  name: "main.ts: a second gdb and a second lldb are refused in words they show",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm);
    const first = await RawClient.connect(server.port);
    assert.equal(await first.ask("?"), "T05thread:1;");
    const where = `127.0.0.1:${server.port}`;
    const gdb = await runGdb([`target remote ${where}`]);
    assert.match(
      gdb.output,
      /Remote failure reply: E\.The VM is already being debugged by another debugger/,
    );
    const lldb = await runLldb([`gdb-remote ${where}`, "process status"]);
    assert.match(
      lldb.output,
      /stop reason = The VM is already being debugged by another debugger/,
      lldb.output,
    );
    assert.deepEqual(observer.debugCpus(), [0, 1], "still held for the first debugger");
    assert.equal(await first.ask("qfThreadInfo"), "m1,2");
    assert.equal(await first.ask("D"), "OK");
    first.close();
    await observer.allRunning(CPUS);
  },
});
