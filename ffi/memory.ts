/**
 * Guest RAM mapped into this process through the VM's device fd.
 *
 * The device fd maps at offset = guest-physical address (vmm-facts.md section 1). The mapping
 * is PROT_READ unless the server was started with `--allow-write`: then it is read-write, as
 * libvmmapi's own vm_map_gpa maps it. Read-only, a stray write through it faults instead of
 * corrupting the guest. Reads and writes copy; only the core writer (core/writer.ts) gets views,
 * which it reads, and drops before its dump ends.
 *
 * @module
 */
import { libc } from "./libc.ts";
import { errnoName } from "./errno.ts";

/** mmap failed for a guest range. */
export class MapError extends Error {
  override name = "MapError";
}

/** One guest-physical range mapped into this process. */
export class MappedRange {
  readonly gpa: bigint;
  readonly length: bigint;
  #pointer: Deno.PointerValue;

  private constructor(
    gpa: bigint,
    length: bigint,
    pointer: Deno.PointerValue,
    writable: boolean,
  ) {
    this.gpa = gpa;
    this.length = length;
    this.#pointer = pointer;
    this.writable = writable;
  }

  readonly writable: boolean;

  /**
   * Maps [gpa, gpa + length) of the device fd `fd`, shared, read-only unless `writable`, from
   * file offset `offset`: the guest-physical address itself for system memory, the offset within
   * the segment for a device-memory node (/dev/vmm.io/NAME.SEGNAME).
   */
  static map(
    fd: number,
    gpa: bigint,
    length: bigint,
    options: { offset?: bigint; writable?: boolean } = {},
  ): MappedRange {
    const c = libc();
    const writable = options.writable ?? false;
    const pointer = c.mmap(length, fd, options.offset ?? gpa, writable);
    // MAP_FAILED is (void *)-1.
    if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn) {
      const errno = c.errno();
      throw new MapError(
        `mmap of guest range 0x${gpa.toString(16)} (+0x${length.toString(16)}) failed: ` +
          `${errnoName(errno)} (${c.strerror(errno)})`,
      );
    }
    return new MappedRange(gpa, length, pointer, writable);
  }

  /** Whether [gpa, gpa + length) lies inside this range. */
  contains(gpa: bigint, length: number): boolean {
    return gpa >= this.gpa && gpa + BigInt(length) <= this.gpa + this.length;
  }

  /** Copies `into.length` bytes at `gpa` (which {@link contains} must accept). */
  read(gpa: bigint, into: Uint8Array): void {
    into.set(this.#view(gpa, into.length));
  }

  /**
   * A view of `length` bytes at `gpa` (which {@link contains} must accept), no copy: never to
   * be written through, nor kept past the next {@link unmap}.
   */
  view(gpa: bigint, length: number): Uint8Array {
    return this.#view(gpa, length);
  }

  /** Copies `from` to `gpa` (which {@link contains} must accept); the mapping must be writable. */
  write(gpa: bigint, from: Uint8Array): void {
    if (!this.writable) throw new MapError("guest range is mapped read-only");
    this.#view(gpa, from.length).set(from);
  }

  /**
   * A zero-copy view of just `length` bytes at `gpa` (a view of a whole multi-GiB range could
   * exceed what an ArrayBuffer may span), used at once and dropped.
   */
  #view(gpa: bigint, length: number): Uint8Array {
    if (this.#pointer === null) throw new MapError("guest range already unmapped");
    const pointer = Deno.UnsafePointer.offset(this.#pointer, Number(gpa - this.gpa));
    if (pointer === null) throw new MapError("null guest pointer");
    return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length));
  }

  /** munmap; the range is unusable afterwards. */
  unmap(): void {
    if (this.#pointer === null) return;
    libc().munmap(this.#pointer, this.length);
    this.#pointer = null;
  }
}
