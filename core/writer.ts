/**
 * Writes a planned core into an open file: the head, then RAM chunk by chunk, skipping pages
 * of zeros (they stay holes: the file is sized at the end with ftruncate, so a mostly idle
 * guest costs little disk). Where the source offers views of the machine's memory (a mapping
 * of it), each chunk is scanned and written straight from there; else it is copied out first.
 * One chunk is scanned while the previous one is being written, and the work stops between
 * chunks when asked to.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { CoreLayout } from "./layout.ts";
import type { CoreSource } from "./source.ts";

const PAGE = 4096;
/** Bytes copied out of the guest at a time. */
export const CHUNK_BYTES = 8 << 20;

/** Options for {@link writeBody}. */
export interface WriteOptions {
  /** Stops the copy between chunks (the caller removes the file). */
  signal?: AbortSignal;
  /** Called after each chunk with the RAM bytes copied so far and the total. */
  onProgress?(done: bigint, total: bigint): void;
}

/** What was written. */
export interface WriteResult {
  /** RAM bytes copied from the guest. */
  ram: bigint;
  /** Bytes of RAM that were not zero (written; the rest are holes). */
  data: bigint;
  /** Time spent copying RAM into the file (s). */
  copySeconds: number;
}

/** Writes `layout` and the RAM of `source` into `file` (empty, opened for writing). */
export async function writeCore(
  source: CoreSource,
  layout: CoreLayout,
  file: Deno.FsFile,
  options: WriteOptions = {},
): Promise<WriteResult> {
  await writeAt(file, 0n, layout.head);
  const start = performance.now();
  const total = source.ranges.reduce((n, r) => n + r.length, 0n);
  // Copies land here, where the source has no views (one chunk being written, one filled).
  const buffers = [new Uint8Array(CHUNK_BYTES), new Uint8Array(CHUNK_BYTES)];
  let pending: Promise<void> = Promise.resolve();
  let done = 0n;
  let data = 0n;
  let turn = 0;
  try {
    for (const [i, range] of source.ranges.entries()) {
      for (let off = 0n; off < range.length; off += BigInt(CHUNK_BYTES)) {
        // A turn of the event loop, so a signal's listener can run: a chunk of zero pages
        // writes nothing, and its `await` alone would never leave the microtask queue.
        await new Promise((resolve) => setImmediate(resolve));
        options.signal?.throwIfAborted();
        source.check?.();
        const n = Number(min(range.length - off, BigInt(CHUNK_BYTES)));
        // The other buffer may still be on its way to the file: this one is free.
        const buffer = chunkAt(source, range.gpa + off, buffers[turn++ % 2]!.subarray(0, n));
        const runs = nonZeroRuns(buffer);
        for (const [start, end] of runs) data += BigInt(end - start);
        await pending;
        const fileAt = layout.rangeOffsets[i]! + off;
        pending = writeRuns(file, fileAt, buffer, runs);
        done += BigInt(n);
        options.onProgress?.(done, total);
      }
    }
  } finally {
    // Never leave a write running into a file the caller is about to remove.
    await pending.catch(() => {});
  }
  await pending;
  await file.truncate(Number(layout.size));
  return { ram: done, data, copySeconds: (performance.now() - start) / 1000 };
}

/**
 * `spare.length` bytes of RAM at `gpa`: a view of the machine's memory where the source has
 * one, else a copy into `spare`. The scan reads 32-bit words, so a view at an address that is
 * not a multiple of 4 (only a test's buffer can be) is copied too.
 */
function chunkAt(source: CoreSource, gpa: bigint, spare: Uint8Array): Uint8Array {
  const view = source.view?.(gpa, spare.length);
  if (view !== undefined && view.byteOffset % 4 === 0) return view;
  source.read(gpa, spare);
  return spare;
}

async function writeRuns(
  file: Deno.FsFile,
  at: bigint,
  buffer: Uint8Array,
  runs: [number, number][],
): Promise<void> {
  for (const [start, end] of runs) {
    await writeAt(file, at + BigInt(start), buffer.subarray(start, end));
  }
}

async function writeAt(file: Deno.FsFile, at: bigint, bytes: Uint8Array): Promise<void> {
  await file.seek(Number(at), Deno.SeekMode.Start);
  for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
}

/** The [start, end) byte runs of `buffer` made of whole pages that are not all zero. */
export function nonZeroRuns(buffer: Uint8Array): [number, number][] {
  const words = new Int32Array(buffer.buffer, buffer.byteOffset, buffer.length >>> 2);
  const whole = buffer.length - (buffer.length % PAGE);
  const runs: [number, number][] = [];
  let runStart = -1;
  for (let page = 0; page < buffer.length; page += PAGE) {
    const zero = page < whole ? zeroPage(words, page >>> 2) : zeroBytes(buffer, page);
    if (!zero && runStart < 0) runStart = page;
    if (zero && runStart >= 0) {
      runs.push([runStart, page]);
      runStart = -1;
    }
  }
  if (runStart >= 0) runs.push([runStart, buffer.length]);
  return runs;
}

/**
 * Whether the page of 1024 words at `first` is all zero. Eight words ORed per test: the scan
 * of an idle guest's many zero pages then takes about 50 ms a GiB here, half the time of a
 * test per word.
 */
function zeroPage(words: Int32Array, first: number): boolean {
  for (let w = first, last = first + PAGE / 4; w < last; w += 8) {
    if (
      (words[w]! | words[w + 1]! | words[w + 2]! | words[w + 3]! | words[w + 4]! |
        words[w + 5]! | words[w + 6]! | words[w + 7]!) !== 0
    ) {
      return false;
    }
  }
  return true;
}

/** Whether the bytes of `buffer` from `from` to its end (less than a page) are all zero. */
function zeroBytes(buffer: Uint8Array, from: number): boolean {
  for (let b = from; b < buffer.length; b++) if (buffer[b] !== 0) return false;
  return true;
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
