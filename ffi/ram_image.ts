/**
 * Guest RAM as a private copy-on-write mapping, for the emulator: it reads the guest's pages as
 * they are and keeps its own writes to itself, so an emulated run never changes the guest.
 *
 * @module
 */
import type { RamImage, RamRange } from "../emu/emulator.ts";
import { errnoName } from "./errno.ts";
import { libc } from "./libc.ts";

const PROT_READ_WRITE = 3;
const MAP_PRIVATE = 2;

/** A {@link RamImage} with the pointers ffi/ needs (kept in ffi/). */
export class PrivateRam implements RamImage {
  readonly ranges: readonly RamRange[];
  readonly pointers: Deno.PointerObject[];
  /** The same ranges shared and read-only: the guest's bytes, as the baseline for changes. */
  readonly originals: Deno.PointerObject[];
  /** Per page already reported: its bytes as of the last report (else the original's). */
  #baseline = new Map<bigint, Uint8Array>();
  /** /proc/self/pagemap, once opened; null where there is none. */
  #pagemap: Deno.FsFile | null | undefined;
  #open = true;

  private constructor(
    ranges: RamRange[],
    pointers: Deno.PointerObject[],
    originals: Deno.PointerObject[],
  ) {
    this.ranges = ranges;
    this.pointers = pointers;
    this.originals = originals;
  }

  /** Maps each range of `fd` (at offset = guest-physical address) privately, read-write. */
  static map(fd: number, ranges: readonly RamRange[], offsets?: readonly bigint[]): PrivateRam {
    const c = libc();
    const pointers: Deno.PointerObject[] = [];
    const originals: Deno.PointerObject[] = [];
    const mapOne = (range: RamRange, offset: bigint, shared: boolean) => {
      const pointer = shared
        ? c.mmap(range.length, fd, offset)
        : c.mmapWith(range.length, PROT_READ_WRITE, MAP_PRIVATE, fd, offset);
      if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn) {
        const errno = c.errno();
        throw new Error(
          `mapping guest RAM 0x${range.gpa.toString(16)} for the emulator failed: ` +
            `${errnoName(errno)} (${c.strerror(errno)})`,
        );
      }
      return pointer;
    };
    try {
      ranges.forEach((range, i) => {
        const offset = offsets?.[i] ?? range.gpa;
        pointers.push(mapOne(range, offset, false));
        originals.push(mapOne(range, offset, true));
      });
    } catch (error) {
      pointers.forEach((p, i) => c.munmap(p, ranges[i]!.length));
      originals.forEach((p, i) => c.munmap(p, ranges[i]!.length));
      throw error;
    }
    return new PrivateRam([...ranges], pointers, originals);
  }

  /**
   * Maps ranges of a file holding guest RAM (e.g. QEMU's memory-backend-file): range i at file
   * offset `offsets[i]`.
   */
  static fromFile(
    path: string,
    ranges: readonly RamRange[],
    offsets: readonly bigint[],
  ): PrivateRam {
    const c = libc();
    const fd = c.openReadOnly(path);
    if (fd < 0) {
      const errno = c.errno();
      throw new Error(`cannot open ${path}: ${errnoName(errno)} (${c.strerror(errno)})`);
    }
    try {
      return PrivateRam.map(fd, ranges, offsets);
    } finally {
      c.close(fd); // the mappings stay valid
    }
  }

  /**
   * Guest-physical pages the private copy holds its own copy of (written since the image was
   * made), from Linux's /proc/self/pagemap: a copied page is anonymous (bit 61 clear) and
   * present (bit 63). Undefined where there is no pagemap (FreeBSD): writes are then recorded
   * as they happen.
   */
  copiedPages(): bigint[] | undefined {
    if (this.#pagemap === null) return undefined;
    try {
      this.#pagemap ??= Deno.openSync("/proc/self/pagemap");
    } catch {
      this.#pagemap = null;
      return undefined;
    }
    const pages: bigint[] = [];
    const chunk = new BigUint64Array(8192);
    const bytes = new Uint8Array(chunk.buffer);
    this.ranges.forEach((range, i) => {
      const first = Deno.UnsafePointer.value(this.pointers[i]!) / 4096n;
      const count = Number(range.length / 4096n);
      for (let at = 0; at < count; at += chunk.length) {
        const n = Math.min(chunk.length, count - at);
        this.#pagemap!.seekSync(Number((first + BigInt(at)) * 8n), Deno.SeekMode.Start);
        let got = 0;
        while (got < n * 8) {
          const read = this.#pagemap!.readSync(bytes.subarray(got, n * 8));
          if (read === null) break;
          got += read;
        }
        for (let k = 0; k < got / 8; k++) {
          const entry = chunk[k]!;
          if ((entry >> 63n) === 1n && ((entry >> 61n) & 1n) === 0n) {
            pages.push(range.gpa + BigInt(at + k) * 4096n);
          }
        }
      }
    });
    return pages;
  }

  /** The range index and offset holding [gpa, gpa + length), if one does. */
  locate(gpa: bigint, length: number): { index: number; offset: number } | undefined {
    const index = this.ranges.findIndex((r) =>
      gpa >= r.gpa && gpa + BigInt(length) <= r.gpa + r.length
    );
    if (index < 0) return undefined;
    return { index, offset: Number(gpa - this.ranges[index]!.gpa) };
  }

  /**
   * What changed in guest-physical page `page` (its address) since the last call for it: runs
   * of differing bytes with their new values. Pages outside RAM have none.
   */
  changes(page: bigint): { gpa: bigint; bytes: Uint8Array }[] {
    const where = this.locate(page, 4096);
    if (where === undefined || !this.#open) return [];
    const now = this.#view(this.pointers, where.index, where.offset);
    const before = this.#baseline.get(page) ??
      this.#view(this.originals, where.index, where.offset);
    const changes: { gpa: bigint; bytes: Uint8Array }[] = [];
    for (let i = 0; i < 4096;) {
      if (now[i] === before[i]) {
        i++;
        continue;
      }
      let end = i + 1;
      while (end < 4096 && now[end] !== before[end]) end++;
      changes.push({ gpa: page + BigInt(i), bytes: now.slice(i, end) });
      i = end;
    }
    if (changes.length > 0) this.#baseline.set(page, now.slice());
    return changes;
  }

  #view(pointers: Deno.PointerObject[], index: number, offset: number): Uint8Array {
    const pointer = Deno.UnsafePointer.offset(pointers[index]!, offset);
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer!, 4096));
  }

  /** A copy of the image's bytes at [gpa, gpa + length) (one range must hold them). */
  read(gpa: bigint, length: number): Uint8Array {
    const where = this.locate(gpa, length);
    if (where === undefined || !this.#open) {
      throw new Error(`0x${gpa.toString(16)} (+${length}) is not in guest RAM`);
    }
    const pointer = Deno.UnsafePointer.offset(this.pointers[where.index]!, where.offset);
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer!, length)).slice();
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#pagemap?.close();
    this.pointers.forEach((p, i) => libc().munmap(p, this.ranges[i]!.length));
    this.originals.forEach((p, i) => libc().munmap(p, this.ranges[i]!.length));
  }
}
