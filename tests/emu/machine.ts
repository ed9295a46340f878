/**
 * A tiny 64-bit machine for emulator tests: identity-mapped 2 MiB of RAM in a file (page
 * tables, a GDT, code placed by the test), and the CPU state that runs it.
 *
 * @module
 */
import type { CpuState, Segment } from "../../emu/emulator.ts";

/** libunicorn for tests: BHYVE_GDBSTUB_UNICORN, else CI's .cache/unicorn, else the usual names. */
export function unicornPath(): string | undefined {
  const env = Deno.env.get("BHYVE_GDBSTUB_UNICORN");
  if (env) return env;
  const cached = new URL("../../.cache/unicorn/unicorn/lib/libunicorn.so.2", import.meta.url)
    .pathname;
  try {
    Deno.statSync(cached);
    return cached;
  } catch {
    return undefined;
  }
}

export const RAM_BYTES = 2 * 1024 * 1024;
export const CODE = 0x10000n;
export const DATA = 0x20000n;

/** Writes a RAM file with page tables (PML4 0x1000, PDPT 0x2000, PD 0x3000), GDT at 0x500. */
export function writeMachine(path: string, code: number[]): void {
  const ram = new Uint8Array(RAM_BYTES);
  const dv = new DataView(ram.buffer);
  dv.setBigUint64(0x1000, 0x2003n, true);
  dv.setBigUint64(0x2000, 0x3003n, true);
  dv.setBigUint64(0x3000, 0x83n, true); // one 2 MiB page at 0: the RAM
  dv.setBigUint64(0x3008, 0x20_0083n, true); // and the next, where no RAM is (device memory)
  dv.setBigUint64(0x508, 0x00af9a000000ffffn, true); // 64-bit code
  dv.setBigUint64(0x510, 0x00cf92000000ffffn, true); // data
  dv.setBigUint64(0x518, 0x00cf9a000000ffffn, true); // 32-bit code
  ram.set(code, Number(CODE));
  Deno.writeFileSync(path, ram);
}

const seg = (selector: number, access: number): Segment => ({
  selector,
  base: 0n,
  limit: 0xffff_ffff,
  access,
});

/** Long mode, CPL 0, at CODE. */
export function longModeState(): CpuState {
  const z = 0n;
  return {
    scalars: {
      rax: z,
      rbx: z,
      rcx: z,
      rdx: z,
      rsi: z,
      rdi: z,
      rbp: z,
      rsp: 0x80000n,
      r8: z,
      r9: z,
      r10: z,
      r11: z,
      r12: z,
      r13: z,
      r14: z,
      r15: z,
      rip: CODE,
      eflags: 2n,
      cr0: 0x8000_0011n,
      cr2: z,
      cr3: 0x1000n,
      cr4: 0x20n,
      efer: 0x500n,
      dr0: z,
      dr1: z,
      dr2: z,
      dr3: z,
      dr6: 0xffff_0ff0n,
      dr7: 0x400n,
    },
    segments: {
      cs: seg(8, 0xa09b),
      ss: seg(0x10, 0xc093),
      ds: seg(0x10, 0xc093),
      es: seg(0x10, 0xc093),
      fs: seg(0x10, 0xc093),
      gs: seg(0x10, 0xc093),
      ldtr: seg(0, 0x10000),
      tr: seg(0, 0x8b),
    },
    gdtr: { base: 0x500n, limit: 0x1f },
    idtr: { base: 0n, limit: 0 },
  };
}

/** 32-bit protected mode without paging (the demo guest's vCPU 2 on a KVM without PAE). */
export function protectedModeState(): CpuState {
  const state = longModeState();
  state.scalars.cr0 = 0x11n;
  state.scalars.cr4 = 0n;
  state.scalars.efer = 0n;
  state.segments.cs = seg(0x18, 0xc09b);
  return state;
}
