/**
 * Finding libvmmapi and choosing the symbol table for its API generation.
 *
 * The generation is detected, never configured: the 0200 API (FreeBSD 14.x and later)
 * exports vm_vcpu_open, the 0103 API (13.x) does not.
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import type { ApiGeneration } from "../vmm/vmmapi.ts";
import { libc } from "./libc.ts";
import { SYMBOLS_0103 } from "./symbols_0103.ts";
import { SYMBOLS_0200 } from "./symbols_0200.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** Where libvmmapi is looked for when no path is given: 14.x and later first, then 13.x. */
export const DEFAULT_LIBRARIES = ["libvmmapi.so.6", "libvmmapi.so.5"] as const;

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
}

/**
 * Loads libvmmapi from `options.path`, else from {@link DEFAULT_LIBRARIES} in order.
 *
 * @example
 * const lib = loadLibrary({ path: "/usr/lib/libvmmapi.so.6" });
 * console.log(lib.generation); // "0200"
 */
export function loadLibrary(options: LoadOptions = {}): LoadedLibrary {
  // Load libc first: loading it lazily on the first failure could clobber that errno.
  libc();
  const candidates = options.path !== undefined ? [options.path] : [...DEFAULT_LIBRARIES];
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
      failures.push(`  ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new VmmapiLoadError(
    `Cannot load libvmmapi. Tried:\n${failures.join("\n")}\n` +
      "Point at the library with --vmmapi PATH or BHYVE_GDBSTUB_VMMAPI=PATH " +
      "(on FreeBSD it is /usr/lib/libvmmapi.so.6 on 14.x and later, " +
      "/usr/lib/libvmmapi.so.5 on 13.x).",
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
