/**
 * Differential run: the emulator against a reference CPU (QEMU single-stepping the same guest),
 * compared after every instruction: the general registers, RIP and RFLAGS, and every byte the
 * emulator wrote (read back from the reference's RAM); at the end all of RAM, so a write the
 * emulator missed shows too. A refusal resynchronises from the reference (after it executed the
 * refused instruction); so does a divergence, which is recorded.
 *
 * @module
 */
import type { CpuState, Emulator, RamImage, Scalar } from "../../emu/emulator.ts";
import type { EmulatorLibrary } from "../../ffi/emulator.ts";
import { EMULATED_SCALARS as SCALARS } from "../../vmm/registers.ts";
import type { QemuReference } from "./qemu_reference.ts";

/** The general registers, RIP and RFLAGS: the head of the register table's emulated scalars. */
const COMPARED: readonly Scalar[] = SCALARS.slice(0, SCALARS.indexOf("eflags") + 1);

/** What a differential run found. */
export interface DifferentialReport {
  /** Instructions compared (executed by both). */
  compared: number;
  /** The longest run of consecutive compared instructions without a refusal or divergence. */
  longestStretch: number;
  divergences: string[];
  /** Refusals, each once with how often. */
  refusals: Map<string, number>;
  /** Steps QEMU reported without executing anything, taken again. */
  referenceRetries: number;
  /** The block-mode run: instructions executed and why it stopped. */
  blockRun?: { executed: number; stop: string };
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Steps `reference` and the emulator side by side for `steps` instructions. */
export async function differential(
  lib: EmulatorLibrary,
  reference: QemuReference,
  ramRanges: { gpa: bigint; length: bigint }[],
  steps: number,
  blockRun = 0,
): Promise<DifferentialReport> {
  const report: DifferentialReport = {
    compared: 0,
    longestStretch: 0,
    divergences: [],
    refusals: new Map(),
    referenceRetries: 0,
  };
  let image: RamImage | undefined;
  let emu: Emulator | undefined;
  let state: CpuState | undefined;
  let snapshot: string | undefined;
  const resync = async () => {
    emu?.close();
    image?.close();
    if (snapshot !== undefined) Deno.removeSync(snapshot);
    snapshot = reference.snapshot();
    image = lib.ramFromFile(snapshot, ramRanges, ramRanges.map((r) => r.gpa));
    emu = lib.open(image);
    state = await reference.state();
  };
  // QEMU's gdbstub now and then reports a step without executing anything (nothing at all
  // changed, not even RIP): such a step is taken again.
  let last = await reference.generalRegisters();
  const step = async () => {
    let now = await reference.step();
    if (now.every((v, i) => v === last[i])) {
      report.referenceRetries++;
      now = await reference.step();
    }
    last = now;
    return now;
  };
  const resyncAll = async () => {
    await resync();
    last = await reference.generalRegisters();
  };
  await resync();
  let stretch = 0;
  try {
    for (let i = 0; i < steps; i++) {
      const run = await emu!.run({ state: state!, count: 1 });
      const expected = await step();
      if (run.stop.kind !== "count") {
        const message = run.stop.kind === "refused" ? run.stop.message : run.stop.kind;
        const key = message.replace(/^the instruction at 0x[0-9a-f]+ /, "");
        report.refusals.set(key, (report.refusals.get(key) ?? 0) + 1);
        stretch = 0;
        await resyncAll();
        continue;
      }
      const problems: string[] = [];
      COMPARED.forEach((name, n) => {
        const got = run.state.scalars[name];
        const want = name === "eflags" ? expected[n]! & 0xffff_ffffn : expected[n]!;
        if (got !== want) problems.push(`${name} ${hex(got)} != ${hex(want)}`);
      });
      for (const write of run.writes) {
        const real = reference.readRam(write.gpa, write.bytes.length);
        if (!real.every((b, k) => b === write.bytes[k])) {
          problems.push(`bytes at ${hex(write.gpa)} differ`);
        }
      }
      if (problems.length > 0) {
        report.divergences.push(`after ${hex(state!.scalars.rip)}: ${problems.join(", ")}`);
        stretch = 0;
        await resyncAll();
        continue;
      }
      report.compared++;
      stretch++;
      report.longestStretch = Math.max(report.longestStretch, stretch);
      state = run.state;
    }
    // Long runs go in block mode (blocks checked once, then run without per-instruction
    // hooks): one run of `blockRun` instructions, then QEMU steps as many, then the same
    // comparison, the whole of RAM included below.
    if (blockRun > 0) {
      await resyncAll();
      const run = await emu!.run({ state: state!, count: blockRun });
      let expected: bigint[] = [];
      for (let i = 0; i < run.executed; i++) expected = await step();
      report.blockRun = { executed: run.executed, stop: run.stop.kind };
      if (run.executed > 0) {
        const problems = COMPARED.filter((name, n) =>
          run.state.scalars[name] !==
            (name === "eflags" ? expected[n]! & 0xffff_ffffn : expected[n]!)
        );
        if (problems.length > 0) {
          report.divergences.push(`block-mode run of ${run.executed}: ${problems.join(", ")}`);
        }
      }
    }
    // Writes the emulator missed (or made in the wrong place) show in a whole-RAM comparison.
    for (const range of ramRanges) {
      const chunk = 1 << 20;
      for (let at = 0n; at < range.length; at += BigInt(chunk)) {
        const length = Number(
          range.length - at < BigInt(chunk) ? range.length - at : BigInt(chunk),
        );
        const gpa = range.gpa + at;
        const mine = (image as unknown as { read(g: bigint, l: number): Uint8Array }).read(
          gpa,
          length,
        );
        const real = reference.readRam(gpa, length);
        const k = mine.findIndex((b, j) => b !== real[j]);
        if (k >= 0) report.divergences.push(`RAM differs at ${hex(gpa + BigInt(k))}`);
      }
    }
  } finally {
    emu?.close();
    image?.close();
    if (snapshot !== undefined) Deno.removeSync(snapshot);
  }
  return report;
}
