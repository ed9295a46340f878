/**
 * End-to-end: the real gdb against the server over TCP, with the fake target.
 */
import assert from "node:assert/strict";
import { serve } from "../../rsp/server.ts";
import { runGdb } from "../helpers/gdb.ts";
import { FakeTarget } from "./fake_target.ts";

const hasGdb = await new Deno.Command("gdb", { args: ["--version"], stdout: "null" }).output()
  .then((r) => r.success, () => false);

function withServer(target = new FakeTarget()) {
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  return { target, server, remote: `target remote 127.0.0.1:${server.addr.port}` };
}

Deno.test({
  name: "gdb: threads, target.xml registers, memory, and the refused step and breakpoint",
  ignore: !hasGdb,
  async fn() {
    const { target, server, remote } = withServer();
    const { output, timedOut } = await runGdb([
      remote,
      "info threads",
      "info registers rip",
      "info registers cr3",
      "p $cr8",
      "x/4xb 0x1000",
      "x/2xb 0x3ffe",
      "stepi",
      "monitor hello",
      "break *0x1000",
      "continue",
      "detach",
    ]);
    await server.close();
    assert.ok(!timedOut, output);
    assert.match(output, /\* 1 +Thread 1 \(vCPU 0, suspended, long mode\) 0x0+1010 in \?\? \(\)/);
    assert.match(output, /2 +Thread 2 \(vCPU 1, suspended, long mode\)/);
    assert.match(output, /rip +0x1010 +0x1010/);
    assert.match(output, /cr3 +0x5000 +20480/);
    assert.match(output, /Register cr8 cannot be read on this target/);
    assert.match(output, /0x1000:\t0x00\t0x01\t0x02\t0x03/);
    assert.match(output, /0x3ffe:\t0xfe\t0xff/);
    assert.match(output, /Single-step is not available: the fake cannot step/);
    assert.match(output, /fake monitor: hello/);
    assert.match(output, /Cannot insert breakpoint 1/);
    assert.match(output, /\[Inferior 1 \(Remote target\) detached\]/);
    assert.deepEqual(target.calls, ["stop", "detach"]);
  },
});

Deno.test({
  name: "gdb: continue, then Ctrl-C interrupts with SIGINT",
  ignore: !hasGdb,
  async fn() {
    const { target, server, remote } = withServer();
    const resumed = Promise.withResolvers<void>();
    const resume = target.resume.bind(target);
    target.resume = () => {
      resumed.resolve();
      return resume();
    };
    const { output, timedOut } = await runGdb(
      [remote, "continue", "info registers rip", "detach"],
      {
        interruptOn: resumed.promise,
      },
    );
    await server.close();
    assert.ok(!timedOut, output);
    assert.match(output, /Thread 1 received signal SIGINT, Interrupt\./);
    assert.match(output, /rip +0x1010/);
    assert.deepEqual(target.calls, ["stop", "resume", "waitForStop", "stop", "detach"]);
  },
});

Deno.test({
  name: "gdb: a second gdb is refused while the first is attached",
  ignore: !hasGdb,
  async fn() {
    const { server, remote } = withServer();
    const attached = Promise.withResolvers<void>();
    const first = runGdb([remote, "shell sleep 1.5", "info threads", "detach"]);
    const wait = setInterval(() => server.busy && attached.resolve(), 10);
    await attached.promise;
    clearInterval(wait);
    await new Promise((r) => setTimeout(r, 300));
    const second = await runGdb([remote, "info threads"]);
    const firstResult = await first;
    await server.close();
    assert.match(second.output, /The VM is already being debugged by another debugger/);
    assert.match(firstResult.output, /\* 1 +Thread 1 \(vCPU 0/);
    assert.match(firstResult.output, /detached/);
  },
});
