/**
 * Core dumps of a machine through vmm/dump.ts and core/, read back by the real gdb and readelf:
 * the demo guest's memory and vCPUs in a fake VM (tests/helpers/fake_machine.ts), so these run
 * where the test VM cannot (no /dev/kvm). The test VM's own run is tests/e2e/dump_test.ts.
 */
import assert from "node:assert/strict";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { addRam, fakeDemoMachine, GUEST_ELF, PRIVATE_TEXT } from "../helpers/fake_machine.ts";
import { describeDump, dumpVm } from "../../vmm/dump.ts";
import { VmTarget } from "../../vmm/target.ts";
import { TargetGoneError } from "../../rsp/target.ts";
import { CoreFileError } from "../../core/mod.ts";
import { coreBytesAt, readelf } from "../helpers/core_image.ts";

const PRIVATE_VA = 0xffff_ffff_8050_0000n;

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "dump-test-" });
}

Deno.test("a core of the demo machine: readelf clean, gdb sees every vCPU as a thread, bt, strings; sparse; guest held then released", async () => {
  const vm = await fakeDemoMachine(64);
  const target = new VmTarget(vm);
  const dir = await tempDir();
  try {
    const path = `${dir}/demo.core`;
    const report = await dumpVm(target, path, { paging: true });
    assert.deepEqual([...vm.debug], [], "every vCPU released");
    assert.ok(vm.calls.includes("vm_suspend_cpu 0") && vm.calls.includes("vm_resume_cpu 3"));
    assert.equal(report.vcpus, 4);
    assert.equal(report.ram, 64n << 20n);
    assert.ok(report.heldSeconds !== undefined && report.heldSeconds <= report.seconds);
    assert.ok(report.copySeconds <= report.heldSeconds, "the copy happens while held");
    assert.match(
      describeDump(report),
      /wrote .*demo\.core: \d+ bytes .* MB\/s; guest held [\d.]+ s \(the copy itself [\d.]+ s\)$/,
    );

    const stat = await Deno.stat(path);
    assert.equal(BigInt(stat.size), report.size);
    assert.ok(stat.blocks! * 512 < 2 * 1024 * 1024, `sparse: ${stat.blocks! * 512} bytes on disk`);
    assert.equal(stat.mode! & 0o777, 0o600);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["demo.core"],
      "no temporary file left",
    );

    const elf = await readelf(path);
    assert.equal(elf.err, "", "readelf prints no warnings");
    assert.match(elf.out, /Type:\s+CORE \(Core file\)/);
    assert.equal(elf.out.match(/NT_PRSTATUS/g)?.length, 4);
    assert.equal(
      elf.out.match(/QEMU\s+0x000001b8\s+Unknown note type: \(0x00000000\)/g)?.length,
      4,
    );
    assert.match(elf.out, /LOAD\s+0x[0-9a-f]+ 0xffffffff80000000 0x0000000000000000/);

    const { output } = await runGdb([
      `file ${GUEST_ELF}`,
      `core-file ${path}`,
      ...sectioned({
        threads: ["info threads"],
        bt1: ["thread 1", "bt"],
        bt2: ["thread 2", "bt"],
        bt3: ["thread 3", "bt"],
        string: [`x/s 0x${PRIVATE_VA.toString(16)}`],
        regs: ["thread 1", "p/x $rax", "p/x $cs"],
      }),
    ]);
    const s = sectionsOf(output);
    assert.equal(s.threads?.match(/^\*? +\d+ +LWP \d/gm)?.length, 4, output);
    assert.match(s.threads!, /1 +LWP 1 .* in spin /);
    assert.match(s.threads!, /2 +LWP 2 +ap_main /);
    assert.match(s.threads!, /3 +LWP 3 +pae32_main /);
    assert.match(s.bt1!, /#0 .* in spin \(/);
    assert.match(s.bt2!, /#0 +ap_main /);
    assert.match(s.bt3!, /#0 +pae32_main /);
    const core = await Deno.readFile(path);
    const bytes = coreBytesAt(core, PRIVATE_VA, PRIVATE_TEXT.length);
    assert.equal(new TextDecoder().decode(bytes), PRIVATE_TEXT);
    assert.match(s.string!, new RegExp(`<private_pages>:\\s+"${PRIVATE_TEXT}"`));
    assert.match(s.regs!, /\$1 = 0x1000\n\$2 = 0x8/);
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("without --paging: one PT_LOAD per RAM range, p_paddr = gpa, p_vaddr 0", async () => {
  const vm = await fakeDemoMachine(8);
  addRam(vm, 0x1_0000_0000n, new Uint8Array(0x10_0000).fill(0xab));
  const target = new VmTarget(vm);
  const dir = await tempDir();
  try {
    await dumpVm(target, `${dir}/phys.core`, {});
    const elf = await readelf(`${dir}/phys.core`);
    assert.equal(elf.err, "");
    assert.match(elf.out, /LOAD\s+0x0*1000 0x0+ 0x0+ 0x0*800000 0x0*800000/);
    assert.match(elf.out, /LOAD\s+0x0*801000 0x0+ 0x0*100000000 0x0*100000 0x0*100000/);
    const core = await Deno.readFile(`${dir}/phys.core`);
    assert.equal(core[0x801000 + 0x1234], 0xab);
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--live copies without holding the guest, and says the image may be torn", async () => {
  const vm = await fakeDemoMachine(8);
  const target = new VmTarget(vm);
  const dir = await tempDir();
  try {
    const report = await dumpVm(target, `${dir}/live.core`, { live: true });
    assert.ok(!vm.calls.some((c) => c.startsWith("vm_suspend_cpu")), "never held");
    assert.equal(report.heldSeconds, undefined);
    assert.match(
      describeDump(report, { live: true }),
      /guest not held \(--live\): the image may be torn$/,
    );
    assert.equal((await readelf(`${dir}/live.core`)).err, "");
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an existing file is refused before the guest is held; overwrite replaces it", async () => {
  const vm = await fakeDemoMachine(8);
  const target = new VmTarget(vm);
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/x.core`, "keep me");
    await assert.rejects(dumpVm(target, `${dir}/x.core`), (e: Error) => {
      assert.ok(e instanceof CoreFileError);
      assert.match(e.message, /x\.core already exists/);
      return true;
    });
    assert.ok(!vm.calls.some((c) => c.startsWith("vm_suspend_cpu")), "never held");
    assert.equal(await Deno.readTextFile(`${dir}/x.core`), "keep me");
    await dumpVm(target, `${dir}/x.core`, { overwrite: true });
    assert.equal((await readelf(`${dir}/x.core`)).err, "");
  } finally {
    await target.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tmpfs of `size` mounted for one test (we are root); `ro` mounts it read-only. */
async function withTmpfs(size: string, ro: boolean, f: (dir: string) => Promise<void>) {
  const dir = await tempDir();
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}${ro ? ",ro" : ""}`, "tmpfs", dir],
  }).output();
  assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    await f(dir);
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir);
  }
}

Deno.test("an unwritable directory and a full disk: a clear error, guest released, no file left", async () => {
  const vm = await fakeDemoMachine(8);
  // 4 MiB of pages that are not zero: more than the 1 MiB disk holds.
  for (let page = 0x40_0000n; page < 0x80_0000n; page += 4096n) {
    vm.poke(page, [1]);
  }
  const target = new VmTarget(vm);
  try {
    await withTmpfs("1m", true, async (dir) => {
      await assert.rejects(
        dumpVm(target, `${dir}/a.core`),
        /cannot create a file in .*: Read-only file system/,
      );
    });
    await withTmpfs("1m", false, async (dir) => {
      await assert.rejects(dumpVm(target, `${dir}/b.core`), (e: Error) => {
        assert.ok(e instanceof CoreFileError, String(e));
        assert.match(e.message, /cannot write .*b\.core: No space left on device/);
        return true;
      });
      assert.deepEqual([...Deno.readDirSync(dir)], [], "the partial file is removed");
      assert.deepEqual([...vm.debug], [], "guest released");
    });
  } finally {
    await target.close();
  }
});

Deno.test("the VM vanishing mid-dump and an abort (Ctrl-C): guest released, no file", async () => {
  const dir = await tempDir();
  try {
    const vm = await fakeDemoMachine(64);
    const target = new VmTarget(vm);
    let reads = 0;
    // The writer takes each chunk as a view of the machine's memory: the third one is the last.
    const viewRam = vm.viewRam.bind(vm);
    vm.viewRam = (gpa, length) => {
      if (length >= 1 << 20 && ++reads === 3) vm.gone = true;
      return viewRam(gpa, length);
    };
    await assert.rejects(dumpVm(target, `${dir}/gone.core`), (e: Error) => {
      assert.ok(e instanceof TargetGoneError, String(e));
      assert.match(e.message, /VM fake vanished during the dump/);
      return true;
    });
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    await target.close();

    const vm2 = await fakeDemoMachine(64);
    const target2 = new VmTarget(vm2);
    const stop = new AbortController();
    await assert.rejects(
      dumpVm(target2, `${dir}/int.core`, {
        signal: stop.signal,
        onProgress: () => stop.abort(),
      }),
      (e: Error) => e.name === "AbortError",
    );
    assert.deepEqual([...vm2.debug], [], "guest released");
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no file left");
    await target2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("monitor dump: only into --dump-dir, plain names, never over a file or through a link; the debugger's hold stays", async () => {
  const dir = await tempDir();
  try {
    const vm = await fakeDemoMachine(8);
    const refused = new VmTarget(vm);
    await refused.stop();
    assert.match(await refused.monitor("dump x.core", 1), /refused: .*without --dump-dir/);
    await refused.close();

    const target = new VmTarget(vm, { dumpDir: dir });
    await target.stop();
    const held = [...vm.debug].sort();
    for (const bad of ["../x", "a/b", "..", ".hidden", "a..b"]) {
      assert.match(await target.monitor(`dump ${bad}`, 1), /refused: .* not a plain file name/);
    }
    assert.match(await target.monitor("dump", 1), /usage: monitor dump/);
    assert.match(
      await target.monitor("dump -p vm.core", 1),
      /wrote .*vm\.core: .*attached debugger/,
    );
    assert.deepEqual([...vm.debug].sort(), held, "still held by the debugger");
    assert.match(await target.monitor("dump vm.core", 1), /refused: .*vm\.core already exists/);
    await Deno.symlink("/tmp/never-written-by-dump", `${dir}/link.core`);
    assert.match(await target.monitor("dump link.core", 1), /refused: .*link\.core already exists/);
    await assert.rejects(Deno.lstat("/tmp/never-written-by-dump"));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "link.core",
      "vm.core",
    ]);

    await target.close();
    assert.deepEqual([...vm.debug], []);

    // A slow dump prints progress as it goes (each line also restarts gdb's reply timeout).
    const big = await fakeDemoMachine(32);
    const viewRam = big.viewRam.bind(big);
    big.viewRam = (gpa, length) => {
      const until = performance.now() + (length >= 1 << 20 ? 450 : 0);
      while (performance.now() < until) { /* a slow disk */ }
      return viewRam(gpa, length);
    };
    const slowTarget = new VmTarget(big, { dumpDir: dir });
    await slowTarget.stop();
    const printed: string[] = [];
    const slow = await slowTarget.monitor("dump slow.core", 1, (text) => {
      printed.push(text);
      return Promise.resolve();
    });
    assert.match(slow, /wrote .*slow\.core/);
    assert.ok(printed.length >= 1, "progress printed");
    assert.match(printed[0]!, /^dumping: \d+ of 34 MB\n$/);
    await slowTarget.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
