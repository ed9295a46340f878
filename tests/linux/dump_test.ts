/**
 * Core dumps of a stock Debian Linux kernel, read by crash and gdb with its own vmlinux, side by
 * side with QEMU's `dump-guest-memory` of the same machine at the same moment.
 *
 * QEMU boots the vmlinux (PVH, the Linux tests' command line but `panic=0`, so the kernel stays
 * in its panic loop once it finds no root file system: every subsystem is up and crash has a
 * panic task to show). QEMU saves it through QMP (`dump-guest-memory`, with and without paging);
 * then bhyve-gdbstub's dump path (vmm/dump.ts and core/) saves the same machine, rebuilt from
 * QEMU's file (RAM and registers, tests/helpers/core_image.ts). The same crash commands (`sys`,
 * `log`, `bt`) and the same gdb script then run on both files, and must print the same.
 *
 * KVM is used where /dev/kvm exists, else QEMU's TCG (a few seconds to the panic either way).
 *
 *   deno test -A tests/linux/dump_test.ts
 */
import assert from "node:assert/strict";
import { runClient } from "../helpers/client.ts";
import { coreBytesAt, loads, readelf, vmFromQemuCore } from "../helpers/core_image.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { dumpVm } from "../../vmm/dump.ts";
import { VmTarget } from "../../vmm/target.ts";
import { bannerFromElf, MEM, vmlinuxPath } from "./linux.ts";
import { bootToPanic, qemuDumpAt } from "./qemu_panic.ts";
import { qmp } from "./qmp.ts";

const VCPUS = 2;

const vmlinux = await vmlinuxPath();
const { text: banner, vaddr: bannerAddress } = await bannerFromElf(vmlinux);

/** crash's answers to `sys`, `log`, `bt -a`, without the line naming the dump file. */
async function crash(core: string): Promise<string> {
  const script = `${core}.crash-commands`;
  await Deno.writeTextFile(script, "sys\nlog\nbt -a\nquit\n");
  const { output } = await runClient(
    "sh",
    ["-c", 'exec crash -s "$0" "$1" < "$2" 2>&1', vmlinux, core, script],
    { timeoutMs: 300_000 },
  );
  return output.split("\n").filter((line) => !/^\s+DUMPFILE:/.test(line)).join("\n");
}

async function gdb(core: string): Promise<Record<string, string>> {
  const { output } = await runGdb([
    `file ${vmlinux}`,
    `core-file ${core}`,
    ...sectioned({
      threads: ["info threads"],
      bt1: ["thread 1", "bt"],
      bt2: ["thread 2", "bt"],
      banner: ["x/s &linux_banner"],
      comm: ["p init_task.comm"],
    }),
  ], { timeoutMs: 300_000 });
  return sectionsOf(output);
}

Deno.test("Linux: crash and gdb read our core as they read QEMU's dump-guest-memory of the same machine", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dump-linux-" });
  const qemu = await bootToPanic(vmlinux, dir, { mem: MEM, vcpus: VCPUS });
  try {
    await qmp(`${dir}/qmp.sock`, [
      { execute: "stop" },
      {
        execute: "dump-guest-memory",
        arguments: { paging: false, protocol: `file:${dir}/qemu.core` },
      },
      {
        execute: "dump-guest-memory",
        arguments: { paging: true, protocol: `file:${dir}/qemu-p.core` },
      },
    ]);
  } finally {
    qemu.kill("SIGKILL");
    await qemu.status;
  }
  try {
    const qemuCore = await Deno.readFile(`${dir}/qemu.core`);
    const vm = vmFromQemuCore(qemuCore);
    assert.deepEqual(vm.activeCpus(), [0, 1]);
    const target = new VmTarget(vm);
    try {
      await dumpVm(target, `${dir}/ours.core`);
      await dumpVm(target, `${dir}/ours-p.core`, { paging: true });
    } finally {
      await target.close();
    }

    // The same RAM, byte for byte, at the same guest-physical addresses.
    const ours = await Deno.readFile(`${dir}/ours.core`);
    const ourLoads = loads(ours);
    for (const l of loads(qemuCore).filter((l) => l.paddr < 0xfff0_0000n)) {
      const mine = ourLoads.find((o) => o.paddr === l.paddr && o.size === l.size);
      assert.ok(mine, `a PT_LOAD for 0x${l.paddr.toString(16)}`);
      assert.equal(mine.vaddr, 0n);
      assert.ok(
        Buffer.compare(
          qemuCore.subarray(l.offset, l.offset + l.size),
          ours.subarray(mine.offset, mine.offset + mine.size),
        ) === 0,
        "same bytes",
      );
    }

    // readelf: clean, and the same notes in the same order as QEMU's.
    const noteList = (out: string) =>
      [...out.matchAll(/^\s+(CORE|QEMU)\s+(0x[0-9a-f]+)/gm)].map((m) => `${m[1]} ${m[2]}`);
    const qemuElf = await readelf(`${dir}/qemu.core`);
    for (const file of ["ours.core", "ours-p.core"]) {
      const elf = await readelf(`${dir}/${file}`);
      assert.equal(elf.err, "", `readelf warns about ${file}`);
      assert.deepEqual(noteList(elf.out), noteList(qemuElf.out));
    }
    const qemuPagingLoads = loads(await Deno.readFile(`${dir}/qemu-p.core`)).length;
    assert.equal(loads(await Deno.readFile(`${dir}/ours-p.core`)).length, qemuPagingLoads);

    // crash: sys, log and bt -a print the same for both files.
    const [crashQemu, crashOurs] = [
      await crash(`${dir}/qemu.core`),
      await crash(`${dir}/ours.core`),
    ];
    console.log(`crash on our core:\n${crashOurs.split("\n").slice(0, 24).join("\n")}\n...`);
    assert.match(crashOurs, /RELEASE: 6\.\d+\.\d+-\d+-cloud-amd64/);
    assert.match(crashOurs, /PANIC: "Kernel panic - not syncing: VFS: Unable to mount root fs/);
    assert.match(crashOurs, /CPUS: 2/);
    assert.match(crashOurs, /\] ---\[ end Kernel panic - not syncing/);
    assert.match(crashOurs, /#\d+ \[[0-9a-f]+\] panic at ffffffff[0-9a-f]+/);
    assert.equal(crashOurs, crashQemu);

    // gdb with the vmlinux on the paging dumps: one thread per vCPU, bt, linux_banner.
    const [gdbQemu, gdbOurs] = [await gdb(`${dir}/qemu-p.core`), await gdb(`${dir}/ours-p.core`)];
    console.log(`gdb on our core:\n${Object.values(gdbOurs).join("")}`);
    assert.equal(gdbOurs.threads?.match(/^\*? +\d+ +LWP \d/gm)?.length, VCPUS);
    // One vCPU panicked, the other was stopped by it (which is which varies from boot to boot).
    const bts = [gdbOurs.bt1!, gdbOurs.bt2!];
    assert.ok(bts.some((bt) => /in panic \(/.test(bt)), bts.join(""));
    assert.ok(bts.some((bt) => /#1 +stop_this_cpu /.test(bt)), bts.join(""));
    const inCore = coreBytesAt(await Deno.readFile(`${dir}/ours-p.core`), bannerAddress, 60);
    assert.equal(new TextDecoder().decode(inCore), banner.slice(0, 60));
    assert.ok(gdbOurs.banner!.includes(`"${banner.slice(0, 60)}`), gdbOurs.banner);
    assert.match(gdbOurs.comm!, /= "swapper\/0\\000/);
    assert.deepEqual(gdbOurs, gdbQemu);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Linux early in its boot (setup_arch): crash fails on our core exactly as on QEMU's; gdb reads both alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dump-linux-early-" });
  try {
    const stopped = await qemuDumpAt(vmlinux, dir, "setup_arch", { mem: MEM, vcpus: VCPUS });
    assert.match(stopped, /hit Breakpoint 1, setup_arch/);
    const target = new VmTarget(vmFromQemuCore(await Deno.readFile(`${dir}/early.core`)));
    try {
      await dumpVm(target, `${dir}/ours.core`);
      await dumpVm(target, `${dir}/ours-p.core`, { paging: true });
    } finally {
      await target.close();
    }
    assert.equal((await readelf(`${dir}/ours.core`)).err, "");
    assert.equal((await readelf(`${dir}/ours-p.core`)).err, "");

    // This early, crash cannot start on any dump (the kernel's memory model is not set up):
    // it must stop on ours with the very words it stops with on QEMU's.
    const [crashQemu, crashOurs] = [
      await crash(`${dir}/early.core`),
      await crash(`${dir}/ours.core`),
    ];
    console.log(`crash on QEMU's core and on ours, at setup_arch:\n${crashOurs}`);
    assert.match(crashOurs, /crash: /);
    assert.equal(crashOurs, crashQemu);

    const [gdbQemu, gdbOurs] = [await gdb(`${dir}/early-p.core`), await gdb(`${dir}/ours-p.core`)];
    assert.equal(gdbOurs.threads?.match(/^\*? +\d+ +LWP \d/gm)?.length, VCPUS);
    assert.match(gdbOurs.bt1!, /#0 +setup_arch \(.*\n#1 .* in start_kernel \(\)/);
    const inCore = coreBytesAt(await Deno.readFile(`${dir}/ours-p.core`), bannerAddress, 60);
    assert.equal(new TextDecoder().decode(inCore), banner.slice(0, 60));
    assert.match(gdbOurs.comm!, /= "swapper\\000/);
    assert.deepEqual(gdbOurs, gdbQemu);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
