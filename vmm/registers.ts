/**
 * The x86-64 register table: ONE data table that drives the `g` layout, `p` reads, target.xml
 * and the register set of emulated execution (emu/'s CpuState).
 *
 * Order and names follow gdb's amd64 target descriptions (features/i386/64bit-core.xml,
 * 64bit-sse.xml, 64bit-segments.xml), so the gdb register number of an entry is its position.
 * The system registers use QEMU's names (k_gs_base, cr0, cr2, cr3, cr4, cr8, efer) so that
 * `$cr3` means the same in both. libvmmapi has no call for x87 or SSE state: those registers
 * are declared (gdb's amd64 description requires them) and always read as unavailable.
 *
 * @module
 */
import type { FeatureInfo, RegisterInfo, TargetDescription } from "../rsp/target.ts";
import { VmReg } from "./vmmapi.ts";

/** Where a register's value comes from. */
export type RegisterSource =
  /** vm_get_register(id), truncated to the register's width. */
  | { kind: "vmm"; id: number }
  /**
   * A segment base: VM_REG_FS_BASE-style register `id` on FreeBSD 15 and later, else the base
   * of segment `segment` from vm_get_seg_desc.
   */
  | { kind: "segbase"; id: number; segment: number }
  /** A register only FreeBSD 15 and later expose (KGS_BASE); unavailable before. */
  | { kind: "vmm15"; id: number }
  /** Base or limit of a descriptor-table register, from vm_get_seg_desc. */
  | { kind: "desc"; segment: number; field: "base" | "limit" }
  /** cr8: VM_REG_TPR on 15 and later, else the local APIC TPR through kernemu. */
  | { kind: "cr8" }
  /** No libvmmapi call reads it (x87, SSE). */
  | { kind: "none" };

/**
 * How emulated execution (emu/emulator.ts's CpuState) carries a register: as a plain value
 * ("scalar"), or as a segment register with its hidden part ("segment"). Rows without it are
 * carried otherwise (fs_base, gs_base, k_gs_base, GDTR, IDTR) or not at all (cr8, x87, SSE:
 * the emulator refuses the instructions that use them).
 */
export type EmuSlot = "scalar" | "segment";

/** One row of the table. */
export interface RegisterDef extends RegisterInfo {
  /** target.xml feature this register belongs to. */
  feature: string;
  source: RegisterSource;
  emu?: EmuSlot;
}

/** gdb's standard feature names, plus this project's two for the system registers. */
export const Feature = {
  CORE: "org.gnu.gdb.i386.core",
  SSE: "org.gnu.gdb.i386.sse",
  SEGMENTS: "org.gnu.gdb.i386.segments",
  SYSTEM: "org.bhyve-gdbstub.x86.sys",
  DEBUG: "org.bhyve-gdbstub.x86.debug",
} as const;

type Row = readonly [
  name: string,
  bitsize: number,
  type: string,
  group: string | undefined,
  source: RegisterSource,
  emu?: EmuSlot,
];

const vmm = (id: number): RegisterSource => ({ kind: "vmm", id });
const none: RegisterSource = { kind: "none" };

const CORE = [
  ["rax", 64, "int64", "general", vmm(VmReg.RAX), "scalar"],
  ["rbx", 64, "int64", "general", vmm(VmReg.RBX), "scalar"],
  ["rcx", 64, "int64", "general", vmm(VmReg.RCX), "scalar"],
  ["rdx", 64, "int64", "general", vmm(VmReg.RDX), "scalar"],
  ["rsi", 64, "int64", "general", vmm(VmReg.RSI), "scalar"],
  ["rdi", 64, "int64", "general", vmm(VmReg.RDI), "scalar"],
  ["rbp", 64, "data_ptr", "general", vmm(VmReg.RBP), "scalar"],
  ["rsp", 64, "data_ptr", "general", vmm(VmReg.RSP), "scalar"],
  ["r8", 64, "int64", "general", vmm(VmReg.R8), "scalar"],
  ["r9", 64, "int64", "general", vmm(VmReg.R9), "scalar"],
  ["r10", 64, "int64", "general", vmm(VmReg.R10), "scalar"],
  ["r11", 64, "int64", "general", vmm(VmReg.R11), "scalar"],
  ["r12", 64, "int64", "general", vmm(VmReg.R12), "scalar"],
  ["r13", 64, "int64", "general", vmm(VmReg.R13), "scalar"],
  ["r14", 64, "int64", "general", vmm(VmReg.R14), "scalar"],
  ["r15", 64, "int64", "general", vmm(VmReg.R15), "scalar"],
  ["rip", 64, "code_ptr", "general", vmm(VmReg.RIP), "scalar"],
  ["eflags", 32, "i386_eflags", "general", vmm(VmReg.RFLAGS), "scalar"],
  ["cs", 32, "int32", "general", vmm(VmReg.CS), "segment"],
  ["ss", 32, "int32", "general", vmm(VmReg.SS), "segment"],
  ["ds", 32, "int32", "general", vmm(VmReg.DS), "segment"],
  ["es", 32, "int32", "general", vmm(VmReg.ES), "segment"],
  ["fs", 32, "int32", "general", vmm(VmReg.FS), "segment"],
  ["gs", 32, "int32", "general", vmm(VmReg.GS), "segment"],
  ...[0, 1, 2, 3, 4, 5, 6, 7].map((i): Row => [`st${i}`, 80, "i387_ext", "float", none]),
  ...["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"].map(
    (name): Row => [name, 32, "int", "float", none],
  ),
] as const satisfies readonly Row[];

const SSE = [
  ...Array.from({ length: 16 }, (_, i): Row => [`xmm${i}`, 128, "vec128", "vector", none]),
  ["mxcsr", 32, "i386_mxcsr", "vector", none],
] as const satisfies readonly Row[];

const SEGMENTS = [
  ["fs_base", 64, "int64", "system", { kind: "segbase", id: VmReg.FS_BASE, segment: VmReg.FS }],
  ["gs_base", 64, "int64", "system", { kind: "segbase", id: VmReg.GS_BASE, segment: VmReg.GS }],
] as const satisfies readonly Row[];

const SYSTEM = [
  ["k_gs_base", 64, "int64", "system", { kind: "vmm15", id: VmReg.KGS_BASE }],
  ["cr0", 64, "i386_cr0", "system", vmm(VmReg.CR0), "scalar"],
  ["cr2", 64, "data_ptr", "system", vmm(VmReg.CR2), "scalar"],
  ["cr3", 64, "int64", "system", vmm(VmReg.CR3), "scalar"],
  ["cr4", 64, "i386_cr4", "system", vmm(VmReg.CR4), "scalar"],
  ["cr8", 64, "int64", "system", { kind: "cr8" }],
  ["efer", 64, "i386_efer", "system", vmm(VmReg.EFER), "scalar"],
] as const satisfies readonly Row[];

const DEBUG = [
  ["dr0", 64, "data_ptr", "system", vmm(VmReg.DR0), "scalar"],
  ["dr1", 64, "data_ptr", "system", vmm(VmReg.DR1), "scalar"],
  ["dr2", 64, "data_ptr", "system", vmm(VmReg.DR2), "scalar"],
  ["dr3", 64, "data_ptr", "system", vmm(VmReg.DR3), "scalar"],
  ["dr6", 64, "int64", "system", vmm(VmReg.DR6), "scalar"],
  ["dr7", 64, "int64", "system", vmm(VmReg.DR7), "scalar"],
  ["gdtr_base", 64, "data_ptr", "system", { kind: "desc", segment: VmReg.GDTR, field: "base" }],
  ["gdtr_limit", 32, "int32", "system", { kind: "desc", segment: VmReg.GDTR, field: "limit" }],
  ["idtr_base", 64, "data_ptr", "system", { kind: "desc", segment: VmReg.IDTR, field: "base" }],
  ["idtr_limit", 32, "int32", "system", { kind: "desc", segment: VmReg.IDTR, field: "limit" }],
  ["ldtr", 32, "int32", "system", vmm(VmReg.LDTR), "segment"],
  ["tr", 32, "int32", "system", vmm(VmReg.TR), "segment"],
] as const satisfies readonly Row[];

/** How many leading registers travel in `g`: gdb's core and SSE sets (rax … mxcsr). */
export const G_REGISTER_COUNT = CORE.length + SSE.length;

function build(): RegisterDef[] {
  const groups: [string, readonly Row[]][] = [
    [Feature.CORE, CORE],
    [Feature.SSE, SSE],
    [Feature.SEGMENTS, SEGMENTS],
    [Feature.SYSTEM, SYSTEM],
    [Feature.DEBUG, DEBUG],
  ];
  const defs: RegisterDef[] = [];
  for (const [feature, rows] of groups) {
    for (const [name, bitsize, type, group, source, emu] of rows) {
      const regnum = defs.length;
      const def: RegisterDef = {
        name,
        bitsize,
        regnum,
        type,
        inG: regnum < CORE.length + SSE.length,
        feature,
        source,
      };
      if (group !== undefined) def.group = group;
      if (emu !== undefined) def.emu = emu;
      defs.push(def);
    }
  }
  return defs;
}

/** Every register, indexed by gdb register number. */
export const REGISTERS: readonly RegisterDef[] = build();

type AnyRow =
  | typeof CORE[number]
  | typeof SSE[number]
  | typeof SEGMENTS[number]
  | typeof SYSTEM[number]
  | typeof DEBUG[number];

/** The gdb names of the registers emulated execution carries as plain values. */
export type EmulatedScalar = Extract<AnyRow, { 5: "scalar" }>[0];
/** The gdb names of the segment registers emulated execution carries with their hidden parts. */
export type EmulatedSegment = Extract<AnyRow, { 5: "segment" }>[0];

/** Rows marked "scalar", in table order (the general registers and RIP, RFLAGS come first). */
export const EMULATED_SCALARS = REGISTERS.filter((r) => r.emu === "scalar")
  .map((r) => r.name) as readonly EmulatedScalar[];
/** Rows marked "segment", in table order. */
export const EMULATED_SEGMENTS = REGISTERS.filter((r) => r.emu === "segment")
  .map((r) => r.name) as readonly EmulatedSegment[];

/** Looks a register up by gdb name. */
export function registerByName(name: string): RegisterDef | undefined {
  return REGISTERS.find((r) => r.name === name);
}

const flags = (id: string, size: number, bits: [string, number][]) =>
  `<flags id="${id}" size="${size}">` +
  bits.map(([name, bit]) => `<field name="${name}" start="${bit}" end="${bit}"/>`).join("") +
  `</flags>`;

const EFLAGS_XML = flags("i386_eflags", 4, [
  ["CF", 0],
  ["", 1],
  ["PF", 2],
  ["AF", 4],
  ["ZF", 6],
  ["SF", 7],
  ["TF", 8],
  ["IF", 9],
  ["DF", 10],
  ["OF", 11],
  ["NT", 14],
  ["RF", 16],
  ["VM", 17],
  ["AC", 18],
  ["VIF", 19],
  ["VIP", 20],
  ["ID", 21],
]);

// The vec128 union as older gdb versions and lldb understand it (no bfloat16/half members).
const SSE_XML = [
  `<vector id="v4f" type="ieee_single" count="4"/>`,
  `<vector id="v2d" type="ieee_double" count="2"/>`,
  `<vector id="v16i8" type="int8" count="16"/>`,
  `<vector id="v8i16" type="int16" count="8"/>`,
  `<vector id="v4i32" type="int32" count="4"/>`,
  `<vector id="v2i64" type="int64" count="2"/>`,
  `<union id="vec128">`,
  `<field name="v4_float" type="v4f"/>`,
  `<field name="v2_double" type="v2d"/>`,
  `<field name="v16_int8" type="v16i8"/>`,
  `<field name="v8_int16" type="v8i16"/>`,
  `<field name="v4_int32" type="v4i32"/>`,
  `<field name="v2_int64" type="v2i64"/>`,
  `<field name="uint128" type="uint128"/>`,
  `</union>`,
  flags("i386_mxcsr", 4, [
    ["IE", 0],
    ["DE", 1],
    ["ZE", 2],
    ["OE", 3],
    ["UE", 4],
    ["PE", 5],
    ["DAZ", 6],
    ["IM", 7],
    ["DM", 8],
    ["ZM", 9],
    ["OM", 10],
    ["UM", 11],
    ["PM", 12],
    ["FZ", 15],
  ]),
].join("");

const SYSTEM_XML = [
  flags("i386_cr0", 8, [
    ["PE", 0],
    ["MP", 1],
    ["EM", 2],
    ["TS", 3],
    ["ET", 4],
    ["NE", 5],
    ["WP", 16],
    ["AM", 18],
    ["NW", 29],
    ["CD", 30],
    ["PG", 31],
  ]),
  flags("i386_cr4", 8, [
    ["VME", 0],
    ["PVI", 1],
    ["TSD", 2],
    ["DE", 3],
    ["PSE", 4],
    ["PAE", 5],
    ["MCE", 6],
    ["PGE", 7],
    ["PCE", 8],
    ["OSFXSR", 9],
    ["OSXMMEXCPT", 10],
    ["UMIP", 11],
    ["LA57", 12],
    ["VMXE", 13],
    ["SMXE", 14],
    ["FSGSBASE", 16],
    ["PCIDE", 17],
    ["OSXSAVE", 18],
    ["SMEP", 20],
    ["SMAP", 21],
    ["PKE", 22],
  ]),
  flags("i386_efer", 8, [["SCE", 0], ["LME", 8], ["LMA", 10], ["NXE", 11], ["SVME", 12]]),
].join("");

const TYPES_XML: Record<string, string> = {
  [Feature.CORE]: EFLAGS_XML,
  [Feature.SSE]: SSE_XML,
  [Feature.SYSTEM]: SYSTEM_XML,
};

let description: TargetDescription | undefined;

/** The target description: architecture i386:x86-64, the features in register order. */
export function targetDescription(): TargetDescription {
  description ??= buildDescription();
  return description;
}

function buildDescription(): TargetDescription {
  const features: FeatureInfo[] = [];
  for (const def of REGISTERS) {
    let feature = features.at(-1);
    if (feature === undefined || feature.name !== def.feature) {
      feature = { name: def.feature, registers: [] };
      const types = TYPES_XML[def.feature];
      if (types !== undefined) feature.typesXml = types;
      features.push(feature);
    }
    const info: RegisterInfo = {
      name: def.name,
      bitsize: def.bitsize,
      regnum: def.regnum,
      type: def.type,
      inG: def.inG,
    };
    if (def.group !== undefined) info.group = def.group;
    (feature.registers as RegisterInfo[]).push(info);
  }
  return { architecture: "i386:x86-64", features };
}

/** A register value as `bitsize / 8` little-endian bytes (truncating wider values). */
export function encodeRegister(bitsize: number, value: bigint): Uint8Array {
  const bytes = new Uint8Array(bitsize / 8);
  let v = value;
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return bytes;
}
