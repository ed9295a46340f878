/**
 * A fake DebugTarget whose memory is the demo guest's ELF image (its PT_LOAD segments at their
 * virtual addresses) and whose vCPUs sit in the guest's `spin` loop, for driving the real gdb and
 * lldb through run-control paths where no test VM can run (no /dev/kvm): what the clients show
 * depends only on the packets, which are the same.
 *
 * @module
 */
import { type Capability, TargetError } from "../../rsp/target.ts";
import { UNSUPPORTED } from "../../vmm/target.ts";
import { type FakeOptions, FakeTarget } from "../rsp/fake_target.ts";

interface Segment {
  address: bigint;
  bytes: Uint8Array;
}

/** The PT_LOAD segments of an ELF64 little-endian file, zero-filled to their memory size. */
export function loadSegments(image: Uint8Array): Segment[] {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const phoff = Number(view.getBigUint64(0x20, true));
  const phentsize = view.getUint16(0x36, true);
  const phnum = view.getUint16(0x38, true);
  const segments: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (view.getUint32(at, true) !== 1) continue; // PT_LOAD
    const offset = Number(view.getBigUint64(at + 8, true));
    const address = view.getBigUint64(at + 16, true);
    const fileSize = Number(view.getBigUint64(at + 32, true));
    const memSize = Number(view.getBigUint64(at + 40, true));
    const bytes = new Uint8Array(memSize);
    bytes.set(image.subarray(offset, offset + fileSize));
    segments.push({ address, bytes });
  }
  return segments;
}

/**
 * The fake with the guest image as its memory. Every thread stands at `pc` with rsp = rbp =
 * `sp`, in a frame whose return address is `returnTo` (so `finish` and lldb's step-out find a
 * caller, as in the real guest).
 */
export class ElfTarget extends FakeTarget {
  readonly segments: Segment[];
  readonly pc: bigint;
  readonly sp: bigint;

  constructor(
    elf: string,
    frame: { pc: bigint; sp: bigint; returnTo: bigint },
    options: FakeOptions = {},
  ) {
    super(options);
    this.segments = loadSegments(Deno.readFileSync(elf));
    this.pc = frame.pc;
    this.sp = frame.sp;
    // The frame: saved rbp (the caller's frame, 0x30 up, itself outermost), return address.
    const link = new Uint8Array(0x40);
    const view = new DataView(link.buffer);
    view.setBigUint64(0, frame.sp + 0x30n, true);
    view.setBigUint64(8, frame.returnTo, true);
    view.setBigUint64(0x38, frame.returnTo, true);
    const { segment, start } = this.#find(1, frame.sp, "write");
    segment.bytes.set(link, start);
  }

  override readRegister(thread: number, regnum: number): Uint8Array | undefined {
    const value = super.readRegister(thread, regnum);
    if (value !== undefined && (regnum === 16 || regnum === 7 || regnum === 6)) {
      new DataView(value.buffer).setBigUint64(0, regnum === 16 ? this.pc : this.sp, true);
    }
    return value;
  }

  /** The VM's own words, so a client shows what it would show against a VM. */
  override unsupported(capability: Capability): string | undefined {
    return super.unsupported(capability) && UNSUPPORTED[capability];
  }

  override readMemory(thread: number, address: bigint, length: number): Uint8Array {
    const { segment, start } = this.#find(thread, address, "read");
    return segment.bytes.slice(start, Math.min(segment.bytes.length, start + length));
  }

  override writeMemory(thread: number, address: bigint, data: Uint8Array): void {
    if (this.unsupported("write-memory") !== undefined) super.writeMemory(thread, address, data);
    const { segment, start } = this.#find(thread, address, "write");
    const fits = Math.min(data.length, segment.bytes.length - start);
    segment.bytes.set(data.subarray(0, fits), start);
    if (fits < data.length) {
      throw new TargetError(`Wrote ${fits} of ${data.length} bytes: the rest is not mapped`, 14);
    }
  }

  #find(thread: number, address: bigint, what: string): { segment: Segment; start: number } {
    for (const segment of this.segments) {
      const end = segment.address + BigInt(segment.bytes.length);
      if (address >= segment.address && address < end) {
        return { segment, start: Number(address - segment.address) };
      }
    }
    throw new TargetError(
      `Cannot ${what} guest memory: 0x${address.toString(16)} is not mapped on vCPU ${thread - 1}`,
      14,
    );
  }
}
