/**
 * End-to-end: `bhyve-gdbstub dump` (a separate process, `deno run main.ts dump`) saving the
 * test VM while it runs, read back by the real gdb and readelf; the guest runs on afterwards,
 * and a terminating signal (SIGTERM, SIGHUP, SIGUSR1) mid-dump leaves nothing behind.
 */
import assert from "node:assert/strict";
import { RUN_PERMISSIONS } from "../../cli.ts";
import { coreBytesAt, loads, readelf } from "../helpers/core_image.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { GuestProbe } from "../helpers/guest.ts";
import { Stub } from "../helpers/stub.ts";
import { LIBVMMAPI, TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
const hex = (v: bigint) => `0x${v.toString(16)}`;

function dump(vm: TestVm, args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...RUN_PERMISSIONS,
      MAIN,
      "dump",
      "--vm",
      vm.name,
      "--vmmapi",
      LIBVMMAPI["0200"],
      ...args,
    ],
    env: { TESTVM_DIR: vm.dir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function finished(child: Deno.ChildProcess): Promise<{ code: number; text: string }> {
  const out = await child.output();
  return { code: out.code, text: new TextDecoder().decode(out.stderr) };
}

Deno.test("dump: the running test VM saved, gdb reads every vCPU and the guest's memory, the guest runs on; an existing file is refused", async () => {
  await using vm = await TestVm.start({ cpus: 4, mem: "256M" });
  using probe = GuestProbe.open(vm);
  const dir = await Deno.makeTempDir({ prefix: "dump-e2e-" });
  try {
    assert.ok(await probe.running([0, 1, 2]), "the guest runs before the dump");
    const before = probe.debugCpus();
    const path = `${dir}/vm.core`;
    const first = await finished(dump(vm, ["-o", path, "--paging"]));
    assert.equal(first.code, 0, first.text);
    assert.match(
      first.text,
      /^bhyve-gdbstub: wrote .*vm\.core: \d+ bytes \(4 vCPU\(s\), 268435456 bytes of RAM, \d+ not zero\) in [\d.]+ s, [\d.]+ MB\/s; guest held [\d.]+ s \(the copy itself [\d.]+ s\)\n$/,
    );
    assert.deepEqual(probe.debugCpus(), before, "the debug set as it was");
    assert.ok(await probe.running([0, 1, 2]), "the guest runs after the dump");

    const elf = await readelf(path);
    assert.equal(elf.err, "", "readelf prints no warnings");
    assert.equal(elf.out.match(/NT_PRSTATUS/g)?.length, 4);
    const { output } = await runGdb([
      `file ${GUEST_ELF}`,
      `core-file ${path}`,
      ...sectioned({
        threads: ["info threads"],
        bt: ["thread 1", "bt"],
        string: [`x/s 0x${L.PRIVATE_VA.toString(16)}`],
      }),
    ]);
    const s = sectionsOf(output);
    assert.equal(s.threads?.match(/^\*? +\d+ +LWP \d/gm)?.length, 4, output);
    assert.match(s.bt!, /#0 +(0x[0-9a-f]+ in )?\w+ \(/);
    const bytes = coreBytesAt(await Deno.readFile(path), L.PRIVATE_VA, L.privateText(0).length);
    assert.equal(new TextDecoder().decode(bytes), L.privateText(0));
    assert.match(s.string!, new RegExp(`"${L.privateText(0)}"`));

    const again = await finished(dump(vm, ["-o", path]));
    assert.equal(again.code, 1);
    assert.match(
      again.text,
      /dump refused: .*vm\.core already exists \(use --force to replace it\)/,
    );
    const forced = await finished(dump(vm, ["-o", path, "--force", "--live"]));
    assert.equal(forced.code, 0, forced.text);
    assert.match(forced.text, /guest not held \(--live\): the image may be torn/);
    assert.deepEqual(probe.debugCpus(), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dump: SIGTERM, SIGHUP or SIGUSR1 mid-dump, or two at once: one line, exit status 1, guest released, no file left", async () => {
  await using vm = await TestVm.start({ cpus: 2, mem: "2G" });
  using probe = GuestProbe.open(vm);
  const dir = await Deno.makeTempDir({ prefix: "dump-e2e-" });
  try {
    assert.ok(await probe.running([0, 1]));
    const before = probe.debugCpus();
    // SIGTERM and SIGINT are the usual ones; SIGHUP (a closed terminal) and SIGUSR1 end a
    // process by default too, so they must take the same orderly way out.
    for (const signal of ["SIGTERM", "SIGHUP", "SIGUSR1"] as const) {
      const child = dump(vm, ["-o", `${dir}/big.core`]);
      // The temporary file appears just before the guest is held and the copy starts.
      const deadline = Date.now() + 30_000;
      while (![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".part"))) {
        assert.ok(Date.now() < deadline, `${signal}: the dump never started`);
        await new Promise((r) => setTimeout(r, 2));
      }
      child.kill(signal);
      const { code, text } = await finished(child);
      assert.equal(code, 1, text);
      assert.equal(
        text,
        `bhyve-gdbstub: dump interrupted by ${signal}: guest released, no file written\n`,
      );
      assert.deepEqual([...Deno.readDirSync(dir)], [], `${signal}: no file left`);
      assert.deepEqual(probe.debugCpus(), before, `${signal}: the debug set as it was`);
      assert.ok(await probe.running([0, 1]), `${signal}: the guest runs again`);
    }
    // Two signals at once: the second arrives while the first one's orderly stop is under way
    // and takes the last resort (exits.ts), which releases the guest and removes the file too.
    const child = dump(vm, ["-o", `${dir}/big.core`]);
    const deadline = Date.now() + 30_000;
    while (![...Deno.readDirSync(dir)].some((e) => e.name.endsWith(".part"))) {
      assert.ok(Date.now() < deadline, "the dump never started");
      await new Promise((r) => setTimeout(r, 2));
    }
    child.kill("SIGTERM");
    child.kill("SIGHUP");
    const { code, text } = await finished(child);
    assert.equal(code, 1, text);
    // Which of the two counts as "again" is the kernel's choice (pending signals are delivered
    // lowest number first); should the orderly stop ever win the race, it says so itself.
    assert.match(
      text,
      /^bhyve-gdbstub: (SIG(HUP|TERM) again: released VM \S+; the unfinished core removed; exiting now|dump interrupted by SIG(HUP|TERM): guest released, no file written)\n$/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "two signals: no file left");
    assert.deepEqual(probe.debugCpus(), before, "two signals: the debug set as it was");
    assert.ok(await probe.running([0, 1]), "two signals: the guest runs again");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("monitor dump from gdb: a core in --dump-dir, refusals shown in gdb, the debugger's hold kept", async () => {
  await using vm = await TestVm.start({ cpus: 2, mem: "128M" });
  const dir = await Deno.makeTempDir({ prefix: "dump-e2e-" });
  try {
    await using stub = await Stub.start({ vm: vm.name, dir: vm.dir, args: ["--dump-dir", dir] });
    using probe = GuestProbe.open(vm);
    const { output } = await runGdb([
      `file ${GUEST_ELF}`,
      `target remote ${stub.address}`,
      ...sectioned({
        dump: ["monitor dump -p vm.core"],
        held: ["info threads"],
        again: ["monitor dump vm.core"],
        escape: ["monitor dump ../vm.core"],
      }),
      "detach",
    ]);
    const s = sectionsOf(output);
    assert.match(s.dump!, /wrote .*vm\.core: \d+ bytes .*guest held by the attached debugger/);
    assert.match(s.held!, /held by debugger/);
    assert.match(s.again!, /refused: .*vm\.core already exists/);
    assert.match(s.escape!, /refused: '\.\.\/vm\.core' is not a plain file name/);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["vm.core"]);
    assert.equal((await readelf(`${dir}/vm.core`)).err, "");
    assert.ok(await probe.running([0, 1]), "the guest runs after the detach");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dump: the core holds system memory only, not device memory (framebuffer, boot ROM)", async () => {
  await using vm = await TestVm.start({ cpus: 1, mem: "64M", fbuf: true, bootrom: true });
  const dir = await Deno.makeTempDir({ prefix: "dump-e2e-" });
  try {
    const path = `${dir}/vm.core`;
    const done = await finished(dump(vm, ["-o", path]));
    assert.equal(done.code, 0, done.text);
    const ram = loads(await Deno.readFile(path)).map((l) => ({
      at: l.paddr,
      size: BigInt(l.size),
    }));
    const shown = ram.map((r) => `${hex(r.at)}+${hex(r.size)}`).join(" ");
    // bhyve's two ranges of the one SYSMEM segment: [0, lowmem) and [4 GiB, 4 GiB + highmem).
    assert.deepEqual(ram.map((r) => r.at), [0n, L.HIGHMEM_BASE], shown);
    assert.ok(ram[0]!.size <= L.FBUF_GPA, `the framebuffer at 3 GiB is not in the core: ${shown}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
