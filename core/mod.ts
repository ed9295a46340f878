/**
 * core/: ELF core files of a whole machine, in the layout QEMU's `dump-guest-memory` writes,
 * from a {@link CoreSource} (vmm/ provides one for a bhyve VM). Knows ELF, not bhyve.
 *
 * @example
 * const result = await saveCore(source, "/var/crash/web.core", { signal });
 * console.log(`${result.size} bytes, ${result.data} of them not zero`);
 *
 * @module
 */
export type { CoreSource, CpuState, RamRange, SegmentState, VirtualMapping } from "./source.ts";
export {
  CoreExistsError,
  CoreFile,
  CoreFileError,
  discardUnfinished,
  saveCore,
  type SaveOptions,
  type SaveResult,
} from "./file.ts";
export { planCore } from "./layout.ts";
