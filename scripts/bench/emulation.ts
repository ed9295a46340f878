/**
 * Emulated execution's speed, side by side with QEMU's gdbstub stepping the same guest natively
 * (TCG here; KVM where QEMU can use it): Linux booted by QEMU to start_kernel, its RAM and state
 * handed to the emulator.
 *
 * - step: one emulated instruction (state in, run, state out) against one `s` round trip to
 *   QEMU's gdbstub through the raw client, each averaged over STEPS;
 * - continue: an emulated run towards a breakpoint that is never reached, stopped by its
 *   instruction budget, in instructions per second.
 *
 * deno task bench:emulation [--steps N] [--instructions N]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadEmulator } from "../../ffi/emulator.ts";
import {
  CODE,
  longModeState,
  RAM_BYTES,
  unicornPath,
  writeMachine,
} from "../../tests/emu/machine.ts";
import { QemuReference } from "../../tests/emu/qemu_reference.ts";
import { freePort } from "../../tests/helpers/stub.ts";
import { CMDLINE, vmlinuxPath } from "../../tests/linux/linux.ts";
import { demoVm, GUEST_ELF } from "../../tests/emu/demo_vm.ts";
import { serve } from "../../rsp/server.ts";
import { VmTarget } from "../../vmm/target.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "2000" },
    instructions: { type: "string", default: "20000000" },
  },
});
const STEPS = Number(values.steps);
const INSTRUCTIONS = Number(values.instructions);
const RAM = [{ gpa: 0n, length: 0xa_0000n }, { gpa: 0x10_0000n, length: 0x7f0_0000n }];

const vmlinux = await vmlinuxPath();
const nm = new TextDecoder().decode(
  (await new Deno.Command("nm", { args: [vmlinux], stdout: "piped" }).output()).stdout,
);
const startKernel = BigInt(
  `0x${nm.split("\n").find((l) => l.endsWith(" T start_kernel"))!}`
    .split(" ")[0]!,
);

const lib = loadEmulator(unicornPath());
const qemu = await QemuReference.start(vmlinux, CMDLINE, 128, freePort());
try {
  await qemu.runTo(startKernel);
  const state = await qemu.state();
  const snapshot = qemu.snapshot();
  const image = lib.ramFromFile(snapshot, RAM, RAM.map((r) => r.gpa));
  const emu = lib.open(image);

  // Emulated steps, chained as a debugger's stepi would be.
  let s = state;
  let t = performance.now();
  for (let i = 0; i < STEPS; i++) s = (await emu.run({ state: s, count: 1 })).state;
  const emuStepUs = (performance.now() - t) * 1000 / STEPS;

  // QEMU's gdbstub: one `s` and its stop reply, plus the `g` a debugger reads after it.
  t = performance.now();
  for (let i = 0; i < STEPS; i++) await qemu.step();
  const qemuStepUs = (performance.now() - t) * 1000 / STEPS;

  // An emulated continue towards a breakpoint never reached, until its instruction budget.
  t = performance.now();
  const run = await emu.run({
    state: s,
    count: INSTRUCTIONS,
    breakpoints: [{ kind: "sw", address: 0xffff_ffff_ffff_f000n, length: 1 }],
  });
  const seconds = (performance.now() - t) / 1000;

  console.log(`| figure | emulation | QEMU gdbstub (${qemuAccel()}) | ratio |`);
  console.log(`| --- | --- | --- | --- |`);
  console.log(
    `| step (state in, 1 instruction, state out) vs \`s\`+\`g\` round trip | ` +
      `${emuStepUs.toFixed(0)} µs | ${qemuStepUs.toFixed(0)} µs | ` +
      `${(emuStepUs / qemuStepUs).toFixed(2)}x |`,
  );
  console.log(
    `| emulated continue to a breakpoint (Linux from start_kernel) | ${
      (run.executed / seconds / 1e6).toFixed(2)
    } M instructions/s (${run.executed} in ${
      seconds.toFixed(2)
    } s, stopped: ${run.stop.kind}) | | |`,
  );
  emu.close();
  image.close();
  Deno.removeSync(snapshot);

  // gdb's stepi: ours (the demo guest's image, emulated, served in this process) against QEMU's
  // gdbstub stepping the Linux kernel above (its raw connection closed: one debugger at a time).
  qemu.disconnect();
  const lib2 = loadEmulator(unicornPath());
  const target = new VmTarget(demoVm(), { allowWrite: true, emulation: { factory: lib2 } });
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  try {
    const n = Math.min(STEPS, 500);
    const ours = await gdbStepiMicros(`127.0.0.1:${server.addr.port}`, GUEST_ELF, n);
    const theirs = await gdbStepiMicros(qemu.gdbAddress, undefined, n);
    console.log(
      `| gdb \`stepi\` round trip (stepi ${n}, less stepi 1) | ${ours.toFixed(0)} µs | ` +
        `${theirs.toFixed(0)} µs | ${(ours / theirs).toFixed(2)}x |`,
    );
  } finally {
    await server.close();
    await target.close();
    lib2.close();
  }

  // The same on a loop that never leaves the CPU (Linux's boot soon reaches CPUID or port I/O):
  // l: add rax, rcx; mov [DATA], rax; dec rcx; jnz l, from rcx = 2^31.
  const file = Deno.makeTempFileSync({ suffix: ".ram" });
  writeMachine(file, [
    ...[0x48, 0xc7, 0xc1, 0x00, 0x00, 0x00, 0x80],
    ...[0x48, 0x01, 0xc8, 0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00],
    ...[0x48, 0xff, 0xc9, 0x75, 0xf0, 0xf4],
  ]);
  const loopImage = lib.ramFromFile(file, [{ gpa: 0n, length: BigInt(RAM_BYTES) }], [0n]);
  const loopEmu = lib.open(loopImage);
  t = performance.now();
  const loop = await loopEmu.run({
    state: longModeState(),
    count: INSTRUCTIONS,
    breakpoints: [{ kind: "sw", address: CODE + 0x17n, length: 1 }],
  });
  const loopSeconds = (performance.now() - t) / 1000;
  console.log(
    `| emulated continue to a breakpoint (a loop with a store) | ${
      (loop.executed / loopSeconds / 1e6).toFixed(2)
    } M instructions/s (${loop.executed} in ${
      loopSeconds.toFixed(2)
    } s, stopped: ${loop.stop.kind}) | | |`,
  );
  loopEmu.close();
  loopImage.close();
  Deno.removeSync(file);
} finally {
  await qemu.stop();
  lib.close();
}

/**
 * gdb's `stepi` round trip: the time of `stepi N+1` less `stepi 1` in one gdb session each,
 * divided by N (gdb reads registers after every step).
 */
async function gdbStepiMicros(
  address: string,
  file: string | undefined,
  n: number,
): Promise<number> {
  const run = async (count: number) => {
    const args = [
      "-nx",
      "-batch",
      "-ex",
      "set pagination off",
      "-ex",
      "set architecture i386:x86-64",
    ];
    if (file !== undefined) args.push("-ex", `file ${file}`);
    args.push("-ex", `target remote ${address}`, "-ex", `stepi ${count}`);
    const t = performance.now();
    await new Deno.Command("gdb", { args, stdout: "null", stderr: "null" }).output();
    return performance.now() - t;
  };
  const base = await run(1);
  const many = await run(n + 1);
  return (many - base) * 1000 / n;
}

function qemuAccel(): string {
  return "TCG";
}
