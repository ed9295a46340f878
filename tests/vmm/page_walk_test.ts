import assert from "node:assert/strict";
import { walk } from "../../vmm/page_walk.ts";
import { PagingMode } from "../../vmm/vmmapi.ts";

/** Sparse physical memory of page-table entries. */
class Tables {
  entries = new Map<bigint, bigint>();
  reads: bigint[] = [];
  set(table: bigint, index: number, entry: bigint, size = 8): this {
    this.entries.set(table + BigInt(index * size), entry);
    return this;
  }
  read = (gpa: bigint, size: 4 | 8): bigint => {
    this.reads.push(gpa);
    const v = this.entries.get(gpa) ?? 0n;
    return size === 4 ? v & 0xffff_ffffn : v;
  };
}

const P_RW = 0x3n;
const PS = 0x80n;
const idx = (gva: bigint, shift: bigint) => Number((gva >> shift) & 0x1ffn);

Deno.test("4-level: a 4 KiB page, every level's entry reported", () => {
  const gva = 0xffff_8000_0012_3456n;
  const t = new Tables()
    .set(0x1000n, idx(gva, 39n), 0x2000n | P_RW)
    .set(0x2000n, idx(gva, 30n), 0x3000n | P_RW)
    .set(0x3000n, idx(gva, 21n), 0x4000n | P_RW)
    .set(0x4000n, idx(gva, 12n), 0x8_7654_3000n | P_RW | 0x8000_0000_0000_0000n); // NX
  const r = walk(gva, { pagingMode: PagingMode.LEVEL4, cr3: 0x1000n | 0x18n, pse: true }, t.read);
  assert.deepEqual(r.levels.map((l) => l.name), ["PML4", "PDPT", "PD", "PT"]);
  assert.deepEqual(r.levels.map((l) => l.index), [256, 0, 0, 0x123]);
  assert.equal(r.levels[0]!.entryGpa, 0x1000n + 256n * 8n);
  assert.equal(r.gpa, 0x8_7654_3456n);
  assert.equal(r.pageSize, 4096n);
  assert.ok(r.levels.every((l) => l.present && l.writable && !l.user));
});

Deno.test("4-level: 2 MiB and 1 GiB pages end the walk early", () => {
  const gva2m = 0xffff_ffff_8020_1234n;
  const t = new Tables()
    .set(0x1000n, 511, 0x2000n | P_RW)
    .set(0x2000n, 510, 0x3000n | P_RW)
    .set(0x3000n, 1, 0x4060_0000n | P_RW | PS);
  const r = walk(gva2m, { pagingMode: PagingMode.LEVEL4, cr3: 0x1000n, pse: false }, t.read);
  assert.equal(r.levels.length, 3);
  assert.ok(r.levels[2]!.large);
  assert.equal(r.pageSize, 0x20_0000n);
  assert.equal(r.gpa, 0x4060_0000n + 0x1234n);

  const gva1g = 0x5234_5678n; // PML4 0, PDPT 1
  const t2 = new Tables().set(0x1000n, 0, 0x2000n | P_RW).set(0x2000n, 1, 0x8000_0000n | 0x83n);
  const r2 = walk(gva1g, { pagingMode: PagingMode.LEVEL4, cr3: 0x1000n, pse: false }, t2.read);
  assert.equal(r2.levels.length, 2);
  assert.equal(r2.pageSize, 0x4000_0000n);
  assert.equal(r2.gpa, 0x8000_0000n + 0x1234_5678n);
});

Deno.test("4-level: a missing entry and a non-canonical address are faults", () => {
  const t = new Tables().set(0x1000n, 0, 0x2000n | P_RW);
  const r = walk(0x1000n, { pagingMode: PagingMode.LEVEL4, cr3: 0x1000n, pse: false }, t.read);
  assert.equal(r.gpa, undefined);
  assert.equal(r.levels.length, 2);
  assert.match(r.fault!, /PDPT entry not present/);
  const bad = walk(0x0000_8000_0000_0000n, {
    pagingMode: PagingMode.LEVEL4,
    cr3: 0x1000n,
    pse: false,
  }, t.read);
  assert.match(bad.fault!, /not canonical/);
  assert.equal(bad.levels.length, 0);
});

Deno.test("5-level (LA57): five levels, 57-bit canonical addresses", () => {
  const gva = 0xff12_3456_789a_b000n; // canonical for 57 bits (bit 56 set, 63..57 set)
  const t = new Tables()
    .set(0x1000n, idx(gva, 48n), 0x2000n | P_RW | 4n)
    .set(0x2000n, idx(gva, 39n), 0x3000n | P_RW | 4n)
    .set(0x3000n, idx(gva, 30n), 0x4000n | P_RW | 4n)
    .set(0x4000n, idx(gva, 21n), 0x5000n | P_RW | 4n)
    .set(0x5000n, idx(gva, 12n), 0x7_0000n | P_RW | 4n);
  const r = walk(gva, { pagingMode: PagingMode.LEVEL5, cr3: 0x1000n, pse: false }, t.read);
  assert.deepEqual(r.levels.map((l) => l.name), ["PML5", "PML4", "PDPT", "PD", "PT"]);
  assert.equal(r.levels[0]!.index, 0x112);
  assert.ok(r.levels.every((l) => l.user));
  assert.equal(r.gpa, 0x7_0000n);
  // Canonical for 4-level paging but not a 57-bit address's sign extension:
  const bad = walk(0xffff_8000_0000_0000n & ~(1n << 56n), {
    pagingMode: PagingMode.LEVEL5,
    cr3: 0x1000n,
    pse: false,
  }, t.read);
  assert.match(bad.fault!, /not canonical \(57-bit/);
});

Deno.test("PAE: PDPTE from a 32-byte aligned CR3, 4 KiB and 2 MiB pages", () => {
  const gva = 0xc012_3456n; // PDPT 3, PD 0x000, PT 0x123
  const t = new Tables()
    .set(0x1fe0n, 3, 0x5000n | 1n)
    .set(0x5000n, 0, 0x6000n | P_RW)
    .set(0x6000n, 0x123, 0x1234_5000n | P_RW)
    .set(0x5000n, 1, 0x0aa0_0000n | P_RW | PS);
  const r = walk(gva, { pagingMode: PagingMode.PAE, cr3: 0x1fe0n, pse: false }, t.read);
  assert.deepEqual(r.levels.map((l) => l.name), ["PDPTE", "PD", "PT"]);
  assert.equal(r.gpa, 0x1234_5456n);
  const big = walk(0xc02f_ffffn, { pagingMode: PagingMode.PAE, cr3: 0x1fe0n, pse: false }, t.read);
  assert.equal(big.pageSize, 0x20_0000n);
  assert.equal(big.gpa, 0x0aa0_0000n + 0xf_ffffn);
});

Deno.test("32-bit: 4 KiB pages, and 4 MiB PSE pages with PSE-36 high bits", () => {
  const t = new Tables()
    .set(0x3000n, 0x300, 0x4000n | P_RW, 4) // PDE for 0xc0000000
    .set(0x4000n, 0x005, 0x0012_3000n | P_RW, 4)
    .set(0x3000n, 0x301, 0x0840_0000n | P_RW | PS | (0x3n << 13n), 4); // 4 MiB at 3_0840_0000
  const small = walk(
    0xc000_5abcn,
    { pagingMode: PagingMode.BITS32, cr3: 0x3000n, pse: true },
    t.read,
  );
  assert.deepEqual(small.levels.map((l) => l.name), ["PD", "PT"]);
  assert.equal(small.levels[1]!.entryGpa, 0x4000n + 5n * 4n);
  assert.equal(small.gpa, 0x0012_3abcn);
  const large = walk(
    0xc045_6789n,
    { pagingMode: PagingMode.BITS32, cr3: 0x3000n, pse: true },
    t.read,
  );
  assert.equal(large.levels.length, 1);
  assert.equal(large.pageSize, 0x40_0000n);
  assert.equal(large.gpa, 0x3_0840_0000n + 0x05_6789n);
  // Without CR4.PSE the PS bit is ignored and the entry points at a page table.
  const nopse = walk(
    0xc045_6789n,
    { pagingMode: PagingMode.BITS32, cr3: 0x3000n, pse: false },
    t.read,
  );
  assert.equal(nopse.levels.length, 2);
});

Deno.test("no paging: the address is the physical address", () => {
  const r = walk(0x7c00n, { pagingMode: PagingMode.FLAT, cr3: 0n, pse: false }, () => 0n);
  assert.equal(r.gpa, 0x7c00n);
  assert.deepEqual(r.levels, []);
});
