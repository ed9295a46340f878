/**
 * Benchmarks bhyve-gdbstub against QEMU's gdbstub on this machine (`deno task bench`).
 *
 *   deno run -A scripts/bench/main.ts [--quick] [--reps N] [--mib N] [--out DIR]
 *
 * Both sides run in the same process tree, alternating A/B (ABBA order) so that load from
 * elsewhere hits both alike; the side not being measured is frozen (SIGSTOP) so its guest
 * takes no CPU. Every figure is taken through gdb (what a user feels) and through a raw RSP
 * client (what the server can do). Prints a markdown table and writes it, with the samples as
 * JSON, to DIR/latest.md and DIR/latest.json (default bench-results/).
 *
 * `--quick` is the CI smoke: small reads, one repetition, under a minute. No number ever fails
 * the run; only a crash does (our server dying, or a figure of ours that cannot be taken).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  gdbAttach,
  gdbInterrupt,
  gdbSession,
  idleAttachedCpu,
  rawAttach,
  rawInterrupt,
  rawMemory,
  rawRegistersCached,
  rawRegistersFirst,
  rawThreads,
  type Side,
} from "./figures.ts";
import { machine } from "./machine.ts";
import { cpuSeconds, memory } from "./procstat.ts";
import { type FigureDef, type Floor, markdown, type Results, type SideName } from "./report.ts";
import { RspClient } from "./rsp_client.ts";
import { type Measured, OursServer, QemuServer } from "./servers.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    reps: { type: "string" },
    mib: { type: "string" },
    out: { type: "string", default: "bench-results" },
    accel: { type: "string" },
  },
});

const quick = flags.quick === true;
const config = {
  reps: Number(flags.reps ?? (quick ? 1 : 5)),
  size: Number(flags.mib ?? (quick ? 4 : 64)) << 20,
  gCount: quick ? 200 : 2000,
  threadsRepeat: quick ? 5 : 20,
  idleSeconds: quick ? 1 : 2,
  runMs: quick ? 150 : 300,
  cpuCounts: [1, 4, 8],
  memMiB: 256,
};

const FIGURES: FigureDef[] = [
  {
    id: "mem.gdb",
    label: `dump binary memory, ${config.size >> 20} MiB`,
    via: "gdb",
    unit: "MiB/s",
    better: "higher",
    goal: "≥ 10× QEMU",
  },
  { id: "mem.m", label: "`m` reads (hex)", via: "raw", unit: "MiB/s", better: "higher" },
  {
    id: "mem.x",
    label: "`x` reads (binary)",
    via: "raw",
    unit: "MiB/s",
    better: "higher",
    goal: "≥ 1024 MiB/s",
  },
  {
    id: "g.cached",
    label: "`g` round trips, same thread",
    via: "raw",
    unit: "per s",
    better: "higher",
    goal: "≤ 2× floor (below)",
  },
  {
    id: "g.first",
    label: "first `g` of each thread after attach",
    via: "raw",
    unit: "µs",
    better: "lower",
    goal: "≤ 2× floor (below)",
  },
  {
    id: "regs.gdb",
    label: "`thread apply all info registers`, 8 threads",
    via: "gdb",
    unit: "ms",
    better: "lower",
  },
  ...config.cpuCounts.flatMap((n): FigureDef[] => [
    {
      id: `attach.raw.${n}`,
      label: `attach (connect → stop reply), ${n} vCPU${n > 1 ? "s" : ""}`,
      via: "raw",
      unit: "ms",
      better: "lower",
      ...(n === 8 ? { goal: "< 50 ms" } : {}),
    },
    {
      id: `attach.gdb.${n}`,
      label: `attach (\`target remote\`), ${n} vCPU${n > 1 ? "s" : ""}`,
      via: "gdb",
      unit: "ms",
      better: "lower",
    },
  ]),
  {
    id: "intr.raw",
    label: "Ctrl-C byte → stop reply, guest running",
    via: "raw",
    unit: "ms",
    better: "lower",
    goal: "< 10 ms",
  },
  {
    id: "intr.gdb",
    label: "SIGINT to gdb → gdb stopped",
    via: "gdb",
    unit: "ms",
    better: "lower",
  },
  {
    id: "threads.raw",
    label: "thread listing (qfThreadInfo…, qThreadExtraInfo), 8 vCPUs",
    via: "raw",
    unit: "ms",
    better: "lower",
  },
  { id: "threads.gdb", label: "`info threads`, 8 vCPUs", via: "gdb", unit: "ms", better: "lower" },
  {
    id: "rss.peak",
    label: "server peak RSS (VmHWM; QEMU's includes the VM)",
    via: "/proc",
    unit: "MiB",
    better: "lower",
  },
  {
    id: "cpu.stopped",
    label: "server CPU while attached, VM stopped",
    via: "/proc",
    unit: "% of a core",
    better: "lower",
    goal: "no busy loop",
  },
  {
    id: "cpu.running",
    label: "server CPU while waiting for a stop (QEMU's includes the running guest)",
    via: "/proc",
    unit: "% of a core",
    better: "lower",
    goal: "no busy loop",
  },
];

/** Reads QEMU cannot take: it has no `x` packet in 7.2. */
const NA_FOR_QEMU = new Set(["mem.x"]);

interface SideServers {
  name: SideName;
  byCpus: Map<number, Measured>;
  side: Side;
}

const all: Measured[] = [];

/** Lets `server` run and freezes every other one, so only the measured guest takes CPU. */
async function focus(server: Measured): Promise<void> {
  for (const other of all) if (other !== server) await other.freeze();
  await server.thaw();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** QEMU starts paused (-S): one session that continues it and detaches leaves it running. */
async function startQemuGuest(port: number): Promise<void> {
  const client = await RspClient.connect(port);
  try {
    await client.handshake();
    await client.stopReason();
    await client.send("c");
    await sleep(300);
    await client.interrupt();
    await client.receive();
    await client.request("D");
  } finally {
    client.close();
  }
  await sleep(150);
}

async function startQemus(accel: "kvm" | "tcg" | undefined): Promise<Map<number, QemuServer>> {
  const started = new Map<number, QemuServer>();
  try {
    for (const n of config.cpuCounts) {
      const server = await QemuServer.start(n, config.memMiB, accel ?? started.get(1)?.accel);
      started.set(n, server);
      await startQemuGuest(server.port);
      if (!server.alive) throw new Error(`QEMU (-accel ${server.accel}) died running its guest`);
    }
    return started;
  } catch (error) {
    for (const server of started.values()) await server.stop();
    throw error;
  }
}

async function main(): Promise<number> {
  const results: Results = {
    machine: await machine(),
    mode: quick ? "quick" : "full",
    repetitions: config.reps,
    memoryBytes: config.size,
    qemuAccel: "",
    startedAt: new Date().toISOString(),
    loadAverage: Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" "),
    samples: {},
    errors: {},
  };
  const record = (id: string, side: SideName, value: number | number[]) => {
    const bySide = (results.samples[id] ??= {});
    (bySide[side] ??= []).push(...(Array.isArray(value) ? value : [value]));
  };
  let crashed = false;
  const attempt = async (id: string, side: SideName, f: () => Promise<void>) => {
    try {
      await f();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      (results.errors[id] ??= {})[side] = message;
      console.error(`bench: ${id} (${side}) failed: ${message.split("\n")[0]}`);
      if (side === "ours") crashed = true;
    }
  };

  console.error("bench: starting the test VMs and bhyve-gdbstub …");
  const ours = new Map<number, OursServer>();
  let qemus = new Map<number, QemuServer>();
  try {
    for (const n of config.cpuCounts) {
      const server = await OursServer.start(n, `${config.memMiB}M`);
      ours.set(n, server);
      all.push(server);
      await server.freeze();
    }
    console.error("bench: starting QEMU …");
    const wanted = flags.accel as "kvm" | "tcg" | undefined;
    try {
      qemus = await startQemus(wanted);
      results.qemuAccel = qemus.get(1)!.accel;
    } catch (error) {
      if (wanted !== undefined) throw error;
      console.error(
        `bench: QEMU with KVM failed (${(error as Error).message.split("\n")[0]}); TCG`,
      );
      qemus = await startQemus("tcg");
      results.qemuAccel = "tcg (KVM refused: " + (error as Error).message.split("\n")[0] + ")";
    }
    for (const server of qemus.values()) {
      all.push(server);
      await server.freeze();
    }

    const sides: SideServers[] = [
      {
        name: "ours",
        byCpus: ours,
        side: {
          name: "ours",
          port: ours.get(8)!.port,
          portsByCpus: new Map([...ours].map(([n, s]) => [n, s.port])),
          memStart: 0xffff_f800_0000_0000n, // the demo guest's direct map of RAM
          hasX: true,
        },
      },
      {
        name: "qemu",
        byCpus: qemus,
        side: {
          name: "qemu",
          port: qemus.get(8)!.port,
          portsByCpus: new Map([...qemus].map(([n, s]) => [n, s.port])),
          memStart: 0n, // paging off: virtual = physical, low RAM
          hasX: false,
        },
      },
    ];

    for (let rep = 0; rep < config.reps; rep++) {
      const order = rep % 2 === 0 ? sides : [...sides].reverse();
      for (const { name, byCpus, side } of order) {
        console.error(`bench: repetition ${rep + 1}/${config.reps}, ${name}`);
        for (const n of config.cpuCounts) {
          await focus(byCpus.get(n)!);
          await attempt(`attach.raw.${n}`, name, async () => {
            record(`attach.raw.${n}`, name, await rawAttach(side.portsByCpus.get(n)!));
          });
          if (n !== 8) {
            await attempt(`attach.gdb.${n}`, name, async () => {
              record(`attach.gdb.${n}`, name, await gdbAttach(side.portsByCpus.get(n)!));
            });
          }
        }
        const main = byCpus.get(8)!;
        await focus(main);
        await attempt("mem.gdb", name, async () => {
          const figures = await gdbSession(side, config.size);
          record("attach.gdb.8", name, figures.attachMs);
          record("threads.gdb", name, figures.infoThreadsMs);
          record("regs.gdb", name, figures.infoRegistersAllMs);
          record("mem.gdb", name, figures.dumpMiBps);
        });
        await attempt("mem.m", name, async () => {
          record("mem.m", name, await rawMemory(side, "m", config.size));
        });
        if (side.hasX) {
          await attempt("mem.x", name, async () => {
            record("mem.x", name, await rawMemory(side, "x", config.size));
          });
        }
        await attempt("g.cached", name, async () => {
          record("g.cached", name, await rawRegistersCached(side, config.gCount));
        });
        await attempt("g.first", name, async () => {
          record("g.first", name, await rawRegistersFirst(side));
        });
        await attempt("threads.raw", name, async () => {
          record("threads.raw", name, await rawThreads(side, config.threadsRepeat));
        });
        await attempt("intr.raw", name, async () => {
          record("intr.raw", name, await rawInterrupt(side, config.runMs));
        });
        await attempt("intr.gdb", name, async () => {
          record("intr.gdb", name, await gdbInterrupt(side, config.runMs));
        });
        await attempt("cpu.stopped", name, async () => {
          const cpu = await idleAttachedCpu(side, main.serverPid, config.idleSeconds, cpuSeconds);
          record("cpu.stopped", name, cpu.stopped * 100);
          record("cpu.running", name, cpu.running * 100);
        });
        for (const [n, server] of ours) {
          if (!server.alive) {
            crashed = true;
            console.error(`bench: bhyve-gdbstub (${n} vCPUs) died:\n${server.log.text}`);
          }
        }
      }
    }
    for (const { name, byCpus } of sides) {
      record("rss.peak", name, memory(byCpus.get(8)!.serverPid).peakMiB);
    }

    console.error("bench: cost floor …");
    const main8 = ours.get(8)!;
    await focus(main8);
    await attempt("floor", "ours", async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${ROOT}scripts/bench/floor.ts`,
          "--vm",
          main8.vm.name,
          "--size",
          String(config.size),
          "--repeat",
          quick ? "5" : "20",
        ],
        env: { TESTVM_DIR: main8.vm.dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
      results.floor = JSON.parse(new TextDecoder().decode(out.stdout)) as Floor;
    });
  } finally {
    for (const server of [...ours.values(), ...qemus.values()]) await server.stop();
  }

  const table = markdown(results, FIGURES, NA_FOR_QEMU);
  console.log(table);
  const out = flags.out!;
  await Deno.mkdir(out, { recursive: true });
  await Deno.writeTextFile(`${out}/latest.md`, table);
  await Deno.writeTextFile(`${out}/latest.json`, JSON.stringify(results, null, 2) + "\n");
  console.error(`bench: wrote ${out}/latest.md and ${out}/latest.json`);
  return crashed ? 1 : 0;
}

Deno.exit(await main());
