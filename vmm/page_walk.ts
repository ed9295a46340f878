/**
 * An x86 page-table walker, for diagnostics (`monitor pagewalk`) and to cross-check
 * vm_gla2gpa_nofault. Translation for memory reads uses the kernel's walker, not this one.
 *
 * Covers every paging mode: none (flat), 32-bit (with 4 MiB PSE pages and PSE-36), PAE,
 * 4-level and 5-level (LA57). It reads guest-physical memory through a callback and returns
 * every level's entry, so a user can see where a walk stopped and why.
 *
 * @module
 */
import { PagingMode } from "./vmmapi.ts";

/** Reads a little-endian 4- or 8-byte page-table entry at a guest-physical address. */
export type ReadEntry = (gpa: bigint, size: 4 | 8) => bigint;

/** One level of a walk. */
export interface WalkLevel {
  /** "PML5", "PML4", "PDPT", "PD", "PT" (or "PDPTE" for PAE's first level). */
  name: string;
  /** Index of the entry in its table. */
  index: number;
  /** Guest-physical address of the entry. */
  entryGpa: bigint;
  /** The entry as read. */
  entry: bigint;
  present: boolean;
  writable: boolean;
  user: boolean;
  /** Whether this entry maps a large page (PS bit) and ends the walk. */
  large: boolean;
}

/** The outcome of a walk. */
export interface WalkResult {
  levels: WalkLevel[];
  /** The translation, if the walk reached a page. */
  gpa?: bigint;
  /** Size of the page that maps `gva` (4 KiB, 2 MiB, 4 MiB, 1 GiB), when mapped. */
  pageSize?: bigint;
  /** Why the walk stopped without a translation. */
  fault?: string;
}

/** What the walker needs of a vCPU. */
export interface WalkInput {
  pagingMode: PagingMode;
  cr3: bigint;
  /** CR4.PSE: 4 MiB pages in 32-bit paging. */
  pse: boolean;
}

const P = 1n;
const RW = 2n;
const US = 4n;
const PS = 0x80n;
/** Physical address bits of a 64-bit entry (MAXPHYADDR up to 52). */
const ADDR_MASK = 0x000f_ffff_ffff_f000n;

interface Level {
  name: string;
  shift: bigint;
  /** Large pages allowed at this level (PS bit honoured). */
  largeOk: boolean;
}

const LEVELS_4: Level[] = [
  { name: "PML4", shift: 39n, largeOk: false },
  { name: "PDPT", shift: 30n, largeOk: true },
  { name: "PD", shift: 21n, largeOk: true },
  { name: "PT", shift: 12n, largeOk: false },
];
const LEVELS_5: Level[] = [{ name: "PML5", shift: 48n, largeOk: false }, ...LEVELS_4];
/** Below PAE's PDPT: 2 MiB pages possible at the PD. */
const LEVELS_PAE: Level[] = LEVELS_4.slice(2);

const hex = (v: bigint) => `0x${v.toString(16)}`;

function decode(
  name: string,
  index: number,
  entryGpa: bigint,
  entry: bigint,
  large: boolean,
): WalkLevel {
  return {
    name,
    index,
    entryGpa,
    entry,
    present: (entry & P) !== 0n,
    writable: (entry & RW) !== 0n,
    user: (entry & US) !== 0n,
    large,
  };
}

/**
 * Walks the page tables for `gva`.
 *
 * @example
 * const r = walk(0xffffffff80001000n, { pagingMode: PagingMode.LEVEL4, cr3, pse: true }, read);
 * r.levels.map((l) => l.name); // ["PML4", "PDPT", "PD", "PT"]
 */
export function walk(gva: bigint, input: WalkInput, read: ReadEntry): WalkResult {
  switch (input.pagingMode) {
    case PagingMode.FLAT:
      return { levels: [], gpa: gva & 0xffff_ffffn, pageSize: 4096n };
    case PagingMode.BITS32:
      return walk32(gva & 0xffff_ffffn, input, read);
    case PagingMode.PAE:
      return walkPae(gva & 0xffff_ffffn, input, read);
    case PagingMode.LEVEL4:
      return walkLong(gva, input.cr3, LEVELS_4, 48n, read);
    case PagingMode.LEVEL5:
      return walkLong(gva, input.cr3, LEVELS_5, 57n, read);
  }
}

function isCanonical(gva: bigint, bits: bigint): boolean {
  const top = gva >> (bits - 1n);
  return top === 0n || top === (1n << (65n - bits)) - 1n;
}

function walkLong(
  gva: bigint,
  cr3: bigint,
  levels: Level[],
  bits: bigint,
  read: ReadEntry,
): WalkResult {
  if (gva < 0n || gva > 0xffff_ffff_ffff_ffffn) return { levels: [], fault: "out of range" };
  if (!isCanonical(gva, bits)) {
    return { levels: [], fault: `${hex(gva)} is not canonical (${bits}-bit addresses)` };
  }
  return walkLevels(gva, cr3 & ADDR_MASK, levels, read, []);
}

/** Walks tables of 8-byte entries (long mode, and PAE below its PDPT) from `table` down. */
function walkLevels(
  gva: bigint,
  table: bigint,
  levels: Level[],
  read: ReadEntry,
  result: WalkLevel[],
): WalkResult {
  for (const level of levels) {
    const index = Number((gva >> level.shift) & 0x1ffn);
    const entryGpa = table + BigInt(index) * 8n;
    const entry = read(entryGpa, 8);
    const large = level.largeOk && (entry & PS) !== 0n;
    const decoded = decode(level.name, index, entryGpa, entry, large);
    result.push(decoded);
    if (!decoded.present) return { levels: result, fault: `${level.name} entry not present` };
    if (large || level.shift === 12n) {
      const pageSize = 1n << level.shift;
      const base = entry & ADDR_MASK & ~(pageSize - 1n);
      return { levels: result, gpa: base | (gva & (pageSize - 1n)), pageSize };
    }
    table = entry & ADDR_MASK;
  }
  return { levels: result, fault: "walk did not end" };
}

function walkPae(gva: bigint, input: WalkInput, read: ReadEntry): WalkResult {
  const result: WalkLevel[] = [];
  const pdptIndex = Number((gva >> 30n) & 3n);
  const pdpteGpa = (input.cr3 & 0xffff_ffe0n) + BigInt(pdptIndex) * 8n;
  const pdpte = read(pdpteGpa, 8);
  const first = decode("PDPTE", pdptIndex, pdpteGpa, pdpte, false);
  result.push(first);
  if (!first.present) return { levels: result, fault: "PDPTE not present" };
  return walkLevels(gva, pdpte & ADDR_MASK, LEVELS_PAE, read, result);
}

function walk32(gva: bigint, input: WalkInput, read: ReadEntry): WalkResult {
  const result: WalkLevel[] = [];
  const pdIndex = Number(gva >> 22n);
  const pdeGpa = (input.cr3 & 0xffff_f000n) + BigInt(pdIndex) * 4n;
  const pde = read(pdeGpa, 4);
  const large = input.pse && (pde & PS) !== 0n;
  const first = decode("PD", pdIndex, pdeGpa, pde, large);
  result.push(first);
  if (!first.present) return { levels: result, fault: "PD entry not present" };
  if (large) {
    // PSE-36: entry bits 13..20 are physical address bits 32..39.
    const base = (pde & 0xffc0_0000n) | (((pde >> 13n) & 0xffn) << 32n);
    return { levels: result, gpa: base | (gva & 0x3f_ffffn), pageSize: 0x40_0000n };
  }
  const ptIndex = Number((gva >> 12n) & 0x3ffn);
  const pteGpa = (pde & 0xffff_f000n) + BigInt(ptIndex) * 4n;
  const pte = read(pteGpa, 4);
  const second = decode("PT", ptIndex, pteGpa, pte, false);
  result.push(second);
  if (!second.present) return { levels: result, fault: "PT entry not present" };
  return { levels: result, gpa: (pte & 0xffff_f000n) | (gva & 0xfffn), pageSize: 4096n };
}
