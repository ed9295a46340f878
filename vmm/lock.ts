/**
 * One bhyve-gdbstub per VM: a second instance on the same VM would suspend and resume vCPUs
 * behind the first one's back (each would take the other's suspended vCPUs for bhyve's, and
 * keep them parked forever). So each instance holds an exclusive flock(2) on a file named for
 * the VM, and a second one is refused with the PID of the first.
 *
 * The lock goes away with the process however it ends (the kernel drops flocks on exit), so a
 * stale file never blocks anyone; the file itself is left in place on purpose (unlinking a lock
 * file races with a process that has just opened it).
 *
 * @module
 */

/** Where lock files go: $BHYVE_GDBSTUB_LOCK_DIR, else /var/run on FreeBSD, /tmp elsewhere. */
export function lockDirectory(env: { get(name: string): string | undefined } = Deno.env): string {
  const dir = env.get("BHYVE_GDBSTUB_LOCK_DIR");
  if (dir !== undefined && dir !== "") return dir;
  return Deno.build.os === "freebsd" ? "/var/run" : "/tmp";
}

/** The lock file for VM `name` in `dir`. */
export function lockPath(name: string, dir: string = lockDirectory()): string {
  return `${dir.replace(/\/+$/, "") || "/"}/bhyve-gdbstub.${name}.lock`;
}

/** Another process holds the VM's lock, or the lock file cannot be used. One line for the user. */
export class VmLockError extends Error {
  override name = "VmLockError";
  /** The PID written by the holder, when known. */
  readonly pid: number | undefined;
  constructor(message: string, pid?: number, options?: ErrorOptions) {
    super(message, options);
    this.pid = pid;
  }
}

/** A held lock; release it (or let the process end) to let another instance in. */
export class VmLock implements Disposable {
  readonly path: string;
  #file: Deno.FsFile | undefined;

  constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /** Drops the lock. Idempotent. */
  release(): void {
    const file = this.#file;
    if (file === undefined) return;
    this.#file = undefined;
    try {
      file.unlockSync();
    } finally {
      file.close();
    }
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

export interface LockOptions {
  /** Directory for the lock file (default {@link lockDirectory}). */
  dir?: string;
}

/**
 * Takes the exclusive lock for VM `name`, or throws {@link VmLockError} naming the PID that
 * holds it. Never waits: a second instance is refused at once.
 *
 * @example
 * ```ts
 * using lock = await lockVm("guest0");
 * // … serve the VM; the lock is released on return or when the process ends …
 * ```
 */
export async function lockVm(name: string, options: LockOptions = {}): Promise<VmLock> {
  if (name === "" || name.includes("/") || name === "." || name === "..") {
    throw new VmLockError(`Cannot lock VM '${name}': not a valid VM name`);
  }
  const path = lockPath(name, options.dir ?? lockDirectory());
  // A world-writable directory like /tmp: never follow a symlink someone planted there.
  const before = await lstat(path);
  if (before !== undefined && !before.isFile) {
    throw new VmLockError(`Cannot lock VM '${name}': ${path} exists and is not a regular file`);
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o644 });
  } catch (error) {
    throw new VmLockError(
      `Cannot lock VM '${name}': cannot open ${path}: ${(error as Error).message} ` +
        "(set BHYVE_GDBSTUB_LOCK_DIR to a writable directory)",
      undefined,
      { cause: error },
    );
  }
  try {
    const [opened, now] = [await file.stat(), await lstat(path)];
    if (now === undefined || !now.isFile || now.ino !== opened.ino || now.dev !== opened.dev) {
      throw new VmLockError(`Cannot lock VM '${name}': ${path} changed while being opened`);
    }
    if (!(await file.tryLock(true))) {
      const pid = await holderPid(file);
      const who = pid === undefined ? "another process" : `process ${pid}`;
      throw new VmLockError(
        `VM ${name} is already being served by another bhyve-gdbstub (${who} holds ${path})`,
        pid,
      );
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    return new VmLock(path, file);
  } catch (error) {
    file.close();
    throw error;
  }
}

async function lstat(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

async function holderPid(file: Deno.FsFile): Promise<number | undefined> {
  try {
    await file.seek(0, Deno.SeekMode.Start);
    const buffer = new Uint8Array(32);
    const n = await file.read(buffer);
    const text = new TextDecoder().decode(buffer.subarray(0, n ?? 0)).trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
