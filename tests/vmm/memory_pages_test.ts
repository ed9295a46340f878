import assert from "node:assert/strict";
import { GuestMemory } from "../../vmm/memory.ts";
import { CpuMode, type GuestPaging, PagingMode } from "../../vmm/vmmapi.ts";
import { FakeVm } from "./fake_vmm.ts";

const paging: GuestPaging = {
  cr3: 0x1000n,
  cpl: 0,
  cpuMode: CpuMode.LONG,
  pagingMode: PagingMode.LEVEL4,
};
const P = 1n;
const PS = 0x80n;
const LARGE_GVA = 0x20_0000n; // PML4[0] -> PDPT[0] -> PD[1], a 2 MiB page

function put(vm: FakeVm, gpa: bigint, entry: bigint): void {
  new DataView(vm.ram[0]!.bytes.buffer).setBigUint64(Number(gpa), entry, true);
}

/** 4 MiB of RAM; page tables at 0x1000 map gva 2 MiB as one 2 MiB page at gpa `pageGpa`. */
function fake(pageGpa: bigint): FakeVm {
  const vm = new FakeVm({ ram: [{ gpa: 0n, size: 0x40_0000 }] });
  const bytes = vm.ram[0]!.bytes;
  for (let i = 0x20_0000; i < bytes.length; i++) bytes[i] = (i >> 12) & 0xff;
  put(vm, 0x1000n, 0x2000n | P);
  put(vm, 0x2000n, 0x3000n | P);
  put(vm, 0x3000n + 8n, pageGpa | P | PS);
  // What the kernel's walker answers, page by page: the identity over the same 2 MiB.
  for (let page = 0n; page < 0x20_0000n; page += 0x1000n) {
    vm.pages.set(LARGE_GVA + page, 0x20_0000n + page);
  }
  return vm;
}

const translations = (vm: FakeVm) => vm.calls.filter((c) => c === "vm_gla2gpa_nofault").length;

Deno.test("virtual reads inside one 2 MiB guest page translate once", () => {
  const vm = fake(0x20_0000n);
  const bytes = new GuestMemory(vm).readVirtual(0, paging, LARGE_GVA + 0xff0n, 0x3000);
  assert.equal(bytes.length, 0x3000);
  assert.equal(bytes[0], 0x00);
  assert.equal(bytes[0x10], 0x01); // the next 4 KiB page, read without a translation
  assert.equal(bytes[0x2fff], 0x03);
  assert.equal(translations(vm), 1);
});

Deno.test("a page walk that disagrees with the kernel falls back to 4 KiB steps", () => {
  const vm = fake(0x0n); // the tables say gpa 0; the kernel says 2 MiB: trust the kernel
  const bytes = new GuestMemory(vm).readVirtual(0, paging, LARGE_GVA + 0xff0n, 0x3000);
  assert.equal(bytes[0x10], 0x01);
  assert.equal(bytes[0x2fff], 0x03);
  assert.equal(translations(vm), 4);
});

Deno.test("with the cache, a second read of the same page translates nothing until forget", () => {
  const vm = fake(0x20_0000n);
  const memory = new GuestMemory(vm);
  const read = () => memory.readVirtual(0, paging, LARGE_GVA + 0x1000n, 0x100, { cache: true });
  assert.equal(read()[0], 0x01);
  assert.equal(read()[0], 0x01);
  assert.equal(translations(vm), 1, "one translation for both reads");
  memory.forget();
  assert.equal(read()[0], 0x01);
  assert.equal(translations(vm), 2, "translated again after forget");
  memory.readVirtual(0, paging, LARGE_GVA + 0x1000n, 0x100);
  assert.equal(translations(vm), 3, "without the cache, every read translates");
});

Deno.test("the cache is per page-table root: another CR3 translates again", () => {
  const vm = fake(0x20_0000n);
  const memory = new GuestMemory(vm);
  memory.readVirtual(0, paging, LARGE_GVA, 0x10, { cache: true });
  memory.readVirtual(0, { ...paging, cr3: 0x1000n }, LARGE_GVA, 0x10, { cache: true });
  assert.equal(translations(vm), 1);
  vm.pages.set(LARGE_GVA, 0x20_0000n);
  memory.readVirtual(0, { ...paging, cr3: 0x5000n }, LARGE_GVA, 0x10, { cache: true });
  assert.equal(translations(vm), 2);
});
