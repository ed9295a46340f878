/**
 * Core dumps, like for like: QEMU's `dump-guest-memory` (through QMP) and bhyve-gdbstub's dump
 * path (vmm/dump.ts and core/) saving the same machine into /tmp (`deno task bench:dump`).
 *
 *   deno run -A scripts/bench/dump.ts [--mib N] [--rounds N] [--quick]
 *
 * Two machines of N MiB, each the stock Debian kernel booted in QEMU (KVM where /dev/kvm exists,
 * else TCG) to its panic loop, then stopped:
 *
 * - sparse: plain RAM, which the kernel leaves mostly zero (a real, idle guest);
 * - dense: RAM backed by a file of random bytes (copied privately, so the guest's writes stay
 *   in QEMU), which the kernel leaves mostly non-zero: the copy at its slowest, no holes.
 *
 * QEMU saves each one first; ours then saves the machine rebuilt from that file (its RAM and
 * registers, read from this process's own buffer: on FreeBSD the VM's memory is a mapping
 * too), as the `dump` subcommand does: hold, copy, release. These first dumps are round 0, a
 * warm-up shown but left out of the summary. Each later round times both sides again, taking
 * turns at going first, each dump starting with neither file on disk, right after a warm-up
 * write of its size. The report gives every sample, then per machine the medians, min–max and
 * ours/QEMU. `--quick` (CI's smoke, 128 MiB, one round) fails only on a crash, never on a
 * number.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { nonZeroRuns } from "../../core/writer.ts";
import { loads, vmFromQemuCore } from "../../tests/helpers/core_image.ts";
import { vmlinuxPath } from "../../tests/linux/linux.ts";
import { bootToPanic } from "../../tests/linux/qemu_panic.ts";
import { qmp } from "../../tests/linux/qmp.ts";
import type { FakeVm } from "../../tests/vmm/fake_vmm.ts";
import { dumpVm } from "../../vmm/dump.ts";
import { VmTarget } from "../../vmm/target.ts";
import { machine, machineLine } from "./machine.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string" }, rounds: { type: "string" }, quick: { type: "boolean" } },
});
const mib = Number(flags.mib ?? (flags.quick ? 128 : 1024));
const rounds = Number(flags.rounds ?? (flags.quick ? 1 : 3));
const DIR = "/tmp";
const QEMU_CORE = `${DIR}/bench-dump-qemu.core`;
const OURS_CORE = `${DIR}/bench-dump-ours.core`;

type Side = "QEMU" | "ours";

/** One timed dump. */
interface Sample {
  memory: string;
  round: number;
  side: Side;
  /** Went first in its round. */
  first: boolean;
  seconds: number;
  /** How long the guest was held (QEMU stops it for the whole dump). */
  held: number;
  /** Bytes the file takes on disk (holes excluded). */
  disk: number;
}

async function diskUse(path: string): Promise<number> {
  return ((await Deno.stat(path)).blocks ?? 0) * 512;
}

async function qemuDump(socket: string): Promise<number> {
  const start = performance.now();
  await qmp(socket, [
    { execute: "dump-guest-memory", arguments: { paging: false, protocol: `file:${QEMU_CORE}` } },
  ]);
  return (performance.now() - start) / 1000;
}

async function oursDump(vm: FakeVm): Promise<{ seconds: number; held: number }> {
  const target = new VmTarget(vm);
  try {
    const r = await dumpVm(target, OURS_CORE);
    return { seconds: r.seconds, held: r.heldSeconds ?? 0 };
  } finally {
    await target.close();
  }
}

/** The share of RAM pages in a QEMU core that are not all zero. */
function nonZeroShare(core: Uint8Array): number {
  let ram = 0;
  let data = 0;
  for (const load of loads(core)) {
    const bytes = core.subarray(load.offset, load.offset + load.size);
    ram += load.size;
    for (const [start, end] of nonZeroRuns(bytes)) data += end - start;
  }
  return data / ram;
}

/**
 * Writes the dense machine's RAM to `path`: `bytes` of random data but for the first MiB, which
 * stays zero (with random bytes there QEMU's boot ROM never reaches the kernel).
 */
async function randomFile(path: string, bytes: number): Promise<void> {
  const chunk = new Uint8Array(1 << 20);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await file.write(chunk);
  for (let at = chunk.length; at < bytes; at += chunk.length) {
    for (let i = 0; i < chunk.length; i += 65536) {
      crypto.getRandomValues(chunk.subarray(i, i + 65536));
    }
    await file.write(chunk.subarray(0, Math.min(chunk.length, bytes - at)));
  }
}

/**
 * Writes and removes a file of `bytes`, just before a dump: on a VM whose memory the host hands
 * out on first touch and takes back once free (free page reporting, as on this machine), a GiB
 * of page cache costs seconds to whoever writes it after a pause (while the other side dumped,
 * say), and a fraction of a second right after another write freed it.
 */
async function warmUp(bytes: number): Promise<void> {
  const path = `${DIR}/bench-dump-warm-up`;
  const chunk = new Uint8Array(8 << 20).fill(1);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let at = 0; at < bytes; at += chunk.length) await file.write(chunk);
  await Deno.remove(path);
}

/** Boots one machine, has QEMU save it once (untimed), then times both sides `rounds` times. */
async function measure(
  memory: string,
  vmlinux: string,
  dir: string,
  extra: string[],
): Promise<{ samples: Sample[]; share: number }> {
  await Deno.mkdir(dir);
  console.error(`bench:dump: booting the kernel in QEMU with ${mib} MiB of ${memory} RAM`);
  const qemu = await bootToPanic(vmlinux, dir, { mem: `${mib}M`, vcpus: 2, extra });
  const socket = `${dir}/qmp.sock`;
  const samples: Sample[] = [];
  try {
    // The panicked kernel spins (mdelay loops); stopped, its vCPUs take no CPU from either
    // side's dump (QEMU would stop them for its own dump anyway, ours would not).
    await qmp(socket, [{ execute: "stop" }]);
    // Round 0, each side's first dump of this machine, is a warm-up left out of the summary:
    // QEMU's file gives ours its machine, and ours's first pass over that fresh buffer ran
    // several times slower here (in its write calls, so in the kernel) than every later one.
    let image: FakeVm | undefined;
    let share = 0;
    for (let round = 0; round <= rounds; round++) {
      const order: Side[] = round % 2 === 0 ? ["QEMU", "ours"] : ["ours", "QEMU"];
      for (const side of order) {
        // Each dump starts alike: neither file on disk, the disk idle, and the page cache it
        // is about to fill freshly written (see warmUp).
        for (const f of [QEMU_CORE, OURS_CORE]) await Deno.remove(f).catch(() => {});
        await new Deno.Command("sync").output();
        await warmUp(mib * MiB);
        let seconds: number;
        let held: number;
        if (side === "QEMU") {
          seconds = held = await qemuDump(socket);
        } else {
          ({ seconds, held } = await oursDump(image!));
        }
        const disk = await diskUse(side === "QEMU" ? QEMU_CORE : OURS_CORE);
        samples.push({ memory, round, side, first: side === order[0], seconds, held, disk });
        if (image === undefined) {
          const core = await Deno.readFile(QEMU_CORE);
          share = nonZeroShare(core);
          image = vmFromQemuCore(core);
        }
      }
    }
    return { samples, share };
  } finally {
    qemu.kill("SIGKILL");
    await qemu.status;
  }
}

const fmt = (n: number, digits = 3) => n.toFixed(digits);
const MiB = 2 ** 20;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const spread = (values: number[], digits = 3) =>
  `${fmt(median(values), digits)} (${fmt(Math.min(...values), digits)}–${
    fmt(Math.max(...values), digits)
  })`;

function samplesTable(samples: Sample[]): string {
  const lines = [
    "| memory | round (0: warm-up) | dump | first | time (s) | MB/s of RAM | guest held (s) | on disk (MiB) |",
    "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
  ];
  for (const s of samples) {
    lines.push(
      `| ${s.memory} | ${s.round} | ${s.side} | ${s.first ? "yes" : "no"} | ${fmt(s.seconds)} | ` +
        `${fmt((mib * MiB) / 1e6 / s.seconds, 0)} | ${fmt(s.held)} | ${fmt(s.disk / MiB, 1)} |`,
    );
  }
  return lines.join("\n");
}

function summaryTable(results: { samples: Sample[]; share: number }[]): string {
  const lines = [
    "| memory | RAM not zero | QEMU (s), median (min–max) | ours (s), median (min–max) | ours / QEMU, median (min–max of rounds) |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const { samples, share } of results) {
    const timed = samples.filter((s) => s.round > 0);
    const time = (side: Side) => timed.filter((s) => s.side === side).map((s) => s.seconds);
    const ratios = [];
    for (let round = 1; round <= rounds; round++) {
      const of = (side: Side) => timed.find((s) => s.round === round && s.side === side)!.seconds;
      ratios.push(of("ours") / of("QEMU"));
    }
    lines.push(
      `| ${samples[0]!.memory} | ${fmt(share * 100, 0)}% | ${spread(time("QEMU"))} | ` +
        `${spread(time("ours"))} | ${spread(ratios, 2)} |`,
    );
  }
  return lines.join("\n");
}

const vmlinux = await vmlinuxPath();
const work = await Deno.makeTempDir({ prefix: "bench-dump-" });
try {
  const sparse = await measure("sparse", vmlinux, `${work}/sparse`, []);
  const ramFile = `${work}/ram`;
  await randomFile(ramFile, mib * MiB);
  const dense = await measure("dense", vmlinux, `${work}/dense`, [
    ...["-object", `memory-backend-file,id=ram,size=${mib}M,mem-path=${ramFile},share=off`],
    ...["-machine", "memory-backend=ram"],
  ]);
  console.log(machineLine(await machine()));
  console.log(
    `Run: ${new Date().toISOString()}, ${mib} MiB guests, ${rounds} round(s), files in ${DIR}, ` +
      `load average ${Deno.loadavg().join(" ")}\n`,
  );
  console.log(samplesTable([...sparse.samples, ...dense.samples]));
  console.log();
  console.log(summaryTable([sparse, dense]));
} finally {
  for (const f of [QEMU_CORE, OURS_CORE]) await Deno.remove(f).catch(() => {});
  await Deno.remove(work, { recursive: true });
}
