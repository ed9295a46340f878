/**
 * `bhyve-gdbstub dump`: saves a running VM as a core file and lets it run on.
 *
 * One clear line for every outcome on stderr; a progress bar there too, only on a terminal
 * and only once the dump has taken a second. Any terminating signal the server handles
 * (exits.ts: SIGINT, SIGTERM, SIGHUP, SIGUSR1…) stops the copy between chunks: the guest is
 * released and no file is left. A second signal, or a crash, releases the guest and removes the
 * unfinished file at once.
 *
 * @module
 */
import type { DumpCommandOptions } from "./cli.ts";
import { CoreFileError, discardUnfinished } from "./core/mod.ts";
import { guardExits } from "./exits.ts";
import { loadVmmapi, VmmapiLoadError } from "./ffi/mod.ts";
import { TargetGoneError } from "./rsp/target.ts";
import { describeDump, dumpVm } from "./vmm/dump.ts";
import { lockVm } from "./vmm/lock.ts";
import { openTarget, type Vmmapi, VmmError, type VmTarget } from "./vmm/mod.ts";

/** Runs the dump subcommand; returns the exit status. */
export async function runDump(options: DumpCommandOptions): Promise<number> {
  let api: Vmmapi;
  try {
    api = loadVmmapi({ path: options.vmmapi });
  } catch (error) {
    if (!(error instanceof VmmapiLoadError)) throw error;
    return fail(error.message);
  }
  const stop = new AbortController();
  let caught: string | undefined;
  let target: VmTarget | undefined;
  const exits = guardExits({
    signal: (name) => {
      caught = name;
      stop.abort();
    },
    lastResort: () => {
      const released = target?.releaseNow() ?? "nothing was held";
      return discardUnfinished(options.output) > 0
        ? `${released}; the unfinished core removed`
        : released;
    },
  });
  try {
    const lock = await lockVm(options.vm).catch((error: Error) => error);
    if (lock instanceof Error) return fail(lock.message);
    using _lock = lock;
    try {
      target = openTarget(api, options.vm);
    } catch (error) {
      if (error instanceof VmmError && error.code === "ENOENT") {
        return fail(`no VM named '${options.vm}' (/dev/vmm/${options.vm} does not exist)`);
      }
      if (error instanceof VmmError) {
        return fail(`cannot open VM '${options.vm}': ${error.message}`);
      }
      throw error;
    }
    try {
      return await dumpOpen(target, options, stop.signal, () => caught);
    } finally {
      await target.close().catch(() => {});
      target = undefined; // closed: nothing left for the last resort to release
    }
  } finally {
    exits.remove();
    api.close();
  }
}

async function dumpOpen(
  target: VmTarget,
  options: DumpCommandOptions,
  signal: AbortSignal,
  caught: () => string | undefined,
): Promise<number> {
  const progress = new ProgressBar();
  try {
    const report = await dumpVm(target, options.output, {
      paging: options.paging,
      live: options.live,
      overwrite: options.force,
      signal,
      onProgress: (done, total) => progress.show(done, total),
    });
    progress.clear();
    console.error(`bhyve-gdbstub: ${describeDump(report, { live: options.live })}`);
    return 0;
  } catch (error) {
    progress.clear();
    if (signal.aborted) {
      return fail(`dump interrupted by ${caught() ?? "a signal"}: guest released, no file written`);
    }
    if (error instanceof CoreFileError) {
      const hint = error.name === "CoreExistsError" ? " (use --force to replace it)" : "";
      return fail(`dump refused: ${error.message}${hint}`);
    }
    if (error instanceof TargetGoneError) {
      return fail(`dump failed: ${error.message}; no file written`);
    }
    if (error instanceof VmmError) return fail(`dump failed: ${error.message}; no file written`);
    throw error;
  }
}

/** A one-line bar on stderr, only on a terminal and only after the first second. */
class ProgressBar {
  #start = performance.now();
  #shown = false;
  #tty = Deno.stderr.isTerminal();

  show(done: bigint, total: bigint): void {
    if (!this.#tty || performance.now() - this.#start < 1000 || total === 0n) return;
    const fraction = Number(done) / Number(total);
    const width = 30;
    const filled = Math.round(fraction * width);
    const mb = Number(done) / 1e6;
    const line = `[${"#".repeat(filled)}${" ".repeat(width - filled)}] ` +
      `${(fraction * 100).toFixed(0).padStart(3)}% ${mb.toFixed(0)} MB`;
    Deno.stderr.writeSync(new TextEncoder().encode(`\r${line}`));
    this.#shown = true;
  }

  clear(): void {
    if (this.#shown) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
    this.#shown = false;
  }
}

function fail(message: string): number {
  console.error(`bhyve-gdbstub: ${message}`);
  return 1;
}
