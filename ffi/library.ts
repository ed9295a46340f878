/**
 * Finding libvmmapi and choosing the symbol table for its API generation.
 *
 * The generation is detected, never configured: the 0200 API (FreeBSD 14.x and later)
 * exports vm_vcpu_open, the 0103 API (13.x) does not.
 *
 * @module
 */
import { triedLine } from "./dlopen_error.ts";
import { getLogger } from "../log/mod.ts";
import type { ApiGeneration } from "../vmm/vmmapi.ts";
import { libc } from "./libc.ts";
import { SYMBOLS_0103 } from "./symbols_0103.ts";
import { SYMBOLS_0200 } from "./symbols_0200.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/**
 * Where libvmmapi is looked for when no path is given, newest soname first: main's
 * lib/libvmmapi/Makefile ships SHLIB_MAJOR 6 (14.x, 15.x), at least one tree tracking main has
 * 7, and 13.x has 5 (docs/bhyve-facts.md). Then any other libvmmapi.so.* in {@link LIBRARY_DIR}.
 */
export const DEFAULT_LIBRARIES = ["libvmmapi.so.7", "libvmmapi.so.6", "libvmmapi.so.5"] as const;

/** Where FreeBSD installs libvmmapi: searched for sonames not in {@link DEFAULT_LIBRARIES}. */
export const LIBRARY_DIR = "/usr/lib";

/** Other libvmmapi.so.N in `dir`, highest N first (a soname this code has not met yet). */
export function otherSonames(dir = LIBRARY_DIR): string[] {
  const known = new Set<string>(DEFAULT_LIBRARIES);
  const found: { path: string; major: number }[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      const match = /^libvmmapi\.so\.(\d+)$/.exec(entry.name);
      if (match && !known.has(entry.name)) {
        found.push({ path: `${dir}/${entry.name}`, major: Number(match[1]) });
      }
    }
  } catch {
    // No such directory (or no read permission): nothing more to try.
  }
  return found.sort((a, b) => b.major - a.major).map((f) => f.path);
}

export type Symbols0200 = Deno.DynamicLibrary<typeof SYMBOLS_0200>["symbols"];
export type Symbols0103 = Deno.DynamicLibrary<typeof SYMBOLS_0103>["symbols"];

/** A loaded libvmmapi with the symbol table of its generation. */
export type LoadedLibrary =
  & { path: string; close(): void }
  & (
    | { generation: "0200"; symbols: Symbols0200 }
    | { generation: "0103"; symbols: Symbols0103 }
  );

/** libvmmapi could not be loaded from any of the paths tried. */
export class VmmapiLoadError extends Error {
  override name = "VmmapiLoadError";
  /** Every path tried, in order. */
  readonly tried: readonly string[];
  constructor(message: string, tried: readonly string[], options?: ErrorOptions) {
    super(message, options);
    this.tried = tried;
  }
}

/** Options for {@link loadLibrary}. */
export interface LoadOptions {
  /** An explicit library path (--vmmapi or BHYVE_GDBSTUB_VMMAPI); only it is tried. */
  path?: string;
  /** Where to look for other sonames after the defaults (default {@link LIBRARY_DIR}). */
  libraryDir?: string;
}

/**
 * Loads libvmmapi from `options.path`, else from {@link DEFAULT_LIBRARIES} in order, then any
 * other libvmmapi.so.* in {@link LIBRARY_DIR}.
 *
 * @example
 * const lib = loadLibrary({ path: "/usr/lib/libvmmapi.so.6" });
 * console.log(lib.generation); // "0200"
 */
export function loadLibrary(options: LoadOptions = {}): LoadedLibrary {
  // Load libc first: loading it lazily on the first failure could clobber that errno.
  libc();
  const candidates = options.path !== undefined
    ? [options.path]
    : [...DEFAULT_LIBRARIES, ...otherSonames(options.libraryDir)];
  const failures: string[] = [];
  let lastError: unknown;
  for (const path of candidates) {
    try {
      const loaded = loadOne(path);
      log.debug("loaded {path}: libvmmapi API {generation}", {
        path,
        generation: loaded.generation,
      });
      return loaded;
    } catch (error) {
      lastError = error;
      failures.push(triedLine(path, error));
    }
  }
  throw new VmmapiLoadError(
    `Cannot load libvmmapi. Tried:\n${failures.join("\n")}\n` +
      "Point at the library with --vmmapi PATH or BHYVE_GDBSTUB_VMMAPI=PATH " +
      "(on FreeBSD it is /usr/lib/libvmmapi.so.6 on 14.x and 15.x, " +
      "/usr/lib/libvmmapi.so.5 on 13.x; bhyve-gdbstub must run on the VM's host).",
    candidates,
    { cause: lastError },
  );
}

function detectGeneration(path: string): ApiGeneration {
  const probe = Deno.dlopen(path, {
    vm_open: SYMBOLS_0200.vm_open,
    vm_vcpu_open: { ...SYMBOLS_0200.vm_vcpu_open, optional: true },
  });
  try {
    return probe.symbols.vm_vcpu_open === null ? "0103" : "0200";
  } finally {
    probe.close();
  }
}

function loadOne(path: string): LoadedLibrary {
  const generation = detectGeneration(path);
  if (generation === "0200") {
    const lib = Deno.dlopen(path, SYMBOLS_0200);
    return { path, generation, symbols: lib.symbols, close: () => lib.close() };
  }
  const lib = Deno.dlopen(path, SYMBOLS_0103);
  return { path, generation, symbols: lib.symbols, close: () => lib.close() };
}
