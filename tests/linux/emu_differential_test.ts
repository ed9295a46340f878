/**
 * Differential proof of the emulator on the stock Linux kernel's early boot: QEMU (TCG, same
 * vmlinux, same command line) single-steps while the emulator executes the same instructions
 * from the same state and RAM; after each instruction every general register, RIP, RFLAGS and
 * every byte written must agree, and all of RAM at the end. Two stretches: 32-bit protected
 * mode at the PVH entry (through the switch to long mode), and 64-bit code from start_kernel.
 * CI compares EMU_DIFF_STEPS instructions of the latter (2000 by default); `deno task
 * test:emu-diff` runs 10,000.
 */
import assert from "node:assert/strict";
import { loadEmulator } from "../../ffi/emulator.ts";
import { freePort } from "../helpers/stub.ts";
import { differential } from "../emu/differential.ts";
import { unicornPath } from "../emu/machine.ts";
import { QemuReference } from "../emu/qemu_reference.ts";
import { CMDLINE, vmlinuxPath } from "./linux.ts";

const STEPS = Number(Deno.env.get("EMU_DIFF_STEPS") ?? 2000);
/** Guest RAM of QEMU's pc machine with 128 MiB, less the VGA/ROM hole. */
const RAM = [{ gpa: 0n, length: 0xa_0000n }, { gpa: 0x10_0000n, length: 0x7f0_0000n }];
/** The kernel's link address minus its load address (__START_KERNEL_map). */
const KERNEL_MAP = 0xffff_ffff_8000_0000n;

async function symbol(vmlinux: string, name: string): Promise<bigint> {
  const nm = await new Deno.Command("nm", { args: [vmlinux], stdout: "piped" }).output();
  const line = new TextDecoder().decode(nm.stdout).split("\n").find((l) =>
    / [tT] /.test(l) && l.endsWith(` ${name}`)
  );
  if (line === undefined) throw new Error(`no ${name} in ${vmlinux}`);
  return BigInt(`0x${line.split(" ")[0]}`);
}

async function compare(
  start: (vmlinux: string) => Promise<bigint>,
  steps: number,
  blockRun = 0,
) {
  const vmlinux = await vmlinuxPath();
  const lib = loadEmulator(unicornPath());
  const reference = await QemuReference.start(vmlinux, CMDLINE, 128, freePort());
  try {
    await reference.runTo(await start(vmlinux));
    const report = await differential(lib, reference, RAM, steps, blockRun);
    console.log(
      `compared ${report.compared}, longest stretch ${report.longestStretch}, ` +
        `QEMU steps retried ${report.referenceRetries}, block-mode run:`,
      report.blockRun,
      "refusals:",
      report.refusals,
    );
    assert.deepStrictEqual(report.divergences, []);
    return report;
  } finally {
    await reference.stop();
    lib.close();
  }
}

Deno.test(`emulator vs QEMU: ${STEPS} instructions of 64-bit Linux from start_kernel`, async () => {
  const report = await compare((vmlinux) => symbol(vmlinux, "start_kernel"), STEPS, 3000);
  assert.ok(report.compared >= STEPS * 0.9, `only ${report.compared} compared`);
  assert.ok(report.blockRun!.executed > 500, `block-mode run: ${report.blockRun!.executed}`);
});

Deno.test("emulator vs QEMU: Linux's 32-bit PVH entry, through the switch to long mode", async () => {
  // pvh_start_xen runs in 32-bit protected mode without paging (its physical address); start
  // after its LGDT and data segment reloads (19 bytes in), whose hidden parts the emulator
  // takes from the vCPU; the far jump into long mode is refused, the rest compared.
  const report = await compare(
    async (vmlinux) => (await symbol(vmlinux, "pvh_start_xen")) - KERNEL_MAP + 19n,
    800,
  );
  assert.ok(report.compared >= 700, `only ${report.compared} compared`);
  assert.ok([...report.refusals.keys()].some((r) => /far JMP/.test(r)));
});
