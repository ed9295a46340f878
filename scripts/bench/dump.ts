/**
 * Core dumps, side by side: QEMU's `dump-guest-memory` (through QMP) and bhyve-gdbstub's dump
 * path (vmm/dump.ts and core/), same RAM size, same kernel, files in /tmp (`deno task
 * bench:dump`).
 *
 *   deno run -A scripts/bench/dump.ts [--mib N] [--rounds N] [--quick]
 *
 * 1. QEMU boots the stock Debian kernel with N MiB (KVM where /dev/kvm exists, else TCG) until
 *    its panic loop, then saves it with `dump-guest-memory` (QEMU stops the guest for it).
 * 2. Ours saves the same machine (its RAM and registers rebuilt from QEMU's file), as the
 *    `dump` subcommand does: hold, copy, release. The kernel leaves most of its RAM zero.
 * 3. Ours again on a machine of the same size whose pages are all non-zero (random bytes):
 *    the copy at its slowest, with no holes to skip.
 *
 * The guest's memory is read from this process's own buffer (on FreeBSD it is a mapping of the
 * VM's memory: one memcpy as well). One run; `--quick` (CI's smoke, 128 MiB) fails only on a
 * crash, never on a number. Each round dumps all three again (QEMU's guest stays booted), so
 * a cold page cache in the first round shows as such.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { vmFromQemuCore } from "../../tests/helpers/core_image.ts";
import { addRam } from "../../tests/helpers/fake_machine.ts";
import { vmlinuxPath } from "../../tests/linux/linux.ts";
import { bootToPanic } from "../../tests/linux/qemu_panic.ts";
import { qmp } from "../../tests/linux/qmp.ts";
import { FakeVm } from "../../tests/vmm/fake_vmm.ts";
import { type DumpReport, dumpVm } from "../../vmm/dump.ts";
import { VmTarget } from "../../vmm/target.ts";
import { machine, machineLine } from "./machine.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string" }, rounds: { type: "string" }, quick: { type: "boolean" } },
});
const mib = Number(flags.mib ?? (flags.quick ? 128 : 1024));
const rounds = Number(flags.rounds ?? (flags.quick ? 1 : 2));
const DIR = "/tmp";

interface Row {
  side: string;
  seconds: number;
  held: number;
  /** The copy of RAM into the file alone. */
  copy: number;
  ram: bigint;
  data: bigint;
  size: bigint;
  disk: number;
}

async function diskUse(path: string): Promise<number> {
  return ((await Deno.stat(path)).blocks ?? 0) * 512;
}

async function qemuDump(work: string, out: string): Promise<Row> {
  await Deno.remove(out).catch(() => {});
  const start = performance.now();
  await qmp(`${work}/qmp.sock`, [
    { execute: "dump-guest-memory", arguments: { paging: false, protocol: `file:${out}` } },
  ]);
  const seconds = (performance.now() - start) / 1000;
  const size = BigInt((await Deno.stat(out)).size);
  // QEMU stops the guest for the whole dump and writes every byte.
  return {
    side: "QEMU dump-guest-memory",
    seconds,
    held: seconds,
    copy: seconds,
    ram: size,
    data: size,
    size,
    disk: await diskUse(out),
  };
}

async function oursDump(side: string, vm: FakeVm, out: string): Promise<Row> {
  await Deno.remove(out).catch(() => {});
  const target = new VmTarget(vm);
  try {
    const r: DumpReport = await dumpVm(target, out);
    return {
      side,
      seconds: r.seconds,
      held: r.heldSeconds ?? 0,
      copy: r.copySeconds,
      ram: r.ram,
      data: r.data,
      size: r.size,
      disk: await diskUse(out),
    };
  } finally {
    await target.close();
  }
}

function randomMachine(bytes: number): FakeVm {
  const vm = new FakeVm({ active: [0, 1], ram: [] });
  const ram = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += 65536) crypto.getRandomValues(ram.subarray(at, at + 65536));
  addRam(vm, 0n, ram);
  return vm;
}

const MB = 1e6;
const fmt = (n: number, digits = 3) => n.toFixed(digits);

function table(rows: Row[]): string {
  const lines = [
    "| round | dump | RAM (MiB) | not zero | time (s) | MB/s of RAM | guest held (s) | copy (s) | file (MiB) | on disk (MiB) | time / QEMU's |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [i, r] of rows.entries()) {
    const qemu = rows[i - (i % 3)]!;
    lines.push(
      `| ${Math.floor(i / 3) + 1} | ${r.side} | ${Number(r.ram) >> 20} | ${
        fmt((Number(r.data) / Number(r.ram)) * 100, 0)
      }% | ` +
        `${fmt(r.seconds)} | ${fmt(Number(r.ram) / MB / r.seconds, 0)} | ${fmt(r.held)} | ${
          fmt(r.copy)
        } | ` +
        `${fmt(Number(r.size) / 2 ** 20, 1)} | ${fmt(r.disk / 2 ** 20, 1)} | ` +
        `${fmt(r.seconds / qemu.seconds, 2)}× |`,
    );
  }
  return lines.join("\n");
}

/**
 * Writes and removes a file of the guests' size first: on some machines (a VM whose memory the
 * host hands out on first touch) the first GiB of page cache costs seconds, whoever writes it.
 */
async function warmUp(bytes: number): Promise<void> {
  const path = `${DIR}/bench-dump-warm-up`;
  const chunk = new Uint8Array(8 << 20).fill(1);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let at = 0; at < bytes; at += chunk.length) await file.write(chunk);
  await Deno.remove(path);
}

const vmlinux = await vmlinuxPath();
const work = await Deno.makeTempDir({ prefix: "bench-dump-" });
const files = [
  `${DIR}/bench-dump-qemu.core`,
  `${DIR}/bench-dump-ours.core`,
  `${DIR}/bench-dump-ours-random.core`,
];
for (const f of files) await Deno.remove(f).catch(() => {});
try {
  await warmUp(mib << 20);
  console.error(`bench:dump: booting the kernel in QEMU with ${mib} MiB, then dumping it`);
  const qemu = await bootToPanic(vmlinux, work, { mem: `${mib}M`, vcpus: 2 });
  const rows: Row[] = [];
  try {
    // The panicked kernel spins (mdelay loops); stopped, its vCPUs take no CPU from either
    // side's dump (QEMU would stop them for its own dump anyway, ours would not).
    await qmp(`${work}/qmp.sock`, [{ execute: "stop" }]);
    const random = randomMachine(mib << 20);
    for (let round = 1; round <= rounds; round++) {
      const qemuRow = await qemuDump(work, files[0]!);
      const image = vmFromQemuCore(await Deno.readFile(files[0]!));
      rows.push(
        qemuRow,
        await oursDump("ours, the same machine", image, files[1]!),
        await oursDump("ours, every page non-zero", random, files[2]!),
      );
    }
  } finally {
    qemu.kill("SIGKILL");
    await qemu.status;
  }
  console.log(machineLine(await machine()));
  console.log(
    `Run: ${new Date().toISOString()}, ${mib} MiB guests, files in ${DIR}, load average ${
      Deno.loadavg().join(" ")
    }\n`,
  );
  console.log(table(rows));
} finally {
  for (const f of files) await Deno.remove(f).catch(() => {});
  await Deno.remove(work, { recursive: true });
}
