/**
 * The protocol fuzzer on every push: 10,000 seeded cases against a fake target, a short run
 * against the real VM, the allocation probes for hostile lengths, and a check that the fuzzer
 * notices a broken handler at all. `deno task fuzz -- --seed N --cases N` runs more.
 */
import assert from "node:assert/strict";
import { Session } from "../../rsp/session.ts";
import { TargetError } from "../../rsp/target.ts";
import { loadVmmapi } from "../../ffi/mod.ts";
import { openTarget, type VmTarget } from "../../vmm/mod.ts";
import { FakeTarget } from "../rsp/fake_target.ts";
import { LIBVMMAPI, TestVm, testvmBuilt } from "../helpers/testvm.ts";
import { fuzz, FuzzConnection, type FuzzStats } from "./fuzzer.ts";
import { RECORDED, type Recorded } from "./record.ts";

/** The CI seed. Change it only together with the regressions it found. */
export const CI_SEED = 0x8d5eed;
export const CI_CASES = 10_000;

function report(stats: FuzzStats): string {
  return stats.failures.slice(0, 10).map((f) =>
    `case ${f.case}: ${f.problem}\n  bytes: ${JSON.stringify(f.bytes)}`
  ).join("\n");
}

Deno.test(`fuzz: ${CI_CASES} seeded cases against the fake target`, async () => {
  const started = performance.now();
  const stats = await fuzz({ seed: CI_SEED, cases: CI_CASES, target: () => new FakeTarget() });
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${stats.cases} cases, ${stats.sessions} sessions, ${stats.packetsAnswered} packets ` +
      `answered, ${stats.bytesIn} bytes in, ${stats.bytesOut} out, heap+external ` +
      `${(stats.heapBefore / 2 ** 20).toFixed(1)} -> peak ${
        (stats.heapPeak / 2 ** 20).toFixed(1)
      } MiB, ${seconds.toFixed(1)} s`,
  );
  assert.equal(stats.cases, CI_CASES);
  assert.equal(stats.failures.length, 0, report(stats));
  assert.ok(stats.packetsAnswered > CI_CASES / 2, "the session answered too little: a dud run");
});

Deno.test("fuzz: the same seed gives the same run", async () => {
  const run = () => fuzz({ seed: 42, cases: 300, target: () => new FakeTarget() });
  const [a, b] = [await run(), await run()];
  assert.deepEqual(
    [a.sessions, a.packetsAnswered, a.bytesIn, a.bytesOut],
    [b.sessions, b.packetsAnswered, b.bytesIn, b.bytesOut],
  );
});

Deno.test("fuzz: a handler that throws something unexpected is caught as a failure", async () => {
  const stats = await fuzz({
    seed: 7,
    cases: 400,
    target: () => {
      const target = new FakeTarget();
      target.readRegisters = () => {
        throw new RangeError("a bug in the target");
      };
      return target;
    },
  });
  assert.ok(stats.failures.some((f) => /a bug in the target/.test(f.problem)), report(stats));
  assert.ok(stats.failures.every((f) => f.bytes.includes("g")));
});

/** Heap and buffers, after a collection when --v8-flags=--expose-gc allows it. */
function memory(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = Deno.memoryUsage();
  return usage.heapUsed + usage.external;
}

Deno.test("hostile lengths allocate nothing in proportion to what they claim", async () => {
  const target = new FakeTarget();
  const conn = new FuzzConnection(0x40000);
  const done = new Session(target, conn, { packetSize: 0x40000 }).run();
  const probes = [
    "$m0,ffffffffffffffff#",
    "$x0,ffffffffffffffff#",
    "$m1000,ffffffffffffffff#",
    "$x1000,7fffffffffffffff#",
    "$mffffffffffffffff,ffffffffffffffff#",
    "$qXfer:features:read:target.xml:0,ffffffffffffffff#",
    "$qXfer:features:read:target.xml:ffffffffffffffff,ffffffffffffffff#",
    "$pffffffff#",
    "$M0,ffffffffffffffff:00#",
    "$X0,ffffffffffffffff:#",
    "$Z0,ffffffffffffffff,ffffffff#",
    `$a${"*~".repeat(200_000)}#`, // run-length claims 45 MB
    `$${"a".repeat(0x100000)}#`, // a 1 MiB packet against a 256 KiB PacketSize
  ];
  const frames = probes.map((probe) => {
    let sum = 0;
    for (let i = 1; i < probe.length - 1; i++) sum += probe.charCodeAt(i);
    const text = probe + (sum & 0xff).toString(16).padStart(2, "0");
    return Uint8Array.from(text, (c) => c.charCodeAt(0));
  });
  await conn.idle(5000);
  const before = memory();
  let peak = before;
  for (let round = 0; round < 20; round++) {
    for (const [i, bytes] of frames.entries()) {
      conn.push(bytes);
      assert.ok(await conn.idle(10_000), `no answer to ${probes[i]!.slice(0, 60)}`);
      peak = Math.max(peak, Deno.memoryUsage().heapUsed + Deno.memoryUsage().external);
    }
  }
  assert.equal(conn.packets, 20 * probes.length, "every probe gets an answer");
  const after = memory();
  conn.end();
  await done;
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  console.log(`before ${mib(before)} MiB, peak ${mib(peak)} MiB, after ${mib(after)} MiB`);
  // The 1 MiB probe itself and a few 256 KiB replies are the only big buffers.
  assert.ok(peak - before < 32 * 2 ** 20, `peak grew by ${mib(peak - before)} MiB`);
  assert.ok(after - before < 8 * 2 ** 20, `kept ${mib(after - before)} MiB`);
  assert.deepEqual(conn.problems, []);
});

const noVm = !testvmBuilt();

Deno.test({
  name: "fuzz: a short run against the real VM leaves every vCPU running",
  ignore: noVm,
  async fn() {
    await using vm = await TestVm.start({ cpus: 2, mem: "64M" });
    vm.useDirHere();
    const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
    const target: VmTarget = openTarget(api, vm.name, { heldPollMs: 20, runningPollMs: 50 });
    try {
      // The demo guest's AP sits in bhyve's debug set until the BSP starts it.
      for (let waited = 0; target.vm.debugCpus().length > 0; waited += 20) {
        assert.ok(waited < 30_000, "the guest did not start its AP");
        await new Promise((r) => setTimeout(r, 20));
      }
      const baseline = target.vm.debugCpus();
      let sessions = 0;
      const stats = await fuzz({
        seed: CI_SEED + 1,
        cases: 400,
        casesPerSession: 60,
        caseTimeoutMs: 10_000,
        target: () => target,
        afterSession: (t) => {
          sessions++;
          assert.equal(t, target);
          assert.deepEqual(target.vm.debugCpus(), baseline, "a vCPU was left suspended");
        },
      });
      console.log(`${stats.cases} cases on VM ${vm.name}, ${stats.packetsAnswered} packets`);
      assert.equal(stats.failures.length, 0, report(stats));
      // And mutations of what the real gdb and lldb send (record.ts), on the same VM.
      const recorded: Recorded = JSON.parse(await Deno.readTextFile(RECORDED));
      const replayed = await fuzz({
        seed: CI_SEED + 2,
        cases: 300,
        casesPerSession: 60,
        caseTimeoutMs: 10_000,
        target: () => target,
        recorded: recorded.sessions.map((s) => s.packets),
        afterSession: () => {
          sessions++;
          assert.deepEqual(target.vm.debugCpus(), baseline, "a vCPU was left suspended");
        },
      });
      assert.equal(replayed.failures.length, 0, report(replayed));
      assert.ok(sessions >= 4);
      assert.deepEqual(target.vm.debugCpus(), baseline);
      assert.ok(target.gone === undefined);
    } finally {
      await target.close();
      api.close();
    }
  },
});

Deno.test("fuzz: a target error is an Enn reply and the session goes on", async () => {
  const target = new FakeTarget();
  target.readRegisters = () => {
    throw new TargetError("vm_get_register_set failed: EIO", 5);
  };
  const conn = new FuzzConnection(0x1000);
  const done = new Session(target, conn, { packetSize: 0x1000 }).run();
  for (let i = 0; i < 3; i++) {
    conn.push(new TextEncoder().encode("$g#67"));
    assert.ok(await conn.idle(2000));
  }
  assert.ok(!conn.closed);
  assert.equal(conn.packets, 3);
  conn.end();
  await done;
});

/** Mutated cases of recorded gdb and lldb traffic on every push (record.ts made the fixture). */
export const RECORDED_CASES = 5_000;

Deno.test(`fuzz: ${RECORDED_CASES} mutations of recorded gdb and lldb sessions`, async () => {
  const recorded: Recorded = JSON.parse(await Deno.readTextFile(RECORDED));
  const clients = new Set(recorded.sessions.map((s) => s.client));
  assert.deepEqual([...clients].sort(), ["gdb", "lldb"], "traffic of both clients");
  const stats = await fuzz({
    seed: CI_SEED,
    cases: RECORDED_CASES,
    target: () => new FakeTarget(),
    recorded: recorded.sessions.map((s) => s.packets),
  });
  console.log(
    `${stats.cases} recorded-traffic cases (${recorded.clients.join(", ")}), ${stats.sessions} ` +
      `sessions, ${stats.packetsAnswered} packets answered`,
  );
  assert.equal(stats.failures.length, 0, report(stats));
  assert.ok(stats.packetsAnswered > RECORDED_CASES, "the session answered too little");
});
