/**
 * A debugger that stalls mid-packet, or stops reading its replies, while it holds the VM: after
 * the stall timeout the connection is dropped and the guest resumed. The real server and the
 * real VmTarget on the test VM, in this process (the timeout is a serve() option; main.ts uses
 * the 30 s default).
 */
import assert from "node:assert/strict";
import { loadVmmapi } from "../../ffi/mod.ts";
import { serve } from "../../rsp/server.ts";
import { openTarget } from "../../vmm/mod.ts";
import { LIBVMMAPI, testvmBuilt } from "../helpers/testvm.ts";
import { RawClient } from "../rsp/tcp_client.ts";
import { type Observer, packet, RunningVm, until } from "./harness.ts";

const ignore = !testvmBuilt();
const CPUS = 2;
const STALL_MS = 1000;

async function withServer(
  fn: (port: number, observer: Observer) => Promise<void>,
): Promise<void> {
  await using running = await RunningVm.start(CPUS);
  const { vm, observer } = running;
  const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
  const target = openTarget(api, vm.name);
  const server = serve(target, { hostname: "127.0.0.1", port: 0, stallTimeoutMs: STALL_MS });
  try {
    await fn(server.addr.port, observer);
  } finally {
    await server.close();
    await target.close();
    api.close();
  }
}

Deno.test({
  name: "a debugger that stalls mid-packet is dropped after the timeout and the VM resumed",
  ignore,
  async fn() {
    await withServer(async (port, observer) => {
      const client = await RawClient.connect(port);
      assert.equal(await client.ask("?"), "T05thread:1;");
      assert.deepEqual(observer.debugCpus(), [0, 1]);
      await client.write("$m0,1"); // and nothing more
      const started = performance.now();
      assert.equal(await client.reply(), undefined, "the server hangs up");
      const took = performance.now() - started;
      assert.ok(took >= STALL_MS * 0.9 && took < STALL_MS + 3000, `dropped after ${took} ms`);
      await observer.allRunning(CPUS, 5000);
      client.close();
      // An idle debugger (between packets) is never timed out: the user may be reading.
      const idle = await RawClient.connect(port);
      assert.equal(await idle.ask("?"), "T05thread:1;");
      await new Promise((r) => setTimeout(r, STALL_MS * 2));
      assert.equal(await idle.ask("qAttached"), "1");
      assert.deepEqual(observer.debugCpus(), [0, 1]);
      idle.close();
      await observer.allRunning(CPUS, 5000);
    });
  },
});

Deno.test({
  name: "a debugger that sends nothing, or a lone '$', never pauses the VM and is dropped",
  ignore,
  async fn() {
    await withServer(async (port, observer) => {
      const silent = await Deno.connect({ hostname: "127.0.0.1", port });
      const dollar = await Deno.connect({ hostname: "127.0.0.1", port });
      await dollar.write(new TextEncoder().encode("$qSupported:multiprocess+"));
      const buffer = new Uint8Array(64);
      const ends = await Promise.all([silent.read(buffer), dollar.read(buffer)]);
      assert.deepEqual(ends, [null, null], "both dropped after the timeout");
      assert.deepEqual(observer.debugCpus(), [], "never paused");
      silent.close();
      dollar.close();
      // The real debugger gets in.
      const client = await RawClient.connect(port);
      assert.equal(await client.ask("?"), "T05thread:1;");
      client.close();
    });
  },
});

Deno.test({
  name: "a debugger that stops reading is dropped after the timeout and the VM resumed",
  ignore,
  async fn() {
    await withServer(async (port, observer) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const encoder = new TextEncoder();
      await conn.write(encoder.encode(packet("QStartNoAckMode")));
      // Ask for far more than the socket buffers hold (256 KiB per reply), read nothing.
      const ask = encoder.encode(packet("m100000,3ffff").repeat(400));
      const sending = (async () => {
        for (let at = 0; at < ask.length;) at += await conn.write(ask.subarray(at));
      })().catch(() => {});
      await until(() => observer.debugCpus().length === CPUS, "attached", 10_000);
      const started = performance.now();
      await until(() => observer.debugCpus().length === 0, "resumed after the stall", 20_000);
      const took = performance.now() - started;
      console.log(
        `VM resumed ${took.toFixed(0)} ms after the attach of a debugger that reads nothing`,
      );
      assert.ok(took >= STALL_MS * 0.5, `resumed after only ${took} ms`);
      await observer.counting(CPUS);
      conn.close();
      await sending;
      const client = await RawClient.connect(port);
      assert.equal(await client.ask("?"), "T05thread:1;");
      client.close();
    });
  },
});
