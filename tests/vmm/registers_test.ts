import assert from "node:assert/strict";
import {
  EMULATED_SCALARS,
  EMULATED_SEGMENTS,
  encodeRegister,
  Feature,
  G_REGISTER_COUNT,
  registerByName,
  REGISTERS,
  targetDescription,
} from "../../vmm/registers.ts";
import { LAPIC_TPR_GPA, RegisterReader } from "../../vmm/register_reader.ts";
import { VmReg } from "../../vmm/vmmapi.ts";
import { FakeVm } from "./fake_vmm.ts";

const GDB_AMD64_CORE = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rbp",
  "rsp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "eflags",
  "cs",
  "ss",
  "ds",
  "es",
  "fs",
  "gs",
  "st0",
  "st1",
  "st2",
  "st3",
  "st4",
  "st5",
  "st6",
  "st7",
  "fctrl",
  "fstat",
  "ftag",
  "fiseg",
  "fioff",
  "foseg",
  "fooff",
  "fop",
]; // deno-fmt-ignore

Deno.test("the register table follows gdb's amd64 order and numbers", () => {
  assert.deepEqual(REGISTERS.slice(0, 40).map((r) => r.name), GDB_AMD64_CORE);
  REGISTERS.forEach((r, i) => assert.equal(r.regnum, i));
  assert.equal(registerByName("xmm0")?.regnum, 40);
  assert.equal(registerByName("xmm15")?.regnum, 55);
  assert.equal(registerByName("mxcsr")?.regnum, 56);
  assert.equal(registerByName("fs_base")?.regnum, 57);
  assert.equal(registerByName("gs_base")?.regnum, 58);
  const sys = REGISTERS.filter((r) => r.feature === Feature.SYSTEM).map((r) => r.name);
  assert.deepEqual(sys, ["k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"]);
  const debug = REGISTERS.filter((r) => r.feature === Feature.DEBUG).map((r) => r.name);
  assert.deepEqual(debug, [
    "dr0", "dr1", "dr2", "dr3", "dr6", "dr7",
    "gdtr_base", "gdtr_limit", "idtr_base", "idtr_limit", "ldtr", "tr",
  ]); // deno-fmt-ignore
  assert.equal(new Set(REGISTERS.map((r) => r.name)).size, REGISTERS.length);
});

Deno.test("g carries exactly gdb's core and SSE sets", () => {
  assert.equal(G_REGISTER_COUNT, 57);
  for (const r of REGISTERS) assert.equal(r.inG, r.regnum < 57, r.name);
  const bytes = REGISTERS.filter((r) => r.inG).reduce((n, r) => n + r.bitsize / 8, 0);
  assert.equal(bytes, 16 * 8 + 8 + 4 * 7 + 8 * 10 + 8 * 4 + 16 * 16 + 4);
});

Deno.test("the description groups registers into features, in order, with their types", () => {
  const d = targetDescription();
  assert.equal(d.architecture, "i386:x86-64");
  assert.deepEqual(d.features.map((f) => f.name), [
    "org.gnu.gdb.i386.core",
    "org.gnu.gdb.i386.sse",
    "org.gnu.gdb.i386.segments",
    Feature.SYSTEM,
    Feature.DEBUG,
  ]);
  const all = d.features.flatMap((f) => f.registers.map((r) => r.regnum));
  assert.deepEqual(all, REGISTERS.map((r) => r.regnum));
  const [core, sse] = d.features;
  assert.match(core!.typesXml!, /<flags id="i386_eflags" size="4">.*name="ID" start="21"/);
  assert.match(sse!.typesXml!, /<union id="vec128">.*<field name="uint128" type="uint128"\/>/);
  assert.match(sse!.typesXml!, /<flags id="i386_mxcsr"/);
  for (const f of d.features) {
    for (const r of f.registers) {
      if (r.type.startsWith("i386_") && r.type !== "i386_eflags" && r.type !== "i386_mxcsr") {
        assert.match(f.typesXml ?? "", new RegExp(`id="${r.type}"`), r.name);
      }
    }
  }
  assert.equal(core!.registers.find((r) => r.name === "st0")?.type, "i387_ext");
});

Deno.test("emulated execution carries the table's rows marked for it, each read by vm_get_register", () => {
  // The general registers, RIP and RFLAGS lead (the differential test compares that head).
  assert.deepEqual(EMULATED_SCALARS.slice(0, 18), GDB_AMD64_CORE.slice(0, 18));
  assert.deepEqual(EMULATED_SCALARS.slice(18), [
    "cr0",
    "cr2",
    "cr3",
    "cr4",
    "efer",
    "dr0",
    "dr1",
    "dr2",
    "dr3",
    "dr6",
    "dr7",
  ]);
  assert.deepEqual(EMULATED_SEGMENTS, ["cs", "ss", "ds", "es", "fs", "gs", "ldtr", "tr"]);
  for (const name of [...EMULATED_SCALARS, ...EMULATED_SEGMENTS]) {
    assert.equal(registerByName(name)?.source.kind, "vmm", name);
  }
});

Deno.test("encodeRegister writes little-endian bytes of the register's width", () => {
  assert.deepEqual([...encodeRegister(32, 0x1122334455667788n)], [0x88, 0x77, 0x66, 0x55]);
  assert.deepEqual([...encodeRegister(64, 0x0102n)], [2, 1, 0, 0, 0, 0, 0, 0]);
});

function fakeWithRegisters(extended: boolean): FakeVm {
  const vm = new FakeVm({ active: [0, 1], extended });
  for (let id = 0; id <= 43; id++) vm.setReg(1, id, 0x1000n + BigInt(id));
  vm.setReg(1, VmReg.RFLAGS, 0xdead_0000_0000_0202n);
  vm.segs.set(`1:${VmReg.FS}`, { base: 0xf5f5n, limit: 0, access: 0 });
  vm.segs.set(`1:${VmReg.GS}`, { base: 0x6565n, limit: 0, access: 0 });
  vm.segs.set(`1:${VmReg.GDTR}`, { base: 0xffff_8000_0000_1000n, limit: 0x7f, access: 0 });
  vm.segs.set(`1:${VmReg.IDTR}`, { base: 0xffff_8000_0000_2000n, limit: 0xfff, access: 0 });
  vm.kernemu.set(LAPIC_TPR_GPA, 0x50n);
  vm.setReg(1, VmReg.FS_BASE, 0x15f5n);
  vm.setReg(1, VmReg.GS_BASE, 0x1565n);
  vm.setReg(1, VmReg.KGS_BASE, 0x15aan);
  vm.setReg(1, VmReg.TPR, 0x9n);
  return vm;
}

const value = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : bytes.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);

Deno.test("before FreeBSD 15: bases from seg descs, cr8 from the APIC TPR, no k_gs_base", () => {
  const vm = fakeWithRegisters(false);
  const values = new RegisterReader(vm).readAll(1);
  const get = (name: string) => value(values[registerByName(name)!.regnum]);
  assert.equal(get("rax"), 0x1000n);
  assert.equal(get("rsp"), 0x1000n + 19n);
  assert.equal(get("rip"), 0x1000n + 20n);
  assert.equal(get("eflags"), 0x202n);
  assert.equal(get("cs"), 0x1000n + 23n);
  assert.equal(get("fs_base"), 0xf5f5n);
  assert.equal(get("gs_base"), 0x6565n);
  assert.equal(get("k_gs_base"), undefined);
  assert.equal(get("cr8"), 5n);
  assert.equal(get("cr3"), 0x1000n + 16n);
  assert.equal(get("gdtr_base"), 0xffff_8000_0000_1000n);
  assert.equal(get("idtr_limit"), 0xfffn);
  assert.equal(get("dr6"), 0x1000n + 43n);
  for (const name of ["st0", "fop", "xmm0", "xmm15", "mxcsr"]) assert.equal(get(name), undefined);
  assert.equal(vm.calls.filter((c) => c === "vm_get_register_set").length, 1);
  assert.equal(vm.calls.filter((c) => c === "vm_get_register").length, 1); // the probe
  assert.equal(vm.calls.filter((c) => c === "vm_get_seg_desc").length, 4); // FS GS GDTR IDTR
});

Deno.test("FreeBSD 15: FS_BASE, GS_BASE, KGS_BASE and TPR come in the same batch", () => {
  const vm = fakeWithRegisters(true);
  const reader = new RegisterReader(vm);
  const values = reader.readAll(1);
  const get = (name: string) => value(values[registerByName(name)!.regnum]);
  assert.equal(get("fs_base"), 0x15f5n);
  assert.equal(get("gs_base"), 0x1565n);
  assert.equal(get("k_gs_base"), 0x15aan);
  assert.equal(get("cr8"), 9n);
  assert.equal(vm.calls.filter((c) => c === "vm_get_register_set").length, 1);
  assert.equal(vm.calls.filter((c) => c === "vm_get_seg_desc").length, 2); // GDTR, IDTR
  assert.equal(value(reader.read(1, registerByName("fs_base")!)), 0x15f5n);
});

Deno.test("a register the kernel rejects is unavailable, the others still read", () => {
  const vm = fakeWithRegisters(false);
  vm.rejected.add(VmReg.DR6);
  const values = new RegisterReader(vm).readAll(1);
  assert.equal(values[registerByName("dr6")!.regnum], undefined);
  assert.equal(value(values[registerByName("dr7")!.regnum]), 0x1000n + 18n);
});

Deno.test("the VM vanishing is not mistaken for an unavailable register", () => {
  const vm = fakeWithRegisters(false);
  vm.gone = true;
  assert.throws(() => new RegisterReader(vm).readAll(1), { name: "VmmError", code: "ENXIO" });
});
