/**
 * Loading libunicorn (the CPU emulator behind emulated stepping) and checking its version.
 *
 * Unicorn before 2.1 is refused: Debian bookworm's 2.0.1 ignores CR0.PG (every fetch at a
 * kernel virtual address faults as unmapped), while 2.1 walks the guest's page tables.
 *
 * @module
 */
import { triedLine } from "./dlopen_error.ts";
import { UNICORN_SYMBOLS, type UnicornSymbols } from "./unicorn_symbols.ts";

/** Where libunicorn is looked for when no path is given. */
export const DEFAULT_UNICORN_LIBRARIES = ["libunicorn.so.2", "libunicorn.so"] as const;

/** The oldest Unicorn whose x86 MMU honours the guest's paging. */
export const MIN_UNICORN = { major: 2, minor: 1 } as const;

/** How to get a suitable libunicorn, for error messages. */
export const UNICORN_HOWTO = "Emulated execution needs libunicorn 2.1 or later. " +
  "FreeBSD: pkg install unicorn. Linux: pip install unicorn (2.1 or later), whose wheel ships " +
  "the library as <site-packages>/unicorn/lib/libunicorn.so.2. Point at it with " +
  "--unicorn PATH or BHYVE_GDBSTUB_UNICORN=PATH.";

/** libunicorn could not be loaded, or is too old. */
export class UnicornLoadError extends Error {
  override name = "UnicornLoadError";
}

/** A loaded libunicorn of a suitable version. */
export interface LoadedUnicorn {
  readonly path: string;
  readonly version: string;
  readonly symbols: UnicornSymbols;
  close(): void;
}

/**
 * Loads libunicorn from `path`, else from {@link DEFAULT_UNICORN_LIBRARIES}; throws
 * {@link UnicornLoadError} saying what was tried and how to get the library.
 */
export function loadUnicorn(path?: string): LoadedUnicorn {
  const candidates = path !== undefined ? [path] : [...DEFAULT_UNICORN_LIBRARIES];
  const failures: string[] = [];
  for (const candidate of candidates) {
    let lib: Deno.DynamicLibrary<typeof UNICORN_SYMBOLS>;
    try {
      lib = Deno.dlopen(candidate, UNICORN_SYMBOLS);
    } catch (error) {
      failures.push(triedLine(candidate, error));
      continue;
    }
    const major = new Uint32Array(1);
    const minor = new Uint32Array(1);
    lib.symbols.uc_version(major, minor);
    const version = `${major[0]}.${minor[0]}`;
    if (major[0]! < MIN_UNICORN.major || (major[0] === MIN_UNICORN.major && minor[0]! < 1)) {
      lib.close();
      throw new UnicornLoadError(
        `${candidate} is Unicorn ${version}, too old: before 2.1 Unicorn ignores the guest's ` +
          `paging (CR0.PG), so every kernel address would fault. ${UNICORN_HOWTO}`,
      );
    }
    return { path: candidate, version, symbols: lib.symbols, close: () => lib.close() };
  }
  throw new UnicornLoadError(
    `Cannot load libunicorn. Tried:\n${failures.join("\n")}\n` +
      UNICORN_HOWTO,
  );
}
