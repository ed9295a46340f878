/**
 * Safe defaults of the real main.ts on the test VM: localhost unless told otherwise (and a
 * warning when told otherwise), no guest writes of any kind, `k` never kills the VM, and one
 * instance per VM.
 */
import assert from "node:assert/strict";
import { TestVm, testvmBuilt } from "../helpers/testvm.ts";
import { RawClient } from "../rsp/tcp_client.ts";
import * as L from "../testvm/layout.ts";
import { freePort, MAIN, RunningVm, Server } from "./harness.ts";

const ignore = !testvmBuilt();
const CPUS = 2;
const MAIN_SOURCE = Deno.readTextFileSync(MAIN);

/** This host's first non-loopback IPv4 address, if it has one. */
function outsideAddress(): string | undefined {
  return Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    ?.address;
}

async function connects(hostname: string, port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname, port })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "-G PORT listens on localhost only; another address is warned about",
  ignore,
  async fn() {
    await using vm = await TestVm.start({ cpus: CPUS, mem: "64M" });
    const port = freePort();
    {
      await using server = await Server.start(vm, { listen: String(port) });
      assert.match(server.stderr, new RegExp(`target remote 127\\.0\\.0\\.1:${port}'`));
      assert.doesNotMatch(server.stderr, /not localhost/);
      assert.ok(await connects("127.0.0.1", port));
      const outside = outsideAddress();
      if (outside !== undefined) assert.ok(!(await connects(outside, port)), outside);
    }
    {
      await using server = await Server.start(vm, { listen: `0.0.0.0:${freePort()}` });
      const warning = server.stderr.split("\n").find((l) => /not localhost/.test(l)) ?? "";
      assert.match(warning, /WRN/);
      assert.match(
        warning,
        new RegExp(
          `listening on 0\\.0\\.0\\.0:\\d+, not localhost: anyone who can reach it ` +
            `can read the memory of VM ${vm.name}`,
        ),
      );
    }
  },
});

Deno.test({
  name: "no guest writes: G, P, M, X are refused and guest memory and registers are unchanged",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm);
    const client = await RawClient.connect(server.port);
    try {
      await client.ask("qSupported:multiprocess+;vContSupported+;error-message+");
      assert.equal(await client.ask("?"), "T05thread:1;");
      const layout = L.LAYOUT_PHYS;
      const text = L.KERNEL_PHYS;
      const memoryBefore = [observer.read(layout, 64), observer.read(text, 4096)];
      const registersBefore = [await client.ask("g"), await client.ask("g;thread:2;")];
      const ripBefore = await client.ask("p10");
      const layoutVa = (L.KERNEL_VBASE + layout).toString(16);
      const textVa = (L.KERNEL_VBASE + text).toString(16);
      const writes = [
        `G${"00".repeat(8 * 16)}`,
        `P10=${"00".repeat(8)}`,
        "P0=4141414141414141",
        `M${layoutVa},8:${"41".repeat(8)}`,
        `M${textVa},4:cccccccc`,
        `X${layoutVa},4:AAAA`,
        `X${textVa},0:`,
        `M${L.PRIVATE_PHYS.toString(16)},2:4242`,
      ];
      for (const write of writes) {
        const answer = await client.ask(write);
        assert.match(
          answer ?? "",
          /^E\.Writ.* not available: bhyve-gdbstub was started without --allow-write/,
          write,
        );
      }
      // Resuming at an address would write rip: refused too.
      assert.match(await client.ask("c ffffffff80100000") ?? "", /^E/);
      assert.deepEqual([observer.read(layout, 64), observer.read(text, 4096)], memoryBefore);
      assert.deepEqual([await client.ask("g"), await client.ask("g;thread:2;")], registersBefore);
      assert.equal(await client.ask("p10"), ripBefore);
      // `k` detaches; it never destroys the VM.
      await client.send("k");
      assert.match(await client.reply() ?? "", /^E\.bhyve-gdbstub never kills a VM: it detached/);
      assert.equal(await client.reply(), undefined);
      await observer.allRunning(CPUS, 5000); // the VM is alive and runs
      assert.equal(await server.exited(200), undefined, "the server keeps serving");
      const again = await RawClient.connect(server.port);
      assert.equal(await again.ask("qAttached"), "1");
      again.close();
    } finally {
      client.close();
    }
  },
});

Deno.test({
  name: "a second instance on the same VM is refused, naming the first one's PID",
  ignore: ignore || !MAIN_SOURCE.includes("lockVm"),
  async fn() {
    await using vm = await TestVm.start({ cpus: 1, mem: "64M" });
    const dir = await Deno.makeTempDir();
    try {
      const env = { BHYVE_GDBSTUB_LOCK_DIR: dir };
      await using first = await Server.start(vm, { env });
      const second = await Server.start(vm, { env }).catch((error: Error) => error);
      assert.ok(second instanceof Error, "the second instance started");
      assert.match(
        second.message,
        new RegExp(
          `VM ${vm.name} is already being served by another bhyve-gdbstub ` +
            `\\(process ${first.pid} holds ${dir}/bhyve-gdbstub\\.${vm.name}\\.lock\\)`,
        ),
      );
      const client = await RawClient.connect(first.port);
      assert.equal(await client.ask("qAttached"), "1");
      client.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
