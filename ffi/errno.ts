/**
 * errno numbers to portable names, and the {@link VmmError} a failed call becomes.
 *
 * Names matter more than numbers: vmm/ recognises a vanished VM by "ENXIO", "EBADF" or
 * "ENOENT", and FreeBSD and Linux number some errors differently (EAGAIN is 35 on FreeBSD,
 * 11 on Linux).
 *
 * @module
 */
import { VmmError } from "../vmm/vmmapi.ts";
import { libc } from "./libc.ts";

/** Numbers shared by FreeBSD and Linux (the historical Unix ones). */
const SHARED: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  25: "ENOTTY",
  34: "ERANGE",
};

const FREEBSD: Record<number, string> = {
  ...SHARED,
  11: "EDEADLK",
  35: "EAGAIN",
  45: "EOPNOTSUPP",
  78: "ENOSYS",
};

const LINUX: Record<number, string> = {
  ...SHARED,
  11: "EAGAIN",
  35: "EDEADLK",
  38: "ENOSYS",
  95: "EOPNOTSUPP",
};

const NAMES = Deno.build.os === "freebsd" ? FREEBSD : LINUX;

/** errno's name on this platform, e.g. "ENXIO"; "E<n>" for numbers not in the table. */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}

/**
 * Reads errno now (call it straight after the failed C call, before anything else runs) and
 * wraps it in a {@link VmmError}.
 */
export function lastError(func: string, args: string): VmmError {
  const c = libc();
  const errno = c.errno();
  return new VmmError(func, args, errno, errnoName(errno), c.strerror(errno));
}
