/**
 * Turns the benchmark's samples into the markdown table (and the JSON beside it).
 *
 * @module
 */
import { type Machine, machineLine } from "./machine.ts";

export type SideName = "ours" | "qemu";

/** One figure's definition: how it is shown and which way is better. */
export interface FigureDef {
  id: string;
  label: string;
  via: "gdb" | "raw" | "/proc";
  unit: string;
  /** "higher" for throughputs, "lower" for times and costs. */
  better: "higher" | "lower";
  goal?: string;
}

export interface Results {
  machine: Machine;
  mode: "quick" | "full";
  repetitions: number;
  memoryBytes: number;
  qemuAccel: string;
  startedAt: string;
  loadAverage: string;
  samples: Record<string, Partial<Record<SideName, number[]>>>;
  errors: Record<string, Partial<Record<SideName, string>>>;
  floor?: Floor;
  medians?: Record<string, Partial<Record<SideName, number>>>;
}

/** What scripts/bench/floor.ts prints. */
export interface Floor {
  vcpus: number;
  size: number;
  g: { calls: Record<string, number>; floorUs: number; vmmReadAllUs: number };
  attach: {
    calls: Record<string, number>;
    resumeCalls: Record<string, number>;
    floorUs: number;
  };
  threads: { floorUs: number };
  memory: {
    gla2gpaPerPageUs: number;
    translate4kMs: number;
    translate2mMs: number;
    copyMs: number;
    copyIn4kChunksMs: number;
  };
}

export function median(values: number[] | undefined): number | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (abs >= 1000) return value.toFixed(0);
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 10) return value.toFixed(2);
  return value.toFixed(3);
}

function ratio(ours: number | undefined, qemu: number | undefined): string {
  if (ours === undefined || qemu === undefined || qemu === 0) return "—";
  return `${(ours / qemu).toFixed(2)}×`;
}

function cell(results: Results, id: string, side: SideName, na: boolean): string {
  if (na) return "n/a";
  const error = results.errors[id]?.[side];
  if (error !== undefined) return `error: ${error.split("\n")[0]!.slice(0, 60)}`;
  const values = results.samples[id]?.[side];
  const m = median(values);
  if (m === undefined) return "—";
  const spread = values !== undefined && values.length > 1
    ? ` (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`
    : "";
  return fmt(m) + spread;
}

/** The markdown report: machine line, figures table, cost-floor table. */
export function markdown(results: Results, figures: FigureDef[], naForQemu: Set<string>): string {
  const lines: string[] = [];
  lines.push(`# bhyve-gdbstub vs QEMU gdbstub (${results.mode})`);
  lines.push("");
  lines.push(`Machine: ${machineLine(results.machine)}`);
  lines.push(
    `Run: ${results.startedAt}, ${results.repetitions} repetition(s) alternating A/B, ` +
      `${results.memoryBytes / (1 << 20)} MiB memory reads, load average at start ` +
      `${results.loadAverage}. QEMU: -accel ${results.qemuAccel}, booting nothing (-S), reads ` +
      "of low RAM with paging off; ours: the demo guest's direct map.",
  );
  lines.push("");
  lines.push(
    "Medians (min–max over repetitions); ratio = ours / QEMU (throughputs: higher is better; " +
      "times: lower is better).",
  );
  lines.push("");
  lines.push("| figure | via | unit | ours | QEMU | ours/QEMU | goal |");
  lines.push("| --- | --- | --- | --: | --: | --: | --- |");
  results.medians = {};
  for (const f of figures) {
    const na = naForQemu.has(f.id);
    const ours = median(results.samples[f.id]?.ours);
    const qemu = na ? undefined : median(results.samples[f.id]?.qemu);
    results.medians[f.id] = { ours, qemu } as Partial<Record<SideName, number>>;
    lines.push(
      `| ${f.label} | ${f.via} | ${f.unit} | ${cell(results, f.id, "ours", false)} | ` +
        `${cell(results, f.id, "qemu", na)} | ${na ? "n/a" : ratio(ours, qemu)} | ${
          f.goal ?? ""
        } |`,
    );
  }
  const floor = results.floor;
  if (floor !== undefined) {
    lines.push("");
    lines.push(
      "Cost floor (ours only): the libvmmapi calls alone, called from a script through ffi/, " +
        "against the same test VM.",
    );
    lines.push("");
    lines.push("| operation | libvmmapi calls | floor | server (raw client) | server/floor |");
    lines.push("| --- | --- | --: | --: | --: |");
    const calls = (c: Record<string, number>) =>
      Object.entries(c).map(([k, v]) => `${k}×${v}`).join(", ");
    const gFirst = median(results.samples["g.first"]?.ours);
    const gRate = median(results.samples["g.cached"]?.ours);
    const gCachedUs = gRate === undefined ? undefined : 1e6 / gRate;
    lines.push(
      `| \`g\`, first read | ${calls(floor.g.calls)} | ${fmt(floor.g.floorUs)} µs | ` +
        `${fmt(gFirst)} µs | ${ratio(gFirst, floor.g.floorUs)} |`,
    );
    lines.push(
      `| \`g\`, cached while stopped | none (uncached floor shown) | ${
        fmt(floor.g.floorUs)
      } µs | ` +
        `${fmt(gCachedUs)} µs | ${ratio(gCachedUs, floor.g.floorUs)} |`,
    );
    const mem = floor.memory;
    const mib = floor.size / (1 << 20);
    const xRate = median(results.samples["mem.x"]?.ours);
    const xMs = xRate === undefined ? undefined : (mib / xRate) * 1000;
    const floor4k = mem.translate4kMs + mem.copyMs;
    const floor2m = mem.translate2mMs + mem.copyMs;
    lines.push(
      `| ${mib} MiB read, 4 KiB translation | vm_gla2gpa_nofault×${floor.size / 4096} ` +
        `(${fmt(mem.gla2gpaPerPageUs)} µs each) + one copy (${fmt(mem.copyMs)} ms) | ` +
        `${fmt(floor4k)} ms | ${fmt(xMs)} ms (\`x\`) | ${ratio(xMs, floor4k)} |`,
    );
    lines.push(
      `| ${mib} MiB read, 2 MiB translation | vm_gla2gpa_nofault×${
        Math.ceil(floor.size / (2 << 20))
      } + one copy | ${fmt(floor2m)} ms | ${fmt(xMs)} ms (\`x\`) | ${ratio(xMs, floor2m)} |`,
    );
    const attach = median(results.samples["attach.raw.8"]?.ours);
    lines.push(
      `| attach, ${floor.vcpus} vCPUs running | ${calls(floor.attach.calls)} | ` +
        `${fmt(floor.attach.floorUs / 1000)} ms | ` +
        `${fmt(attach)} ms (attach only) | ${ratio(attach, floor.attach.floorUs / 1000)} |`,
    );
    const threads = median(results.samples["threads.raw"]?.ours);
    lines.push(
      `| thread listing, ${floor.vcpus} vCPUs | activeCpus×1, getRegisterSet×${floor.vcpus} ` +
        `(paging state, uncached) | ${fmt(floor.threads.floorUs / 1000)} ms | ${fmt(threads)} ms ` +
        `(cached while stopped) | ${ratio(threads, floor.threads.floorUs / 1000)} |`,
    );
  }
  const errors = Object.entries(results.errors);
  if (errors.length > 0) {
    lines.push("");
    lines.push("Errors:");
    for (const [id, bySide] of errors) {
      for (const [side, message] of Object.entries(bySide)) {
        lines.push(`- ${id} (${side}): ${message.split("\n").slice(0, 3).join(" / ")}`);
      }
    }
  }
  return lines.join("\n") + "\n";
}
