/**
 * End-to-end: the real lldb against the server over TCP, with the fake target.
 */
import assert from "node:assert/strict";
import { serve } from "../../rsp/server.ts";
import { runLldb } from "../helpers/lldb.ts";
import { FakeTarget } from "./fake_target.ts";

const hasLldb = await new Deno.Command("lldb", { args: ["--version"], stdout: "null" }).output()
  .then((r) => r.success, () => false);

function withServer(target = new FakeTarget()) {
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  return { target, server, remote: `gdb-remote 127.0.0.1:${server.addr.port}` };
}

Deno.test({
  name: "lldb: registers from target.xml, memory, threads, monitor and detach",
  ignore: !hasLldb,
  async fn() {
    const { target, server, remote } = withServer();
    const { output, timedOut } = await runLldb([
      remote,
      "register read rip rsp eflags",
      "register read cr3",
      "register read cr8",
      "memory read --size 1 --count 4 0x1000",
      "thread list",
      "process plugin packet monitor hello",
      "breakpoint set -a 0x1000",
      "process detach",
    ]);
    await server.close();
    assert.ok(!timedOut, output);
    assert.match(output, /rip = 0x0000000000001010/);
    assert.match(output, /rsp = 0x0000000000002ff0/);
    assert.match(output, /cr3 = 0x0000000000005000/);
    assert.match(output, /cr8 += error: unavailable/);
    assert.match(output, /0x00001000: 00 01 02 03 /);
    assert.match(output, /thread #2: tid = 0x0002, 0x0000000000001020/);
    assert.match(output, /fake monitor: hello/);
    assert.match(output, /failed to set breakpoint site at 0x1000/);
    assert.match(output, /Process 1 detached/);
    assert.deepEqual(target.calls, ["stop", "detach"]);
  },
});

Deno.test({
  name: "lldb: a refused step shows the reason as the stop reason",
  ignore: !hasLldb,
  async fn() {
    const { target, server, remote } = withServer();
    const { output, timedOut } = await runLldb([remote, "thread step-inst"]);
    await server.close();
    assert.ok(!timedOut, output);
    assert.match(output, /stop reason = Single-step is not available: the fake cannot step/);
    // lldb -b kills the process on the way out after an "exception" stop: k detaches.
    assert.equal(target.calls.at(-1), "detach");
  },
});

Deno.test({
  name: "lldb: continue, and the stop the target reports",
  ignore: !hasLldb,
  async fn() {
    const { target, server, remote } = withServer();
    const resume = target.resume.bind(target);
    target.resume = async () => {
      await resume();
      setTimeout(() => target.stopOnOwn({ kind: "stopped", thread: 2, signal: 5 }), 200);
    };
    const { output, timedOut } = await runLldb([remote, "process continue", "process detach"]);
    await server.close();
    assert.ok(!timedOut, output);
    assert.match(output, /Process 1 resuming/);
    assert.match(output, /\* thread #2, stop reason = signal SIGTRAP/);
    assert.deepEqual(target.calls, ["stop", "resume", "waitForStop", "detach"]);
  },
});
