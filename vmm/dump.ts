/**
 * Saving a running VM as a core file: hold it (unless live, or a debugger already holds it),
 * read every vCPU, copy RAM through core/, release exactly what was held here, and time it.
 *
 * @module
 */
import { CoreFile, CoreFileError, type SaveOptions, type SaveResult } from "../core/mod.ts";
import { TargetGoneError } from "../rsp/target.ts";
import { vmCoreSource } from "./core_source.ts";
import type { VmTarget } from "./target.ts";
import { isGone } from "./vmmapi.ts";

/** Options for {@link dumpVm}. */
export interface DumpOptions extends SaveOptions {
  /** PT_LOADs by virtual address from the boot vCPU's page tables. */
  paging?: boolean;
  /** Copy without holding the guest (the image may be torn). */
  live?: boolean;
}

/** What a dump did. */
export interface DumpReport extends SaveResult {
  /** Wall time of the whole dump (s). */
  seconds: number;
  /** How long the guest was held for it (s); undefined when live. */
  heldSeconds?: number;
  /** A debugger held the guest before and still does. */
  heldByDebugger: boolean;
  vcpus: number;
}

/** Dumps the VM behind `target` into `path`. Throws CoreFileError or TargetGoneError. */
export async function dumpVm(
  target: VmTarget,
  path: string,
  options: DumpOptions = {},
): Promise<DumpReport> {
  const start = performance.now();
  // The name is checked and the file created first: a refusal never holds the guest.
  const file = await CoreFile.create(path, options);
  const heldByDebugger = target.control.held;
  const hold = !options.live && !heldByDebugger;
  let heldAt: number | undefined;
  let releasedAt: number | undefined;
  try {
    if (hold) {
      const event = await target.stop();
      if (event.kind === "exited") throw new TargetGoneError(event.message);
      heldAt = performance.now();
    }
    const source = vmCoreSource(target.vm, target.memory, options.paging ? { paging: true } : {});
    const result = await file.write(source, options);
    if (hold) {
      await target.resume();
      releasedAt = performance.now();
    }
    file.publish();
    const report: DumpReport = {
      ...result,
      seconds: (performance.now() - start) / 1000,
      heldByDebugger,
      vcpus: source.cpus.length,
    };
    if (heldAt !== undefined && releasedAt !== undefined) {
      report.heldSeconds = (releasedAt - heldAt) / 1000;
    } else if (heldByDebugger) {
      report.heldSeconds = report.seconds;
    }
    return report;
  } catch (error) {
    if (isGone(error)) {
      throw new TargetGoneError(`VM ${target.vm.name} vanished during the dump`, { cause: error });
    }
    throw error;
  } finally {
    file.discard();
    // On any failure: the guest runs again, as it was before.
    if (hold && releasedAt === undefined) await target.resume().catch(() => {});
  }
}

/** The closing line: bytes, time, throughput, time held. */
export function describeDump(report: DumpReport, options: { live?: boolean } = {}): string {
  const mb = Number(report.ram) / 1e6;
  const rate = report.seconds > 0 ? mb / report.seconds : 0;
  const held = options.live
    ? "guest not held (--live): the image may be torn"
    : report.heldByDebugger
    ? "guest held by the attached debugger throughout"
    : `guest held ${report.heldSeconds?.toFixed(3)} s (the copy itself ${
      report.copySeconds.toFixed(3)
    } s)`;
  return `wrote ${report.path}: ${report.size} bytes (${report.vcpus} vCPU(s), ` +
    `${report.ram} bytes of RAM, ${report.data} not zero) in ${report.seconds.toFixed(3)} s, ` +
    `${rate.toFixed(1)} MB/s; ${held}`;
}

export { CoreFileError };
