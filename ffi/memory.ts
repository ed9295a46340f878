/**
 * Guest RAM mapped read-only into this process through the VM's device fd.
 *
 * The device fd maps at offset = guest-physical address (vmm-facts.md section 1). The mapping
 * is PROT_READ: this tool never writes to the guest, and a stray write through it would fault
 * instead of corrupting the guest. Nothing outside this file sees the mapping: reads copy out.
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

  private constructor(gpa: bigint, length: bigint, pointer: Deno.PointerValue) {
    this.gpa = gpa;
    this.length = length;
    this.#pointer = pointer;
  }

  /**
   * Maps [gpa, gpa + length) of the device fd `fd`, read-only and shared, from file offset
   * `offset`: the guest-physical address itself for system memory, the offset within the
   * segment for a device-memory node (/dev/vmm.io/NAME.SEGNAME).
   */
  static map(fd: number, gpa: bigint, length: bigint, offset: bigint = gpa): MappedRange {
    const c = libc();
    const pointer = c.mmap(length, fd, offset);
    // MAP_FAILED is (void *)-1.
    if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn) {
      const errno = c.errno();
      throw new MapError(
        `mmap of guest range 0x${gpa.toString(16)} (+0x${length.toString(16)}) failed: ` +
          `${errnoName(errno)} (${c.strerror(errno)})`,
      );
    }
    return new MappedRange(gpa, length, pointer);
  }

  /** Whether [gpa, gpa + length) lies inside this range. */
  contains(gpa: bigint, length: number): boolean {
    return gpa >= this.gpa && gpa + BigInt(length) <= this.gpa + this.length;
  }

  /** Copies `into.length` bytes at `gpa` (which {@link contains} must accept). */
  read(gpa: bigint, into: Uint8Array): void {
    if (this.#pointer === null) throw new MapError("guest range already unmapped");
    // A zero-copy view of just the requested bytes (a view of a whole multi-GiB range could
    // exceed what an ArrayBuffer may span), copied out at once.
    const offset = gpa - this.gpa;
    const pointer = Deno.UnsafePointer.offset(this.#pointer, Number(offset));
    if (pointer === null) throw new MapError("null guest pointer");
    const source = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(pointer, into.length),
    );
    into.set(source);
  }

  /** munmap; the range is unusable afterwards. */
  unmap(): void {
    if (this.#pointer === null) return;
    libc().munmap(this.#pointer, this.length);
    this.#pointer = null;
  }
}
