/**
 * ffi/'s side of the emulator room: libunicorn loaded once, emulators over private RAM images.
 *
 * @module
 */
import type { Emulator, RamImage, RamRange } from "../emu/emulator.ts";
import { PrivateRam } from "./ram_image.ts";
import { type LoadedUnicorn, loadUnicorn } from "./unicorn.ts";
import { openUnicornEmulator } from "./unicorn_engine.ts";

export { UNICORN_HOWTO, UnicornLoadError } from "./unicorn.ts";

/** A loaded emulator library. */
export interface EmulatorLibrary {
  readonly path: string;
  readonly version: string;
  /** An emulator over `ram`, which must come from this module (a private RAM image). */
  open(ram: RamImage): Emulator;
  /** Guest RAM from a file (range i at file offset offsets[i]), as a private image. */
  ramFromFile(path: string, ranges: readonly RamRange[], offsets: readonly bigint[]): RamImage;
  /** Guest RAM from a VM's device fd (offset = guest-physical address), as a private image. */
  ramFromFd(fd: number, ranges: readonly RamRange[]): RamImage;
  close(): void;
}

/**
 * Loads libunicorn (`path`, else the usual names); throws UnicornLoadError with how to get it.
 */
export function loadEmulator(path?: string): EmulatorLibrary {
  const lib: LoadedUnicorn = loadUnicorn(path);
  return {
    path: lib.path,
    version: lib.version,
    open(ram) {
      if (!(ram instanceof PrivateRam)) throw new Error("not a RAM image from ffi/");
      return openUnicornEmulator(lib, ram);
    },
    ramFromFile: (file, ranges, offsets) => PrivateRam.fromFile(file, ranges, offsets),
    ramFromFd: (fd, ranges) => PrivateRam.map(fd, ranges),
    close: () => lib.close(),
  };
}
