/**
 * `monitor dump [-p] NAME`: a debugger saves the VM it holds as a core file.
 *
 * The server runs as root, so a debugger must not choose where on the host it writes: only
 * into the directory the operator named with `--dump-dir`, under a plain file name, never
 * over an existing file and never through a link (core/file.ts creates exclusively and names
 * the result with link(2)). The debugger already holds the guest: nothing is held or released
 * here.
 *
 * @module
 */
import { join } from "node:path";
import { CoreFileError } from "../core/mod.ts";
import { TargetGoneError } from "../rsp/target.ts";
import { describeDump, dumpVm } from "./dump.ts";
import type { VmTarget } from "./target.ts";

export const DUMP_USAGE = "usage: monitor dump [-p] NAME  (NAME: a plain file name in the " +
  "server's --dump-dir; -p: PT_LOADs by virtual address, for gdb)\n";

/**
 * A line about every second while the dump runs: the user sees it move, and each `O` packet
 * restarts gdb's wait for the reply (its remote timeout is 2 s by default).
 */
function progressLines(
  print: ((text: string) => Promise<void>) | undefined,
): (done: bigint, total: bigint) => void {
  if (print === undefined) return () => {};
  let last = performance.now();
  return (done, total) => {
    if (performance.now() - last < 1000 || done === total) return;
    last = performance.now();
    const mb = (n: bigint) => (Number(n) / 1e6).toFixed(0);
    void print(`dumping: ${mb(done)} of ${mb(total)} MB\n`).catch(() => {});
  };
}

/** Why `name` is not a plain file name, or undefined if it is one. */
export function badDumpName(name: string): string | undefined {
  if (name === "." || name === ".." || name.includes("..")) return "it may not contain '..'";
  if (name.includes("/")) return "it may not contain '/'";
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}$/.test(name)) {
    return "use letters, digits and . _ + - only, starting with a letter or digit";
  }
  return undefined;
}

/** Runs `monitor dump ARGS`; returns the console text. */
export async function monitorDump(
  target: VmTarget,
  dumpDir: string | undefined,
  args: string[],
  print?: (text: string) => Promise<void>,
): Promise<string> {
  if (dumpDir === undefined) {
    return "monitor dump is refused: the server was started without --dump-dir DIR, and " +
      "without it a debugger may not write files on the host.\n";
  }
  const paging = args[0] === "-p";
  const names = paging ? args.slice(1) : args;
  if (names.length !== 1) return DUMP_USAGE;
  const name = names[0]!;
  const bad = badDumpName(name);
  if (bad !== undefined) {
    return `monitor dump refused: '${name}' is not a plain file name: ${bad}\n`;
  }
  try {
    const report = await dumpVm(target, join(dumpDir, name), {
      paging,
      overwrite: false,
      onProgress: progressLines(print),
    });
    return `${describeDump(report)}\n`;
  } catch (error) {
    if (error instanceof CoreFileError) return `monitor dump refused: ${error.message}\n`;
    if (error instanceof TargetGoneError) throw error;
    return `monitor dump failed: ${(error as Error).message}\n`;
  }
}
