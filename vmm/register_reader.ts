/**
 * Reads the register table's values for one vCPU, in as few libvmmapi calls as possible.
 *
 * Everything vm_get_register can return comes from ONE vm_get_register_set; segment bases
 * and descriptor tables add a vm_get_seg_desc each, and cr8 (before FreeBSD 15) one kernemu
 * read of the local APIC TPR. Whether the kernel knows FreeBSD 15's FS_BASE/GS_BASE/KGS_BASE/TPR
 * numbers is probed once (EINVAL means it does not).
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import { encodeRegister, type RegisterDef, REGISTERS } from "./registers.ts";
import { isGone, type SegDesc, type VmHandle, VmmError, VmReg } from "./vmmapi.ts";
import { inX2apicMode, X2APIC_NOTE } from "./x2apic.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** The local APIC's TPR register (guest-physical), read through kernemu for cr8. */
export const LAPIC_TPR_GPA = 0xfee0_0080n;

/** Register values indexed by gdb number; undefined where unavailable. */
export type RegisterValues = (Uint8Array | undefined)[];

/** Reads registers of any vCPU of one VM; one instance per open VM. */
export class RegisterReader {
  #vm: VmHandle;
  #extended: boolean | undefined;
  #plain: { def: RegisterDef; id: number }[] | undefined;
  #ids = new Int32Array(0);
  #values = new BigUint64Array(0);
  /** vCPUs whose x2APIC mode (no cr8 through the TPR) was already reported. */
  #x2apicNoted = new Set<number>();
  /** During readAll: each segment's descriptor, read once for both base and limit. */
  #descs: Map<number, SegDesc> | undefined;

  constructor(vm: VmHandle) {
    this.#vm = vm;
  }

  /** Whether the kernel has FreeBSD 15's FS_BASE … TPR register numbers (probed once). */
  extended(vcpu: number): boolean {
    if (this.#extended === undefined) {
      try {
        this.#vm.getRegister(vcpu, VmReg.FS_BASE);
        this.#extended = true;
      } catch (error) {
        if (!(error instanceof VmmError) || error.code !== "EINVAL") throw error;
        this.#extended = false;
      }
      log.debug("FS_BASE/GS_BASE/KGS_BASE/TPR register numbers: {state}", {
        state: this.#extended ? "available (FreeBSD 15 or later)" : "absent, using fallbacks",
      });
    }
    return this.#extended;
  }

  /** The registers one vm_get_register_set call can read, with their vmm ids. */
  #plainRegisters(vcpu: number): { def: RegisterDef; id: number }[] {
    if (this.#plain === undefined) {
      const extended = this.extended(vcpu);
      const plain: { def: RegisterDef; id: number }[] = [];
      for (const def of REGISTERS) {
        const id = vmmId(def, extended);
        if (id !== undefined) plain.push({ def, id });
      }
      this.#plain = plain;
      this.#ids = Int32Array.from(plain.map((p) => p.id));
      this.#values = new BigUint64Array(plain.length);
    }
    return this.#plain;
  }

  /** Every register of `vcpu`, indexed by gdb register number. */
  readAll(vcpu: number): RegisterValues {
    const values: RegisterValues = new Array(REGISTERS.length).fill(undefined);
    const plain = this.#plainRegisters(vcpu);
    try {
      this.#vm.getRegisterSet(vcpu, this.#ids, this.#values);
      plain.forEach(({ def }, i) => {
        values[def.regnum] = encodeRegister(def.bitsize, this.#values[i]!);
      });
    } catch (error) {
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      // One id the kernel rejects spoils the batch: read one by one, keeping what works.
      log.debug("vm_get_register_set failed ({error}); reading one by one", {
        error: error.message,
      });
      for (const { def } of plain) values[def.regnum] = this.read(vcpu, def);
    }
    this.#descs = new Map();
    try {
      for (const def of REGISTERS) {
        if (values[def.regnum] === undefined && vmmId(def, this.extended(vcpu)) === undefined) {
          values[def.regnum] = this.read(vcpu, def);
        }
      }
    } finally {
      this.#descs = undefined;
    }
    return values;
  }

  /** One register; undefined if this VM cannot provide it. */
  read(vcpu: number, def: RegisterDef): Uint8Array | undefined {
    const value = this.#readValue(vcpu, def);
    return value === undefined ? undefined : encodeRegister(def.bitsize, value);
  }

  #segDesc(vcpu: number, segment: number): SegDesc {
    let desc = this.#descs?.get(segment);
    if (desc === undefined) {
      desc = this.#vm.getSegDesc(vcpu, segment);
      this.#descs?.set(segment, desc);
    }
    return desc;
  }

  /**
   * cr8 before FreeBSD 15: the local APIC's TPR through kernemu, unless the local APIC is in
   * x2APIC mode, where kernemu reads 0 (unavailable then, and said once per vCPU).
   */
  #tprFallback(vcpu: number): bigint | undefined {
    const tpr = this.#vm.readKernemu(vcpu, LAPIC_TPR_GPA, 4);
    if (tpr === 0n && inX2apicMode(this.#vm, vcpu)) {
      if (!this.#x2apicNoted.has(vcpu)) {
        this.#x2apicNoted.add(vcpu);
        log.info("vCPU {vcpu}: cr8 is unavailable: {note}", { vcpu, note: X2APIC_NOTE });
      }
      return undefined;
    }
    return (tpr >> 4n) & 0xfn;
  }

  #readValue(vcpu: number, def: RegisterDef): bigint | undefined {
    const source = def.source;
    const extended = this.extended(vcpu);
    return optional(() => {
      const id = vmmId(def, extended);
      if (id !== undefined) return this.#vm.getRegister(vcpu, id);
      switch (source.kind) {
        case "segbase":
          return this.#segDesc(vcpu, source.segment).base;
        case "desc": {
          const desc = this.#segDesc(vcpu, source.segment);
          return source.field === "base" ? desc.base : BigInt(desc.limit);
        }
        case "cr8":
          return this.#tprFallback(vcpu);
        default:
          return undefined;
      }
    });
  }
}

/** The vm_get_register number that reads `def` directly, if there is one on this kernel. */
function vmmId(def: RegisterDef, extended: boolean): number | undefined {
  const source = def.source;
  switch (source.kind) {
    case "vmm":
      return source.id;
    case "segbase":
    case "vmm15":
      return extended ? source.id : undefined;
    case "cr8":
      return extended ? VmReg.TPR : undefined;
    default:
      return undefined;
  }
}

/** Runs `read`; a VmmError that does not mean "VM gone" makes the register unavailable. */
function optional(read: () => bigint | undefined): bigint | undefined {
  try {
    return read();
  } catch (error) {
    if (isGone(error) || !(error instanceof VmmError)) throw error;
    log.debug("register unavailable: {error}", { error: error.message });
    return undefined;
  }
}
