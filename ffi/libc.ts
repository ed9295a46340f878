/**
 * The few libc functions the bindings need: errno, strerror, open, close, mmap and munmap.
 *
 * FreeBSD's libc (libc.so.7) names its errno accessor `__error`, glibc (libc.so.6)
 * `__errno_location`; whichever library loads decides which one is used.
 *
 * @module
 */

/** PROT_READ, PROT_WRITE and MAP_SHARED: the same numbers on FreeBSD and Linux. */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
/** O_RDONLY: 0 on FreeBSD and Linux. */
const O_RDONLY = 0;

const COMMON = {
  /** char *strerror(int errnum); */
  strerror: { parameters: ["i32"], result: "pointer" },
  /** void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset); */
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  /** int munmap(void *addr, size_t len); */
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  /** int open(const char *path, int flags, ...); (flags O_RDONLY: no mode argument) */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const FREEBSD = {
  ...COMMON,
  /** int *__error(void); */
  __error: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const GLIBC = {
  ...COMMON,
  /** int *__errno_location(void); */
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libc, whichever flavour this host has. */
export interface Libc {
  /** The current thread's errno. Read it right after the failing call. */
  errno(): number;
  strerror(errno: number): string;
  /** A shared mapping of `fd`, read-only unless `writable`. */
  mmap(length: bigint, fd: number, offset: bigint, writable?: boolean): Deno.PointerValue;
  /** mmap with explicit protection and flags (the emulator's private copy of guest RAM). */
  mmapWith(
    length: bigint,
    prot: number,
    flags: number,
    fd: number,
    offset: bigint,
  ): Deno.PointerValue;
  munmap(address: Deno.PointerValue, length: bigint): number;
  /** open(path, O_RDONLY): a descriptor, or -1 with errno. */
  openReadOnly(path: string): number;
  close(fd: number): number;
}

/** A libc that could not be loaded. */
export class LibcLoadError extends Error {
  override name = "LibcLoadError";
}

let cached: Libc | undefined;

/** Loads libc once (libc.so.7, else libc.so.6). */
export function libc(): Libc {
  cached ??= loadLibc();
  return cached;
}

function loadLibc(): Libc {
  const failures: string[] = [];
  try {
    const lib = Deno.dlopen("libc.so.7", FREEBSD).symbols;
    return wrap(lib, () => lib.__error());
  } catch (error) {
    failures.push(`libc.so.7: ${(error as Error).message}`);
  }
  try {
    const lib = Deno.dlopen("libc.so.6", GLIBC).symbols;
    return wrap(lib, () => lib.__errno_location());
  } catch (error) {
    failures.push(`libc.so.6: ${(error as Error).message}`);
    throw new LibcLoadError(`Cannot load libc (${failures.join("; ")})`, { cause: error });
  }
}

type CommonSymbols = Deno.DynamicLibrary<typeof COMMON>["symbols"];

function wrap(lib: CommonSymbols, errnoPointer: () => Deno.PointerValue): Libc {
  return {
    errno() {
      const pointer = errnoPointer();
      return pointer === null ? 0 : new Deno.UnsafePointerView(pointer).getInt32();
    },
    strerror(errno) {
      const pointer = lib.strerror(errno);
      return pointer === null ? `error ${errno}` : Deno.UnsafePointerView.getCString(pointer);
    },
    mmap(length, fd, offset, writable = false) {
      const prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
      return lib.mmap(null, length, prot, MAP_SHARED, fd, offset);
    },
    mmapWith(length, prot, flags, fd, offset) {
      return lib.mmap(null, length, prot, flags, fd, offset);
    },
    munmap(address, length) {
      return lib.munmap(address, length);
    },
    openReadOnly(path) {
      return lib.open(new TextEncoder().encode(`${path}\0`), O_RDONLY);
    },
    close(fd) {
      return lib.close(fd);
    },
  };
}
