/**
 * The protocol fuzzer (tests/fuzz/fuzzer.ts) from the command line:
 *
 *   deno task fuzz --seed 7 --cases 1000000
 *   deno task fuzz --target vm --cases 5000      # against the test VM (builds nothing)
 *
 * Same seed, same cases. Every failure is printed with the exact bytes of its case, ready to
 * paste into tests/fuzz/regressions_test.ts. Exits 1 if anything failed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { fuzz, type FuzzStats } from "../tests/fuzz/fuzzer.ts";
import { RECORDED, type Recorded } from "../tests/fuzz/record.ts";
import { FakeTarget } from "../tests/rsp/fake_target.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string", default: "1" },
    cases: { type: "string", default: "100000" },
    target: { type: "string", default: "fake" },
    "packet-size": { type: "string", default: "4096" },
    recorded: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno task fuzz [--seed N] [--cases N] [--target fake|vm] [--packet-size N] " +
      "[--recorded (mutate recorded gdb and lldb sessions)]",
  );
  Deno.exit(0);
}
const seed = Number(values.seed);
const cases = Number(values.cases);
const packetSize = Number(values["packet-size"]);
if (![seed, cases, packetSize].every(Number.isSafeInteger) || cases < 1 || packetSize < 64) {
  console.error("fuzz: --seed, --cases and --packet-size take integers");
  Deno.exit(2);
}

const recorded = values.recorded
  ? (JSON.parse(await Deno.readTextFile(RECORDED)) as Recorded).sessions.map((s) => s.packets)
  : undefined;
const started = performance.now();
const progress = (done: number, stats: FuzzStats) =>
  console.error(
    `${done} cases, ${stats.failures.length} failures, ${
      ((performance.now() - started) / 1000).toFixed(0)
    } s`,
  );

let stats: FuzzStats;
if (values.target === "vm") {
  const { loadVmmapi } = await import("../ffi/mod.ts");
  const { openTarget } = await import("../vmm/mod.ts");
  const { LIBVMMAPI, TestVm } = await import("../tests/helpers/testvm.ts");
  await using vm = await TestVm.start({ cpus: 2, mem: "64M" });
  vm.useDirHere();
  const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
  const target = openTarget(api, vm.name, { heldPollMs: 20, runningPollMs: 50 });
  try {
    while (target.vm.debugCpus().length > 0) await new Promise((r) => setTimeout(r, 20));
    let left = 0;
    stats = await fuzz({
      seed,
      cases,
      packetSize,
      casesPerSession: 60,
      caseTimeoutMs: 10_000,
      target: () => target,
      afterSession: () => {
        if (target.vm.debugCpus().length > 0) left++;
      },
      onProgress: progress,
      ...(recorded !== undefined && { recorded }),
    });
    if (left > 0) {
      stats.failures.push({ case: -1, bytes: "", problem: `${left} sessions left a vCPU parked` });
    }
  } finally {
    await target.close();
    api.close();
  }
} else {
  stats = await fuzz({
    seed,
    cases,
    packetSize,
    target: () => new FakeTarget(),
    onProgress: progress,
    ...(recorded !== undefined && { recorded }),
  });
}

const seconds = (performance.now() - started) / 1000;
const mib = (n: number) => (n / 2 ** 20).toFixed(1);
console.log(
  `seed ${seed}: ${stats.cases} cases against the ${values.target} target in ${
    seconds.toFixed(1)
  } s, ${stats.sessions} sessions, ${stats.packetsAnswered} packets answered, ` +
    `${stats.bytesIn} bytes in, ${stats.bytesOut} bytes out; heap+external ` +
    `${mib(stats.heapBefore)} MiB before, ${mib(stats.heapPeak)} peak, ${
      mib(stats.heapAfter)
    } after`,
);
const seen = new Set<string>();
for (const failure of stats.failures) {
  const key = failure.problem.slice(0, 100);
  if (seen.has(key)) continue;
  seen.add(key);
  console.log(
    `FAIL case ${failure.case}: ${failure.problem}\n  bytes: ${JSON.stringify(failure.bytes)}`,
  );
}
console.log(`${stats.failures.length} failures (${seen.size} distinct)`);
Deno.exit(stats.failures.length === 0 ? 0 : 1);
