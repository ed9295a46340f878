/**
 * Saving a core under its final name safely: it is written to a new temporary file beside the
 * target (created exclusively, mode 0600: it holds guest memory), and only a complete file
 * gets the final name. Without `overwrite` the name is taken with link(2), which fails on any
 * existing entry, a symbolic link included, so nothing is ever replaced or followed. Any
 * failure, or an abort, removes the temporary file.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { planCore } from "./layout.ts";
import type { CoreSource } from "./source.ts";
import { writeCore, type WriteOptions, type WriteResult } from "./writer.ts";

/** A core that could not be saved; `message` says why in words. */
export class CoreFileError extends Error {
  override name = "CoreFileError";
}

/** Options for {@link saveCore}. */
export interface SaveOptions extends WriteOptions {
  /** Replace an existing file (never a directory). */
  overwrite?: boolean;
}

/** A saved core. */
export interface SaveResult extends WriteResult {
  path: string;
  /** The file's size (holes included). */
  size: bigint;
  /** How many PT_LOAD segments. */
  loads: number;
}

/**
 * A core being written: {@link CoreFile.create} checks the name and creates the temporary file
 * (so a refusal comes before the guest is held), {@link CoreFile.write} fills it, and
 * {@link CoreFile.publish} names it; {@link CoreFile.discard} removes it on any failure.
 */
export class CoreFile {
  readonly path: string;
  #temp: string;
  #file: Deno.FsFile | undefined;
  #overwrite: boolean;
  #done = false;

  private constructor(path: string, temp: string, file: Deno.FsFile, overwrite: boolean) {
    this.path = path;
    this.#temp = temp;
    this.#file = file;
    this.#overwrite = overwrite;
  }

  /** Refuses an existing `path` (unless `overwrite`) and creates the temporary file. */
  static async create(path: string, options: { overwrite?: boolean } = {}): Promise<CoreFile> {
    const overwrite = options.overwrite ?? false;
    refuseExisting(path, overwrite);
    const temp = `${temporaryPrefix(path)}${randomTag()}.part`;
    try {
      const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
      return new CoreFile(path, temp, file, overwrite);
    } catch (error) {
      throw new CoreFileError(`cannot create a file in ${dirname(path)}: ${describe(error)}`, {
        cause: error,
      });
    }
  }

  /** Writes the whole core of `source`. */
  async write(source: CoreSource, options: WriteOptions = {}): Promise<SaveResult> {
    if (this.#file === undefined) throw new CoreFileError("core file already closed");
    const layout = planCore(source);
    let result: WriteResult;
    try {
      result = await writeCore(source, layout, this.#file, options);
    } catch (error) {
      if (error instanceof Error && /os error/.test(error.message)) {
        throw new CoreFileError(`cannot write ${this.path}: ${describe(error)}`, { cause: error });
      }
      throw error;
    }
    return { ...result, path: this.path, size: layout.size, loads: layout.loads };
  }

  /** Gives the complete file its name. */
  publish(): void {
    this.#close();
    publish(this.#temp, this.path, this.#overwrite);
    this.#done = true;
  }

  /** Removes the temporary file (nothing after {@link publish}). */
  discard(): void {
    this.#close();
    if (this.#done) return;
    this.#done = true;
    try {
      Deno.removeSync(this.#temp);
    } catch {
      // already gone
    }
  }

  #close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Where this process's temporary files for `path` begin (the name of the core, our PID). */
function temporaryPrefix(path: string): string {
  return join(dirname(path), `.${basename(path)}.${Deno.pid}.`);
}

/**
 * Removes, at once, the temporary files this process began for `path` and never published; for
 * a last resort (a second signal, a crash) that cannot wait for a write to end. Returns how many.
 */
export function discardUnfinished(path: string): number {
  const prefix = basename(temporaryPrefix(path));
  let removed = 0;
  try {
    for (const entry of Deno.readDirSync(dirname(path))) {
      if (!entry.name.startsWith(prefix) || !entry.name.endsWith(".part")) continue;
      Deno.removeSync(join(dirname(path), entry.name));
      removed++;
    }
  } catch {
    // the directory is gone or unreadable: nothing of ours to remove there
  }
  return removed;
}

/** Writes the core of `source` to `path`. Throws {@link CoreFileError} on a refusal or fault. */
export async function saveCore(
  source: CoreSource,
  path: string,
  options: SaveOptions = {},
): Promise<SaveResult> {
  const file = await CoreFile.create(path, options);
  try {
    const result = await file.write(source, options);
    file.publish();
    return result;
  } finally {
    file.discard();
  }
}

function refuseExisting(path: string, overwrite: boolean): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw new CoreFileError(`cannot use ${path}: ${describe(error)}`, { cause: error });
  }
  if (!overwrite) throw new CoreExistsError(`${path} already exists`);
  if (info.isDirectory) throw new CoreFileError(`${path} is a directory`);
}

/** The target name exists and overwriting was not asked for. */
export class CoreExistsError extends CoreFileError {
  override name = "CoreExistsError";
}

function publish(temp: string, path: string, overwrite: boolean): void {
  try {
    if (overwrite) {
      Deno.renameSync(temp, path); // replaces a link itself, never what it points to
    } else {
      Deno.linkSync(temp, path);
      Deno.removeSync(temp);
    }
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new CoreExistsError(`${path} already exists (created while the core was written)`);
    }
    throw new CoreFileError(`cannot name the core ${path}: ${describe(error)}`, { cause: error });
  }
}

/** An OS error in words, without Deno's "(os error N)" tail and the path it repeats. */
function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\).*$/s, "").replace(/:\s*'[^']*'$/, "");
}

function randomTag(): string {
  return crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
}
