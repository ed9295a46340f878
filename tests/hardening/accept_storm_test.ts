/**
 * Accept failures under a connection storm (EMFILE: the server's descriptors run out), against
 * the real main.ts serving the test VM: said once per run of failures, on one line without a
 * stack; the storm never pauses the guest, and costs the server nothing once it is over: the
 * next debugger attaches.
 */
import assert from "node:assert/strict";
import { testvmBuilt } from "../helpers/testvm.ts";
import { RawClient } from "../rsp/tcp_client.ts";
import { RunningVm, Server, sleep } from "./harness.ts";

const CPUS = 2;

/** Lowers the running server's descriptor limit (prlimit(1), util-linux). */
async function limitDescriptors(server: Server, limit: number): Promise<void> {
  const { code, stderr } = await new Deno.Command("prlimit", {
    args: ["--pid", String(server.pid), `--nofile=${limit}:${limit}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

Deno.test({
  name:
    "EMFILE in a storm: one line per run of failures, no stack, the guest runs, the next debugger attaches",
  ignore: !testvmBuilt(),
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm, { logLevel: "debug" });
    // Room for a few connections beyond what the server has open once it serves.
    await limitDescriptors(server, server.resources().fds + 16);
    const storm: Deno.TcpConn[] = [];
    for (let i = 0; i < 80; i++) {
      storm.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    }
    await sleep(500);
    assert.deepEqual(observer.debugCpus(), [], "a storm without packets never holds the guest");
    await observer.counting(CPUS);
    for (const conn of storm) conn.close();
    await sleep(300);
    const client = await RawClient.connect(server.port);
    assert.equal(await client.ask("?"), "T05thread:1;");
    assert.deepEqual(observer.debugCpus(), [0, 1], "the next debugger holds the guest");
    assert.equal(await client.ask("D"), "OK");
    client.close();
    await observer.allRunning(CPUS);
    const stderr = server.stderr;
    const failures = stderr.split("\n").filter((line) => line.includes("accept failed"));
    assert.ok(failures.length >= 1, `the storm never exhausted the descriptors:\n${stderr}`);
    // A run of failures ends only with an accept that works: if every failure (one per 10 ms
    // for as long as the descriptors stay exhausted) had its line, there would be far more.
    const accepted = stderr.split("\n").filter((line) =>
      /left before its first packet|dropping the oldest|attached/.test(line)
    ).length;
    assert.ok(failures.length <= accepted + 1, `${failures.length} lines for ${accepted} accepts`);
    for (const line of failures) {
      assert.match(line, /\[WRN\] .*accept failed: Error: Too many open files/);
    }
    assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    assert.doesNotMatch(stderr, /\[ERR\]/);
  },
});
