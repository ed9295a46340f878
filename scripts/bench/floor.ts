/**
 * The cost floor: how long the libvmmapi calls behind each operation take on their own, so the
 * server's own overhead shows. Run as its own process against a running test VM:
 *
 *   TESTVM_DIR=… deno run -A scripts/bench/floor.ts --vm NAME --size BYTES --repeat N
 *
 * Prints one JSON object. The calls behind `g`, attach and the thread listing are recorded
 * while the vmm layer does the operation once, then replayed alone; memory is floored as what
 * any reader must do: one vm_gla2gpa_nofault per 4 KiB page (or per 2 MiB page, where the guest
 * maps large pages) and one copy out of the mapping.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadVmmapi } from "../../ffi/mod.ts";
import { VmTarget } from "../../vmm/mod.ts";
import type { VmHandle } from "../../vmm/vmmapi.ts";
import { DMAP_VBASE } from "../../tests/testvm/layout.ts";
import { LIBVMMAPI } from "../../tests/helpers/testvm.ts";
import { type Call, countCalls, median, recorder } from "./recorder.ts";

function replay(vm: VmHandle, calls: Call[]): void {
  for (const { method, args } of calls) {
    (vm[method] as (...a: unknown[]) => unknown).apply(vm, args);
  }
}

const now = () => performance.now();

function time(repeat: number, f: () => void): number {
  const samples: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = now();
    f();
    samples.push((now() - t0) * 1000);
  }
  return median(samples);
}

const { values: args } = parseArgs({
  args: Deno.args,
  options: { vm: { type: "string" }, size: { type: "string" }, repeat: { type: "string" } },
});
const size = Number(args.size ?? 64 << 20);
const repeat = Number(args.repeat ?? 20);
const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
const raw = api.open(args.vm!);
const { vm, calls, recording } = recorder(raw);
const target = new VmTarget(vm);

// Attach and release: the calls the vmm layer makes for them, replayed alone.
recording.on = true;
await target.stop();
recording.on = false;
const stopCalls = calls.splice(0);
const active = target.activeCpus();

// g: the calls behind one uncached read of every register (what RegisterReader.readAll makes).
recording.on = true;
target.registers.readAll(active[0]!);
recording.on = false;
const gCalls = calls.splice(0);
const gFloorUs = time(repeat * 10, () => replay(raw, gCalls));
const readAllUs = time(repeat * 10, () => target.registers.readAll(active[0]!));

// Thread listing: the active set and each vCPU's paging state.
const ids = Int32Array.of(4, 5, 6, 33); // CR0, CR3, CR4, EFER (VmReg)
const values = new BigUint64Array(4);
const threadsFloorUs = time(repeat, () => {
  for (const vcpu of raw.activeCpus()) raw.getRegisterSet(vcpu, ids, values);
});

// Memory: translation per page and the copy out of the mapping.
const paging = target.pagingState(active[0]!).paging;
const pages4k = size / 4096;
const t4k = now();
for (let p = 0; p < pages4k; p++) raw.gla2gpa(active[0]!, paging, DMAP_VBASE + BigInt(p * 4096), 1);
const gla2gpaPerPageUs = ((now() - t4k) * 1000) / pages4k;
const buffer = new Uint8Array(size);
raw.readRam(0n, buffer); // fault the mapping in once
const copyUs = time(Math.max(3, repeat / 4), () => raw.readRam(0n, buffer));
const copy4kUs = time(Math.max(3, repeat / 4), () => {
  for (let at = 0; at < size; at += 4096) raw.readRam(BigInt(at), buffer.subarray(at, at + 4096));
});

recording.on = true;
await target.resume();
recording.on = false;
const resumeCalls = calls.splice(0);
// Attach: the stop calls on a VM whose vCPUs have been running for a while (a replay right
// after a resume would find them not yet back in the guest), then the resume calls.
const stopSamples: number[] = [];
for (let i = 0; i < Math.max(3, repeat / 4); i++) {
  await new Promise((r) => setTimeout(r, 100));
  const t0 = now();
  replay(raw, stopCalls);
  stopSamples.push((now() - t0) * 1000);
  replay(raw, resumeCalls);
}
const attachFloorUs = median(stopSamples);

target.vm.close();
api.close();

console.log(JSON.stringify({
  vcpus: active.length,
  size,
  g: { calls: countCalls(gCalls), floorUs: gFloorUs, vmmReadAllUs: readAllUs },
  attach: {
    calls: countCalls(stopCalls),
    resumeCalls: countCalls(resumeCalls),
    floorUs: attachFloorUs,
  },
  threads: { floorUs: threadsFloorUs },
  memory: {
    gla2gpaPerPageUs,
    translate4kMs: (gla2gpaPerPageUs * pages4k) / 1000,
    translate2mMs: (gla2gpaPerPageUs * Math.ceil(size / (2 << 20))) / 1000,
    copyMs: copyUs / 1000,
    copyIn4kChunksMs: copy4kUs / 1000,
  },
}));
