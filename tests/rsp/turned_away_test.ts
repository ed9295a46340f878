/**
 * The server's deadlines and refusals against the fake target, with raw clients and with the
 * real gdb and lldb where what matters is what the client shows (tests/hardening/ does the
 * same against main.ts and the test VM):
 * - a packet must be whole within the stall bound of its first byte, however it dribbles;
 * - --max-hold releases the guest and answers the debugger's next packets with why;
 * - a second gdb and a second lldb show why they were refused; a connection dropped for
 *   capacity is told why; a vanished target is reported in the form each packet allows.
 */
import assert from "node:assert/strict";
import { textToHex } from "../../rsp/hex.ts";
import { serve } from "../../rsp/server.ts";
import { runGdb } from "../helpers/gdb.ts";
import { runLldb } from "../helpers/lldb.ts";
import { FakeTarget } from "./fake_target.ts";
import { RawClient } from "./tcp_client.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const until = async (check: () => boolean, what: string, ms = 10_000) => {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
};

Deno.test("a packet dribbled one byte at a time is dropped by its first byte's deadline", async () => {
  const target = new FakeTarget();
  const server = serve(target, { hostname: "127.0.0.1", port: 0, stallTimeoutMs: 1000 });
  const client = await RawClient.connect(server.addr.port);
  assert.equal(await client.ask("?"), "T05thread:1;");
  // 40 bytes, one every 100 ms: 4 s of a packet that never ends, each byte within the bound.
  let sent = 0;
  try {
    await client.write("$m1000,");
    for (; sent < 40 && !target.calls.includes("detach"); sent++) {
      await client.write("0");
      await sleep(100);
    }
  } catch {
    // the server closed the connection under the writer
  }
  await until(() => target.calls.includes("detach"), "the dribbling debugger dropped");
  assert.ok(sent < 40, `still attached after ${sent} bytes, one every 100 ms`);
  assert.equal(await client.reply(), undefined, "the connection is closed");
  client.close();
  await server.close();
});

Deno.test("--max-hold: the guest runs again, and the debugger's next packets say why", async () => {
  const target = new FakeTarget();
  const server = serve(target, { hostname: "127.0.0.1", port: 0, maxHoldMs: 500 });
  const client = await RawClient.connect(server.addr.port);
  assert.equal(await client.ask("?"), "T05thread:1;");
  await until(() => target.calls.includes("detach"), "released after --max-hold");
  assert.ok(!target.running || target.calls.at(-1) === "detach");
  assert.equal(await client.ask("m1000,4"), "E05", "data packets get E NN");
  const why = "bhyve-gdbstub let the guest run again: it was held for --max-hold 0.5 s; " +
    "this debugger is detached\n";
  assert.equal(await client.ask("vCont;c"), `O${textToHex(why)}`);
  assert.equal(await client.reply(), "W00");
  assert.equal(await client.reply(), undefined);
  await until(() => !server.busy, "the session ended");
  // A resume in time stops the clock: a running guest is not "held".
  const next = await RawClient.connect(server.addr.port);
  assert.equal(await next.ask("?"), "T05thread:1;");
  await next.send("c");
  await sleep(800);
  const since = target.calls.slice(target.calls.lastIndexOf("stop"));
  assert.ok(since.includes("resume") && !since.includes("detach"), since.join());
  next.close();
  await server.close();
});

Deno.test("a second gdb and a second lldb show why they were refused", async () => {
  const target = new FakeTarget();
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  const first = await RawClient.connect(server.addr.port);
  assert.equal(await first.ask("?"), "T05thread:1;");
  const where = `127.0.0.1:${server.addr.port}`;
  const gdb = await runGdb([`target remote ${where}`], { timeoutMs: 20_000 });
  assert.match(
    gdb.output,
    /Remote failure reply: E\.The VM is already being debugged by another debugger/,
  );
  const lldb = await runLldb([`gdb-remote ${where}`, "process status"], { timeoutMs: 20_000 });
  assert.match(
    lldb.output,
    /stop reason = The VM is already being debugged by another debugger/,
    lldb.output,
  );
  assert.doesNotMatch(lldb.output, /no stop reply packet was received/);
  assert.deepEqual(target.calls, ["stop"], "the refused clients touched nothing");
  assert.equal(await first.ask("qC"), "QC1");
  first.close();
  await server.close();
});

Deno.test("a connection dropped for capacity is told why before it is closed", async () => {
  const server = serve(new FakeTarget(), { hostname: "127.0.0.1", port: 0, maxPending: 2 });
  const oldest = await RawClient.connect(server.addr.port);
  const others = [await RawClient.connect(server.addr.port)];
  await sleep(100);
  others.push(await RawClient.connect(server.addr.port));
  assert.equal(
    await oldest.reply(),
    "E.Too many connections are waiting to attach to this VM; this one was dropped",
  );
  assert.equal(await oldest.reply(), undefined);
  for (const c of [oldest, ...others]) c.close();
  await server.close();
});

Deno.test("a vanished target: gdb shows no hex garbage, and its continue says why", async () => {
  const target = new FakeTarget();
  target.monitor = (command) => {
    if (command === "vanish") target.vanish();
    else target.threads(); // throws once the target is gone, as VmTarget's monitor does
    return "ok\n";
  };
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  const gdb = await runGdb([
    `target remote 127.0.0.1:${server.addr.port}`,
    "monitor vanish",
    "x/4xb 0x1100",
    "monitor vcpus",
    "continue",
  ], { timeoutMs: 20_000 });
  assert.match(gdb.output, /Cannot access memory at address 0x1100/, gdb.output);
  assert.doesNotMatch(gdb.output, /Invalid hex digit/);
  assert.match(gdb.output, /Cannot access memory at address 0x1100\nthe VM is gone\n/);
  assert.match(gdb.output, /the VM is gone\n\[Inferior 1 \(Remote target\) exited normally\]/);
  await server.close();
});

/** A fake target with 1 GiB of patterned memory at 0: a gdb dump of it takes a while. */
function bigTarget(): FakeTarget {
  const target = new FakeTarget();
  const page = Uint8Array.from({ length: 0x10000 }, (_, i) => (i * 37 + (i >> 8)) & 0xff);
  target.readMemory = (_thread, address, length) => {
    const n = Math.min(length, 0x10000);
    const at = Number(address % 0x10000n);
    return Uint8Array.from({ length: n }, (_, i) => page[(at + i) % 0x10000]!);
  };
  return target;
}

for (const mode of ["maxHoldMs"] as const) {
  Deno.test(`a SIGSTOPped gdb mid-dump lets go of the target (${mode}), and says so when it runs`, async () => {
    const target = bigTarget();
    const server = serve(target, { hostname: "127.0.0.1", port: 0, [mode]: 1500 });
    const file = await Deno.makeTempFile();
    const gdb = new Deno.Command("sh", {
      args: [
        "-c",
        'exec "$0" "$@" 2>&1',
        "gdb",
        "-nx",
        "-batch",
        "-ex",
        "set architecture i386:x86-64",
        "-ex",
        `target remote 127.0.0.1:${server.addr.port}`,
        "-ex",
        `dump binary memory ${file} 0 0x40000000`,
        "-ex",
        "info threads",
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      await until(() => target.calls.includes("stop"), "gdb attached");
      await sleep(1000); // into the dump
      gdb.kill("SIGSTOP");
      await until(() => target.calls.includes("detach"), "the target released", 20_000);
      gdb.kill("SIGCONT");
      const output = new TextDecoder().decode((await gdb.output()).stdout);
      assert.match(
        output,
        /Cannot access memory at address 0x/,
        output,
      );
      assert.doesNotMatch(output, /Invalid hex digit/);
    } finally {
      try {
        gdb.kill("SIGKILL");
      } catch {
        // exited
      }
      await server.close();
      await Deno.remove(file);
    }
  });
}

Deno.test("a server asked to stop before it started stops at once", async () => {
  const stop = new AbortController();
  stop.abort();
  const server = serve(new FakeTarget(), { hostname: "127.0.0.1", port: 0, signal: stop.signal });
  await server.finished;
});
