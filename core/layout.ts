/**
 * Where everything goes in the core file, QEMU's `dump-guest-memory` layout: the ELF header,
 * the program headers (PT_NOTE first, then the PT_LOADs), the notes, then all RAM once, range
 * after range in guest-physical order. Without paging each RAM range is one PT_LOAD with
 * p_paddr = gpa and p_vaddr = 0; with paging the PT_LOADs are the guest-virtual mappings and
 * point into that same RAM image (several may share bytes), as QEMU's `-p` does.
 *
 * Unlike QEMU, the RAM image starts page-aligned, so that pages of zeros can be file holes;
 * mappings of something other than RAM (MMIO) get no PT_LOAD (QEMU gives them no bytes either).
 *
 * @module
 */
import {
  EHDR_SIZE,
  ElfConst,
  encodeHeaders,
  encodeXnumSection,
  PHDR_SIZE,
  type ProgramHeader,
  SHDR_SIZE,
} from "./elf.ts";
import { encodeNotes } from "./notes.ts";
import type { CoreSource, RamRange } from "./source.ts";

const PAGE = 4096n;

/** The planned file. */
export interface CoreLayout {
  /** ELF header, program headers, notes (and the PN_XNUM section header), from offset 0. */
  head: Uint8Array;
  /** Where each RAM range's bytes start in the file, in `ranges` order. */
  rangeOffsets: bigint[];
  /** The file's size. */
  size: bigint;
  /** How many PT_LOADs. */
  loads: number;
}

/** Plans the file for `source`. */
export function planCore(source: CoreSource): CoreLayout {
  const notes = encodeNotes(source.cpus);
  const ranges = source.ranges;
  // The number of PT_LOADs does not depend on the offsets: count them first.
  const loadCount = source.mappings === undefined
    ? ranges.length
    : splitByRam(source, ranges).length;
  const phnum = 1 + loadCount;
  const notesAt = BigInt(EHDR_SIZE + PHDR_SIZE * phnum);
  const extended = phnum >= ElfConst.PN_XNUM;
  const shoff = alignUp(notesAt + BigInt(notes.length), 8n);
  const headEnd = extended ? shoff + BigInt(SHDR_SIZE) : notesAt + BigInt(notes.length);
  let at = alignUp(headEnd, PAGE);
  const rangeOffsets = ranges.map((r) => {
    const offset = at;
    at += r.length;
    return offset;
  });
  const size = at;
  const loads: ProgramHeader[] = source.mappings === undefined
    ? ranges.map((r, i) => load(rangeOffsets[i]!, 0n, r.gpa, r.length))
    : splitByRam(source, ranges).map((m) =>
      load(rangeOffsets[m.range]! + (m.gpa - ranges[m.range]!.gpa), m.gva, m.gpa, m.length)
    );
  const phdrs: ProgramHeader[] = [
    {
      type: ElfConst.PT_NOTE,
      flags: 0,
      offset: notesAt,
      vaddr: 0n,
      paddr: 0n,
      filesz: BigInt(notes.length),
      memsz: BigInt(notes.length),
      align: 0n,
    },
    ...loads,
  ];
  const head = new Uint8Array(Number(headEnd));
  head.set(encodeHeaders(phdrs, shoff), 0);
  head.set(notes, Number(notesAt));
  if (extended) head.set(encodeXnumSection(phnum), Number(shoff));
  return { head, rangeOffsets, size, loads: loads.length };
}

function load(offset: bigint, vaddr: bigint, paddr: bigint, length: bigint): ProgramHeader {
  // QEMU leaves p_flags and p_align 0.
  return {
    type: ElfConst.PT_LOAD,
    flags: 0,
    offset,
    vaddr,
    paddr,
    filesz: length,
    memsz: length,
    align: 0n,
  };
}

/** The mappings cut at RAM range boundaries, keeping only the parts that are RAM. */
function splitByRam(
  source: CoreSource,
  ranges: readonly RamRange[],
): { gva: bigint; gpa: bigint; length: bigint; range: number }[] {
  const out: { gva: bigint; gpa: bigint; length: bigint; range: number }[] = [];
  for (const m of source.mappings ?? []) {
    ranges.forEach((r, range) => {
      const start = m.gpa > r.gpa ? m.gpa : r.gpa;
      const mEnd = m.gpa + m.length;
      const rEnd = r.gpa + r.length;
      const end = mEnd < rEnd ? mEnd : rEnd;
      if (start < end) {
        out.push({ gva: m.gva + (start - m.gpa), gpa: start, length: end - start, range });
      }
    });
  }
  return out;
}

function alignUp(n: bigint, to: bigint): bigint {
  return (n + to - 1n) / to * to;
}
