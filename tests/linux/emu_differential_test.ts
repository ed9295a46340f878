/**
 * Differential proof of the emulator on the stock Linux kernel's early boot: QEMU (TCG, same
 * vmlinux, same command line) single-steps from start_kernel while the emulator executes the
 * same instructions from the same state and RAM; after each instruction every general register,
 * RIP, RFLAGS and every byte written must agree, and all of RAM at the end. CI compares
 * EMU_DIFF_STEPS instructions (2000 by default); `deno task test:emu-diff` runs 10,000.
 */
import assert from "node:assert/strict";
import { loadEmulator } from "../../ffi/emulator.ts";
import { freePort } from "../helpers/stub.ts";
import { differential } from "../emu/differential.ts";
import { unicornPath } from "../emu/machine.ts";
import { QemuReference } from "../emu/qemu_reference.ts";
import { CMDLINE, vmlinuxPath } from "./linux.ts";

const STEPS = Number(Deno.env.get("EMU_DIFF_STEPS") ?? 2000);
const START_KERNEL = 0xffff_ffff_8304_ee41n; // nm vmlinux-6.1.0-57-cloud-amd64 | grep start_kernel

Deno.test(`emulator vs QEMU: ${STEPS} instructions of Linux from start_kernel`, async () => {
  const vmlinux = await vmlinuxPath();
  const nm = new Deno.Command("nm", { args: [vmlinux], stdout: "piped" }).outputSync();
  const line = new TextDecoder().decode(nm.stdout).split("\n").find((l) =>
    l.endsWith(" T start_kernel")
  );
  const startKernel = line === undefined ? START_KERNEL : BigInt(`0x${line.split(" ")[0]}`);
  const lib = loadEmulator(unicornPath());
  const reference = await QemuReference.start(vmlinux, CMDLINE, 128, freePort());
  try {
    await reference.runTo(startKernel);
    const ram = [{ gpa: 0n, length: 0xa_0000n }, { gpa: 0x10_0000n, length: 0x7f0_0000n }];
    const report = await differential(lib, reference, ram, STEPS);
    console.log(
      `compared ${report.compared}, longest stretch ${report.longestStretch}, refusals:`,
      report.refusals,
    );
    assert.deepStrictEqual(report.divergences, []);
    assert.ok(report.compared >= STEPS * 0.9, `only ${report.compared} compared`);
  } finally {
    await reference.stop();
    lib.close();
  }
});
