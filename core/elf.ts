/**
 * ELF64 structures of a core file (little-endian x86-64), encoded into byte arrays.
 *
 * Field offsets are the System V gABI's (Elf64_Ehdr, Elf64_Phdr, Elf64_Shdr, Elf64_Nhdr):
 * https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.eheader.html
 *
 * @module
 */

export const EHDR_SIZE = 64;
export const PHDR_SIZE = 56;
export const SHDR_SIZE = 64;

export const ElfConst = {
  ET_CORE: 4,
  EM_X86_64: 62,
  PT_LOAD: 1,
  PT_NOTE: 4,
  NT_PRSTATUS: 1,
  /** e_phnum's escape: the real count is in section header 0's sh_info. */
  PN_XNUM: 0xffff,
} as const;

/** One program header. */
export interface ProgramHeader {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

/**
 * The ELF header, followed by the program headers at `EHDR_SIZE`; with more than
 * PN_XNUM - 1 of them, a single section header (at `shoff`) carries the count.
 */
export function encodeHeaders(phdrs: readonly ProgramHeader[], shoff: bigint): Uint8Array {
  const extended = phdrs.length >= ElfConst.PN_XNUM;
  const size = EHDR_SIZE + PHDR_SIZE * phdrs.length;
  const bytes = new Uint8Array(size);
  const v = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, /* ELFCLASS64 */ 1, /* LSB */ 1 /* EV_CURRENT */], 0);
  v.setUint16(16, ElfConst.ET_CORE, true);
  v.setUint16(18, ElfConst.EM_X86_64, true);
  v.setUint32(20, 1, true); // e_version
  v.setBigUint64(32, BigInt(EHDR_SIZE), true); // e_phoff
  v.setBigUint64(40, extended ? shoff : 0n, true); // e_shoff
  v.setUint16(52, EHDR_SIZE, true);
  v.setUint16(54, PHDR_SIZE, true);
  v.setUint16(56, extended ? ElfConst.PN_XNUM : phdrs.length, true);
  v.setUint16(58, extended ? SHDR_SIZE : 0, true);
  v.setUint16(60, extended ? 1 : 0, true); // e_shnum
  phdrs.forEach((p, i) => {
    const at = EHDR_SIZE + i * PHDR_SIZE;
    v.setUint32(at, p.type, true);
    v.setUint32(at + 4, p.flags, true);
    v.setBigUint64(at + 8, p.offset, true);
    v.setBigUint64(at + 16, p.vaddr, true);
    v.setBigUint64(at + 24, p.paddr, true);
    v.setBigUint64(at + 32, p.filesz, true);
    v.setBigUint64(at + 40, p.memsz, true);
    v.setBigUint64(at + 48, p.align, true);
  });
  return bytes;
}

/** Section header 0 for PN_XNUM: sh_info holds the real program-header count. */
export function encodeXnumSection(phnum: number): Uint8Array {
  const bytes = new Uint8Array(SHDR_SIZE);
  new DataView(bytes.buffer).setUint32(44, phnum, true);
  return bytes;
}

const align4 = (n: number) => (n + 3) & ~3;

/** One note: Elf64_Nhdr (namesz, descsz, type), the name with its NUL, the desc; 4-aligned. */
export function encodeNote(name: string, type: number, desc: Uint8Array): Uint8Array {
  const nameBytes = new TextEncoder().encode(`${name}\0`);
  const bytes = new Uint8Array(12 + align4(nameBytes.length) + align4(desc.length));
  const v = new DataView(bytes.buffer);
  v.setUint32(0, nameBytes.length, true);
  v.setUint32(4, desc.length, true);
  v.setUint32(8, type, true);
  bytes.set(nameBytes, 12);
  bytes.set(desc, 12 + align4(nameBytes.length));
  return bytes;
}
