/**
 * How attach and the thread listing grow with the number of vCPUs (1, 8, 128 by default):
 * libvmmapi calls per vCPU and time, measured in this process through the vmm layer (the
 * server adds only packets on top), against the test VM in its FreeBSD 15 mode.
 *
 *   deno task bench:scaling [--cpus 1,8,128] [--reps 5]
 *
 * Attach is VmTarget.stop() (what `target remote` costs the server); the listing is the
 * first VmTarget.threads() after it (qfThreadInfo and every qThreadExtraInfo: the active set
 * and each vCPU's paging state). The demo guest starts 8 vCPUs; beyond that the vCPUs stay in
 * bhyve's hands at the reset vector, as APs a guest never starts do.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadVmmapi } from "../../ffi/mod.ts";
import { VmTarget } from "../../vmm/mod.ts";
import { LIBVMMAPI, TestVm } from "../../tests/helpers/testvm.ts";
import { type Call, countCalls, median, recorder } from "./recorder.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: { cpus: { type: "string" }, reps: { type: "string" } },
});
const cpuCounts = (args.cpus ?? "1,8,128").split(",").map(Number);
const reps = Number(args.reps ?? 5);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  vcpus: number;
  attachMs: number;
  attachCalls: Record<string, number>;
  listMs: number;
  listCalls: Record<string, number>;
}

const total = (calls: Record<string, number>) => Object.values(calls).reduce((a, b) => a + b, 0);

async function measure(cpus: number): Promise<Row> {
  await using vm = await TestVm.start({ cpus, mem: "256M", readyTimeoutMs: 120_000 });
  vm.useDirHere();
  const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
  const handle = api.open(vm.name);
  const { vm: counted, calls, recording } = recorder(handle);
  const target = new VmTarget(counted);
  await sleep(2000); // let the guest start its APs
  const attach: number[] = [];
  const list: number[] = [];
  let attachCalls: Call[] = [];
  let listCalls: Call[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      calls.length = 0;
      recording.on = true;
      let t0 = performance.now();
      await target.stop();
      attach.push(performance.now() - t0);
      attachCalls = calls.splice(0);
      t0 = performance.now();
      target.threads();
      list.push(performance.now() - t0);
      listCalls = calls.splice(0);
      recording.on = false;
      await target.resume();
      await sleep(100);
    }
  } finally {
    await target.close();
    api.close();
  }
  return {
    vcpus: cpus,
    attachMs: median(attach),
    attachCalls: countCalls(attachCalls),
    listMs: median(list),
    listCalls: countCalls(listCalls),
  };
}

const rows: Row[] = [];
for (const cpus of cpuCounts) rows.push(await measure(cpus));

const fmt = (n: number) => n.toPrecision(3);
console.log(
  `Attach and thread listing by vCPU count (test VM, FreeBSD 15 mode, median of ${reps})\n`,
);
console.log("| vCPUs | attach (ms) | calls | calls/vCPU | listing (ms) | calls | calls/vCPU |");
console.log("| ----: | ----------: | ----: | ---------: | -----------: | ----: | ---------: |");
for (const r of rows) {
  const a = total(r.attachCalls);
  const l = total(r.listCalls);
  console.log(
    `| ${r.vcpus} | ${fmt(r.attachMs)} | ${a} | ${fmt(a / r.vcpus)} | ${fmt(r.listMs)} | ${l} | ${
      fmt(l / r.vcpus)
    } |`,
  );
}
console.log("\nCalls by function:");
for (const r of rows) {
  console.log(`  ${r.vcpus} vCPUs: attach ${JSON.stringify(r.attachCalls)}`);
  console.log(`  ${r.vcpus} vCPUs: listing ${JSON.stringify(r.listCalls)}`);
}
