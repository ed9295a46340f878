/**
 * vmm/page_map.ts: whole page tables turned into merged (virtual, physical, length) runs, in
 * every paging mode, with tables that point outside RAM skipped.
 */
import assert from "node:assert/strict";
import { pageMappings, type ReadTable } from "../../vmm/page_map.ts";
import { CpuMode, PagingMode } from "../../vmm/vmmapi.ts";

/** 1 MiB of fake RAM at 0; reads elsewhere fail (as a table outside RAM does). */
function ram(): {
  bytes: Uint8Array;
  read: ReadTable;
  set64: (gpa: number, v: bigint) => void;
  set32: (gpa: number, v: number) => void;
} {
  const bytes = new Uint8Array(1 << 20);
  const v = new DataView(bytes.buffer);
  return {
    bytes,
    read: (gpa, into) => {
      if (gpa + BigInt(into.length) > BigInt(bytes.length)) return false;
      into.set(bytes.subarray(Number(gpa), Number(gpa) + into.length));
      return true;
    },
    set64: (gpa, value) => v.setBigUint64(gpa, value, true),
    set32: (gpa, value) => v.setUint32(gpa, value, true),
  };
}

const long = (cr3: bigint) => ({
  cr3,
  cpl: 0,
  cpuMode: CpuMode.LONG,
  pagingMode: PagingMode.LEVEL4,
});

Deno.test("4-level: 2 MiB and 4 KiB pages merge where both addresses continue; 1 GiB pages; the top half sign-extended; a table outside RAM maps nothing", () => {
  const m = ram();
  m.set64(0x1000 + 0 * 8, 0x2003n); // PML4[0] -> PDPT 0x2000
  m.set64(0x1000 + 1 * 8, 0xfee0_0003n); // PML4[1] -> outside RAM: skipped
  m.set64(0x1000 + 511 * 8, 0x5003n); // PML4[511] -> PDPT 0x5000
  m.set64(0x2000, 0x3003n); // PDPT[0] -> PD 0x3000
  m.set64(0x3000, 0x40_0083n); // PD[0]: 2 MiB page at 0x400000
  m.set64(0x3008, 0x4003n); // PD[1] -> PT 0x4000
  m.set64(0x4000, 0x60_0003n); // PT[0]: 0x200000 -> 0x600000 (continues the 2 MiB page)
  m.set64(0x4008, 0x60_1003n); // PT[1]: 0x201000 -> 0x601000
  m.set64(0x4010, 0x90_0002n); // PT[2]: not present
  m.set64(0x5000 + 510 * 8, 0x4000_0083n); // PDPT[510]: 1 GiB page at 1 GiB
  const out = pageMappings(long(0x1000n), 0n, m.read);
  assert.deepEqual(out, [
    { gva: 0n, gpa: 0x40_0000n, length: 0x20_2000n },
    { gva: 0xffff_ff80_0000_0000n + 510n * 0x4000_0000n, gpa: 0x4000_0000n, length: 0x4000_0000n },
  ]);
});

Deno.test("PAE and 32-bit paging (4 MiB pages with CR4.PSE)", () => {
  const m = ram();
  m.set64(0x1000 + 3 * 8, 0x2001n); // PDPTE[3] -> PD 0x2000
  m.set64(0x2000, 0x20_0083n); // PD[0]: 2 MiB page: 0xc0000000 -> 0x200000
  const pae = pageMappings(
    { cr3: 0x1000n, cpl: 0, cpuMode: CpuMode.PROTECTED, pagingMode: PagingMode.PAE },
    0x20n,
    m.read,
  );
  assert.deepEqual(pae, [{ gva: 0xc000_0000n, gpa: 0x20_0000n, length: 0x20_0000n }]);

  const n = ram();
  n.set32(0x3000 + 1 * 4, 0x40_0083); // PDE[1]: 4 MiB page 0x400000 -> 0x400000
  n.set32(0x3000 + 2 * 4, 0x4003); // PDE[2] -> PT 0x4000
  n.set32(0x4000, 0x80_0003); // PTE[0]: 0x800000 -> 0x800000 (continues)
  const flat32 = {
    cr3: 0x3000n,
    cpl: 0,
    cpuMode: CpuMode.PROTECTED,
    pagingMode: PagingMode.BITS32,
  };
  assert.deepEqual(pageMappings(flat32, 0x10n, n.read), [{
    gva: 0x40_0000n,
    gpa: 0x40_0000n,
    length: 0x40_1000n,
  }]);
});
