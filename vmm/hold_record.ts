/**
 * The hold record: a file beside the VM's lock listing the vCPUs this bhyve-gdbstub holds in
 * vmm's debug set. vmm does not tie the debug set to the process that filled it, so a server
 * killed with SIGKILL leaves its vCPUs parked; the record is what tells the next server (or
 * `bhyve-gdbstub release`) which of the parked vCPUs were a debugger's, and so safe to resume,
 * and which are bhyve's own not-yet-started APs, which must stay parked.
 *
 * It is written before every suspend (the vCPUs about to be held are listed first, so a kill
 * between the two leaves them recorded) and after every resume. The first write publishes the
 * file whole (a temporary file, then rename); later ones rewrite it in place through the same
 * open descriptor, in one write(2) at offset 0, padded with spaces to at least the length
 * before (JSON ignores them): a kill cannot split a write, and only the next holder of the lock
 * reads it. A rename over the file each time cost 5–18 ms per stop (ext4 flushes a file replaced
 * by rename) on a busy 2-core machine, more than the rest of the stop.
 *
 * Only the holder of the VM's lock writes or acts on it (see lock.ts).
 *
 * @module
 */
import { lockDirectory } from "./lock.ts";

/** The record for VM `name` in `dir`: the lock's name with `.held` for `.lock`. */
export function holdRecordPath(name: string, dir: string = lockDirectory()): string {
  return `${dir.replace(/\/+$/, "") || "/"}/bhyve-gdbstub.${name}.held`;
}

/** What a record says: who wrote it and the vCPUs it held (by vCPU number). */
export interface HoldRecordContents {
  pid: number;
  vcpus: number[];
}

/** Reads and writes one VM's hold record. */
export class HoldRecord {
  readonly path: string;
  #last = "";
  /** The published file, kept open for rewrites in place (undefined before the first write). */
  #file: Deno.FsFile | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /**
   * The record left by an earlier server, or undefined when there is none or it cannot be
   * read (an unreadable record is reported by the caller, never guessed at).
   */
  read(): HoldRecordContents | undefined {
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(this.path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      throw error;
    }
    // A shared directory (/tmp): only a plain file this user wrote is believed, or anyone could
    // make the server resume vCPUs bhyve keeps parked.
    const uid = Deno.uid();
    if (!info.isFile || (uid !== null && info.uid !== uid)) {
      throw new Error(`${this.path} is not a regular file of this user: ignored`);
    }
    return parseHoldRecord(Deno.readTextFileSync(this.path));
  }

  /** Records that this process holds `vcpus` (possibly none). Synchronous: a signal may follow. */
  write(vcpus: Iterable<number>): void {
    const sorted = [...new Set(vcpus)].sort((a, b) => a - b);
    let text = `${JSON.stringify({ pid: Deno.pid, vcpus: sorted })}\n`;
    if (text.trimEnd() === this.#last.trimEnd()) return;
    if (this.#file !== undefined) {
      text = `${text.trimEnd().padEnd(this.#last.length - 1)}\n`;
      this.#file.seekSync(0, Deno.SeekMode.Start);
      writeAll(this.#file, text);
      this.#last = text;
      return;
    }
    const temporary = `${this.path}.${Deno.pid}`;
    try {
      Deno.removeSync(temporary);
    } catch {
      // usually absent
    }
    // createNew: never write through a symlink planted in a shared directory.
    const file = Deno.openSync(temporary, { write: true, createNew: true, mode: 0o644 });
    try {
      writeAll(file, text);
      Deno.renameSync(temporary, this.path);
    } catch (error) {
      file.close();
      throw error;
    }
    this.#file = file; // now the published file
    this.#last = text;
  }

  /** Closes the file (it stays, with what it says last). */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Writes all of `text` at the file's position. */
function writeAll(file: Deno.FsFile, text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
}

/** Parses a record's text; undefined if it is not one. */
export function parseHoldRecord(text: string): HoldRecordContents | undefined {
  try {
    const value = JSON.parse(text);
    if (
      typeof value === "object" && value !== null && Number.isInteger(value.pid) &&
      Array.isArray(value.vcpus) &&
      value.vcpus.every((v: unknown) => Number.isInteger(v) && (v as number) >= 0)
    ) {
      return { pid: value.pid, vcpus: value.vcpus };
    }
  } catch {
    // not JSON
  }
  return undefined;
}
