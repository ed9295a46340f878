/**
 * Every present mapping of one vCPU's page tables, as (virtual, physical, length) runs merged
 * where both addresses continue: what QEMU's `dump-guest-memory -p` turns into PT_LOADs.
 *
 * `vmm/page_walk.ts` walks one address down; this walks whole tables, reading each table
 * (4 KiB) once. 4-level, 5-level, PAE and 32-bit paging.
 *
 * @module
 */
import type { VirtualMapping } from "../core/mod.ts";
import { CR4_PSE } from "./paging.ts";
import { type GuestPaging, PagingMode } from "./vmmapi.ts";

/** Fills `into` from guest-physical `gpa`; false if it is not all RAM. */
export type ReadTable = (gpa: bigint, into: Uint8Array) => boolean;

const P = 1n;
const PS = 0x80n;
const ADDR_MASK = 0x000f_ffff_ffff_f000n;

/** The present mappings of `paging`, sorted by virtual address. */
export function pageMappings(paging: GuestPaging, cr4: bigint, read: ReadTable): VirtualMapping[] {
  const out: VirtualMapping[] = [];
  const add = (gva: bigint, gpa: bigint, length: bigint) => {
    const last = out[out.length - 1];
    if (last && last.gva + last.length === gva && last.gpa + last.length === gpa) {
      last.length += length;
    } else {
      out.push({ gva, gpa, length });
    }
  };
  switch (paging.pagingMode) {
    case PagingMode.LEVEL4:
      walk64(read, paging.cr3 & ADDR_MASK, [39n, 30n, 21n, 12n], 0n, 48n, add);
      break;
    case PagingMode.LEVEL5:
      walk64(read, paging.cr3 & ADDR_MASK, [48n, 39n, 30n, 21n, 12n], 0n, 57n, add);
      break;
    case PagingMode.PAE: {
      const pdpt = new Uint8Array(32);
      if (!read(paging.cr3 & 0xffff_ffe0n, pdpt)) break;
      const v = new DataView(pdpt.buffer);
      for (let i = 0; i < 4; i++) {
        const e = v.getBigUint64(i * 8, true);
        if (e & P) walk64(read, e & ADDR_MASK, [21n, 12n], BigInt(i) << 30n, 32n, add);
      }
      break;
    }
    case PagingMode.BITS32:
      walk32(read, paging.cr3 & 0xffff_f000n, (cr4 & CR4_PSE) !== 0n, add);
      break;
  }
  return out;
}

type Add = (gva: bigint, gpa: bigint, length: bigint) => void;

/** Tables of 512 8-byte entries; `shifts` from this table's level down to 4 KiB pages. */
function walk64(
  read: ReadTable,
  table: bigint,
  shifts: bigint[],
  base: bigint,
  bits: bigint,
  add: Add,
): void {
  const bytes = new Uint8Array(4096);
  if (!read(table, bytes)) return;
  const v = new DataView(bytes.buffer);
  const [shift, ...lower] = shifts as [bigint, ...bigint[]];
  for (let i = 0; i < 512; i++) {
    const e = v.getBigUint64(i * 8, true);
    if (!(e & P)) continue;
    const gva = base | (BigInt(i) << shift);
    const leaf = lower.length === 0 || ((e & PS) !== 0n && shift <= 30n);
    if (leaf) {
      const size = 1n << shift;
      add(canonical(gva, bits), e & ADDR_MASK & ~(size - 1n), size);
    } else {
      walk64(read, e & ADDR_MASK, lower, gva, bits, add);
    }
  }
}

function walk32(read: ReadTable, cr3: bigint, pse: boolean, add: Add): void {
  const pd = new Uint8Array(4096);
  if (!read(cr3, pd)) return;
  const v = new DataView(pd.buffer);
  const pt = new Uint8Array(4096);
  const w = new DataView(pt.buffer);
  for (let i = 0; i < 1024; i++) {
    const e = BigInt(v.getUint32(i * 4, true));
    if (!(e & P)) continue;
    const gva = BigInt(i) << 22n;
    if (pse && (e & PS)) {
      add(gva, (e & 0xffc0_0000n) | (((e >> 13n) & 0xffn) << 32n), 0x40_0000n);
      continue;
    }
    if (!read(e & 0xffff_f000n, pt)) continue;
    for (let j = 0; j < 1024; j++) {
      const t = BigInt(w.getUint32(j * 4, true));
      if (t & P) add(gva | (BigInt(j) << 12n), t & 0xffff_f000n, 4096n);
    }
  }
}

/** Sign-extends a `bits`-wide virtual address. */
function canonical(gva: bigint, bits: bigint): bigint {
  if (bits < 48n) return gva; // PAE: 32-bit addresses
  return (gva >> (bits - 1n)) & 1n ? gva | (~((1n << bits) - 1n) & 0xffff_ffff_ffff_ffffn) : gva;
}
