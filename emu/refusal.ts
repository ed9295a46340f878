/**
 * Which instructions an emulated run refuses, decided from their bytes before they execute.
 *
 * An instruction is refused when emulating it would not do what the real CPU does, because the
 * state it depends on is out of reach from outside bhyve (x87/SSE/AVX registers, MSRs, the TSC,
 * the random number generator, CPUID as bhyve configures it), because it talks to a device
 * (port I/O), because it would wait for an interrupt (HLT, MWAIT), or because its effect cannot
 * be written back through libvmmapi (segment register loads change hidden descriptor state).
 *
 * @module
 */

/** Why the instruction in `bytes` (up to 15 bytes at RIP) is refused, or undefined. */
export function refusal(
  bytes: Uint8Array,
  long: boolean,
  knownKernelGsBase: boolean,
): string | undefined {
  let i = 0;
  let rep = false;
  // Legacy prefixes, then (in 64-bit mode) one REX prefix.
  while (i < bytes.length && LEGACY_PREFIXES.has(bytes[i]!)) {
    if (bytes[i] === 0xf3) rep = true;
    i++;
  }
  let rexR = false;
  if (long && i < bytes.length && (bytes[i]! & 0xf0) === 0x40) {
    rexR = (bytes[i]! & 4) !== 0;
    i++;
  }
  const op = bytes[i];
  if (op === undefined) return "an instruction too long to decode";
  const next = bytes[i + 1] ?? 0;
  const modrmReg = (next >> 3) & 7;
  const modrmIsReg = (next & 0xc0) === 0xc0;
  if (op !== 0x0f) return oneByte(op, long, next, modrmReg, modrmIsReg);
  const op2 = next;
  const m = bytes[i + 2] ?? 0;
  const reg = (m >> 3) & 7;
  const isReg = (m & 0xc0) === 0xc0;
  return twoByte(op2, m, reg, isReg, rep, rexR, knownKernelGsBase);
}

const LEGACY_PREFIXES = new Set([0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67]);

const FPU = "x87/SSE/AVX state cannot be read through libvmmapi";
const SEGMENT = "it loads a segment register, whose hidden part cannot be written back here";
const MSR = "model-specific registers cannot be read through libvmmapi";

function oneByte(
  op: number,
  long: boolean,
  modrm: number,
  reg: number,
  isReg: boolean,
): string | undefined {
  if (op >= 0xd8 && op <= 0xdf) return `x87 instruction: ${FPU}`;
  if (op === 0x9b) return `FWAIT: ${FPU}`;
  if (op === 0xc4 || op === 0xc5) {
    // VEX in 64-bit mode, and in 32-bit mode when ModRM's mod is 11 (else LES/LDS).
    if (long || isReg) return `AVX (VEX-encoded) instruction: ${FPU}`;
    return `${op === 0xc4 ? "LES" : "LDS"}: ${SEGMENT}`;
  }
  if (op === 0x62 && long) return `AVX-512 (EVEX-encoded) instruction: ${FPU}`;
  if (op === 0xf4) return "HLT: it waits for an interrupt, which an emulated run never delivers";
  if ((op >= 0xe4 && op <= 0xe7) || (op >= 0xec && op <= 0xef)) {
    return `${op & 2 ? "OUT" : "IN"}: port I/O goes to bhyve's device models`;
  }
  if (op >= 0x6c && op <= 0x6f) {
    return `${op & 2 ? "OUTS" : "INS"}: port I/O goes to bhyve's device models`;
  }
  if (op === 0x8e) return `MOV to a segment register: ${SEGMENT}`;
  if (!long && (op === 0x07 || op === 0x17 || op === 0x1f)) return `POP segment: ${SEGMENT}`;
  if (!long && (op === 0xea || op === 0x9a)) return `far JMP/CALL: ${SEGMENT}`;
  if (op === 0xca || op === 0xcb) return `far RET: ${SEGMENT}`;
  if (op === 0xcf) return `IRET: ${SEGMENT}`;
  if (op === 0xff && (reg === 3 || reg === 5) && !isReg) return `far CALL/JMP: ${SEGMENT}`;
  void modrm;
  return undefined;
}

function twoByte(
  op: number,
  modrm: number,
  reg: number,
  isReg: boolean,
  rep: boolean,
  rexR: boolean,
  knownKernelGsBase: boolean,
): string | undefined {
  switch (op) {
    case 0x05:
      return `SYSCALL: ${MSR} (STAR, LSTAR, SFMASK)`;
    case 0x07:
      return `SYSRET: ${MSR} (STAR)`;
    case 0x34:
      return `SYSENTER: ${MSR}`;
    case 0x35:
      return `SYSEXIT: ${MSR}`;
    case 0x30:
      return `WRMSR: ${MSR}`;
    case 0x32:
      return `RDMSR: ${MSR}`;
    case 0x31:
      return "RDTSC: the guest's time-stamp counter cannot be read from outside bhyve";
    case 0x33:
      return "RDPMC: performance counters cannot be read from outside bhyve";
    case 0xa2:
      return "CPUID: its answers are bhyve's, which cannot be read from outside bhyve";
    case 0x37:
      return "GETSEC: not emulated";
    case 0xaa:
      return "RSM: not emulated";
    case 0x0e:
    case 0x0f:
      return `3DNow!/FEMMS: ${FPU}`;
    case 0xa1:
    case 0xa9:
      return `POP FS/GS: ${SEGMENT}`;
    case 0xb2:
    case 0xb4:
    case 0xb5:
      return `LSS/LFS/LGS: ${SEGMENT}`;
    case 0x00:
      if (reg === 2 || reg === 3) return `LLDT/LTR: ${SEGMENT}`;
      return undefined;
    case 0x20:
    case 0x22:
      if (rexR && reg === 0) return "MOV CR8: the TPR lives in bhyve's local APIC";
      return undefined;
    case 0x01:
      return group7(modrm, knownKernelGsBase);
    case 0xae:
      if (isReg) return rep ? undefined : undefined; // fences, RD/WRFSBASE
      if (reg === 7) return undefined; // CLFLUSH
      return `FXSAVE/FXRSTOR/LDMXCSR/STMXCSR/XSAVE/XRSTOR: ${FPU}`;
    case 0xc7:
      if (isReg && reg === 6) return "RDRAND: its random numbers cannot be reproduced";
      if (isReg && reg === 7) {
        return rep
          ? "RDPID: it reads TSC_AUX, a model-specific register"
          : "RDSEED: its random numbers cannot be reproduced";
      }
      if (reg >= 3) return `XSAVES/XRSTORS/VMX instruction: ${FPU}`;
      return undefined;
    case 0x78:
    case 0x79:
      return "VMREAD/VMWRITE: not emulated";
  }
  if (
    (op >= 0x10 && op <= 0x17) || (op >= 0x28 && op <= 0x2f) || (op >= 0x50 && op <= 0x7f) ||
    op === 0xc2 || (op >= 0xc4 && op <= 0xc6) || (op >= 0xd0 && op <= 0xfe) || op === 0x3a
  ) {
    return `SSE/MMX instruction: ${FPU}`;
  }
  if (op === 0x38) {
    // 0F 38 F0-F6 are MOVBE, CRC32, ADCX/ADOX and friends on general registers.
    return modrm >= 0xf0 ? undefined : `SSE instruction: ${FPU}`;
  }
  return undefined;
}

/** 0F 01: the system group (by ModRM). */
function group7(modrm: number, knownKernelGsBase: boolean): string | undefined {
  switch (modrm) {
    case 0xc8:
      return "MONITOR: it arms a wait for an interrupt-like event";
    case 0xc9:
      return "MWAIT: it waits for an interrupt, which an emulated run never delivers";
    case 0xfa:
    case 0xfb:
      return "MONITORX/MWAITX: it waits for an event an emulated run never delivers";
    case 0xf8:
      return knownKernelGsBase ? undefined : "SWAPGS: IA32_KERNEL_GS_BASE cannot be read " +
        "through libvmmapi before FreeBSD 15";
    case 0xf9:
      return "RDTSCP: the guest's time-stamp counter cannot be read from outside bhyve";
    case 0xd0:
    case 0xd1:
      return `XGETBV/XSETBV: ${FPU}`;
    case 0xee:
    case 0xef:
      return "RDPKRU/WRPKRU: PKRU cannot be read through libvmmapi";
  }
  if ((modrm >= 0xc0 && modrm <= 0xc4) || (modrm >= 0xd8 && modrm <= 0xdf)) {
    return "VMX/SVM instruction: not emulated";
  }
  return undefined;
}

/**
 * For a REP-prefixed string instruction (MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS): the mask of
 * its count register (CX, ECX or RCX by address size); undefined for anything else. A REP
 * instruction runs one iteration per pass; the CPU leaves it when the count reaches zero.
 */
export function repCountMask(bytes: Uint8Array, long: boolean): bigint | undefined {
  let i = 0;
  let rep = false;
  let sizeOverride = false;
  for (; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0xf2 || b === 0xf3) rep = true;
    else if (b === 0x67) sizeOverride = true;
    else if (!LEGACY_PREFIXES.has(b) && !(long && (b & 0xf0) === 0x40)) break;
  }
  const op = bytes[i] ?? 0;
  const string = (op >= 0xa4 && op <= 0xa7) || (op >= 0xaa && op <= 0xaf) ||
    (op >= 0x6c && op <= 0x6f);
  if (!rep || !string) return undefined;
  if (long) return sizeOverride ? 0xffff_ffffn : 0xffff_ffff_ffff_ffffn;
  return sizeOverride ? 0xffffn : 0xffff_ffffn;
}
