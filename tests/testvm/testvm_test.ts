/**
 * End-to-end tests of the test VM: the hypervisor (build/testvm), both
 * libvmmapi generations (build/libvmmapi.so.5 and .so.6) driven from a
 * separate process (build/probe), and the demo guest (build/guest.elf).
 *
 * Each VM gets a unique name and its own TESTVM_DIR, and is always stopped.
 *
 *   /work/main/node_modules/.bin/deno test -A tests/testvm/
 */
import assert from "node:assert/strict";
import * as L from "./layout.ts";

const HERE = new URL(".", import.meta.url).pathname;
const BUILD = new URL("./build/", import.meta.url).pathname;
const LIBS = { "0103": `${BUILD}libvmmapi.so.5`, "0200": `${BUILD}libvmmapi.so.6` } as const;
type Api = keyof typeof LIBS;

const VM_REG = {
  CR0: 15,
  CR3: 16,
  CR4: 17,
  RSP: 19,
  RIP: 20,
  RFLAGS: 21,
  CS: 23,
  EFER: 32,
  FS_BASE: 45,
};
const CAP = { MTRAP_EXIT: 1, BPT_EXIT: 5 };
const EFER_LMA = 0x400n, CR0_PE = 1n, CR0_PG = 0x8000_0000n;
const ACCESS_L = 0x2000n, ACCESS_DB = 0x4000n;

// ---- building ------------------------------------------------------------

const make = await new Deno.Command("make", {
  args: ["-C", HERE],
  stdout: "piped",
  stderr: "piped",
})
  .output();
if (!make.success) throw new Error(`make failed:\n${new TextDecoder().decode(make.stderr)}`);

// ---- running a VM --------------------------------------------------------

let vmSeq = 0;

interface Vm {
  name: string;
  dir: string;
  serial: string;
  child: Deno.ChildProcess;
  stderr: Promise<string>;
  /** SIGTERM unless already gone; resolves to the exit code. */
  stop(): Promise<number>;
  /** Wait for the exit without signalling. */
  exited(): Promise<number>;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  return text;
}

async function startVm(
  opts: { cpus?: number; extra?: string[]; name?: string; dir?: string } = {},
): Promise<Vm> {
  const name = opts.name ?? `t${Deno.pid}-${++vmSeq}`;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "testvm-" });
  const serial = `${dir}/${name}.serial`;
  const child = new Deno.Command(`${BUILD}testvm`, {
    args: [
      "--name",
      name,
      "--cpus",
      String(opts.cpus ?? 4),
      "--mem",
      "256M",
      "--guest",
      "demo",
      "--serial",
      serial,
      ...(opts.extra ?? []),
    ],
    env: { TESTVM_DIR: dir },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = readAll(child.stderr);
  let code: number | undefined;
  const status = child.status.then((s) => (code = s.code));
  // "ready NAME" is the only stdout line: wait for it (or for EOF: an early exit).
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes(`ready ${name}\n`)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const ready = out.includes(`ready ${name}\n`);
  const stdout = (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) out += r.value;
  })();
  const ownDir = opts.dir === undefined;
  const finish = async (cleanUp: boolean) => {
    await status;
    await stdout;
    await stderr;
    if (cleanUp && ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    return code ?? -1;
  };
  const vm: Vm = {
    name,
    dir,
    serial,
    child,
    stderr,
    stop() {
      if (code === undefined) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
      }
      return finish(true);
    },
    exited: () => finish(false),
  };
  if (!ready) {
    const c = await vm.stop();
    throw new Error(`testvm ${name} did not become ready (exit ${c}): ${await stderr}`);
  }
  return vm;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- driving the probe ---------------------------------------------------

/** One output line of build/probe: words before the first key=value, then the pairs. */
class Line {
  readonly words: string[] = [];
  readonly kv = new Map<string, string>();
  constructor(readonly text: string) {
    for (const tok of text.split(" ")) {
      const eq = tok.indexOf("=");
      if (eq > 0) this.kv.set(tok.slice(0, eq), tok.slice(eq + 1));
      else this.words.push(tok);
    }
  }
  /** The value of `key`; a missing key fails the test with the whole line. */
  get(key: string): string {
    const v = this.kv.get(key);
    if (v === undefined) throw new Error(`no ${key}= in probe output "${this.text}"`);
    return v;
  }
  opt(key: string): string | undefined {
    return this.kv.get(key);
  }
}

function parse(out: string): Line[] {
  return out.trim().split("\n").filter((l) => l !== "").map((l) => new Line(l));
}

/** `arr[i]`, failing the test if it is missing. */
function at<T>(arr: readonly T[], i: number): T {
  const v = arr[i];
  if (v === undefined) throw new Error(`missing item ${i} (have ${arr.length})`);
  return v;
}

async function probe(
  api: Api,
  vm: { name: string; dir: string },
  ...cmds: string[]
): Promise<Line[]> {
  const out = await new Deno.Command(`${BUILD}probe`, {
    args: [LIBS[api], vm.name, ...cmds],
    env: { TESTVM_DIR: vm.dir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(
    out.code === 0 || out.code === 3,
    `probe crashed (${out.code}): ${text}${new TextDecoder().decode(out.stderr)}`,
  );
  return parse(text).slice(2); // drop "api ..." and "open ..."
}

/** Run a single command and return its output line. */
async function one(api: Api, vm: Vm, ...cmd: string[]): Promise<Line> {
  const lines = await probe(api, vm, ...cmd);
  assert.equal(lines.length, 1, `one line expected for ${cmd.join(" ")}`);
  return at(lines, 0);
}

const hex = (v: bigint) => "0x" + v.toString(16);

async function counters(api: Api, vm: Vm, cpus: number[]): Promise<bigint[]> {
  const lines = await probe(
    api,
    vm,
    ...cpus.flatMap((c) => ["u64p", hex(L.percpuPhys(c, L.PC_COUNTER))]),
  );
  return lines.map((l) => BigInt(l.get("value")));
}

async function waitFor(what: string, cond: () => Promise<boolean>, ms = 8000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Counters of `cpus` all move within ~a second (the guest is slow here). */
async function assertMoving(api: Api, vm: Vm, cpus: number[]) {
  const before = await counters(api, vm, cpus);
  await waitFor(`counters of vCPUs ${cpus} to move`, async () => {
    const now = await counters(api, vm, cpus);
    return now.every((v, i) => v > at(before, i));
  }, 4000);
}

async function assertStill(api: Api, vm: Vm, cpus: number[]) {
  const before = await counters(api, vm, cpus);
  await sleep(300);
  assert.deepEqual(await counters(api, vm, cpus), before, `vCPUs ${cpus} should be parked`);
}

const cpusOf = async (api: Api, vm: Vm, set: "active" | "debug" | "suspended") =>
  (await one(api, vm, set)).get("cpus");

/** The guest is booted once every vCPU it starts has a nonzero mode. */
async function waitBooted(api: Api, vm: Vm) {
  await waitFor("guest boot", async () => {
    const lines = await probe(
      api,
      vm,
      ...[0, 1, 2].flatMap((c) => ["readp", hex(L.percpuPhys(c, L.PC_MODE)), "4"]),
    );
    return lines.every((l) => l.get("hex") !== "00000000");
  });
}

async function nmSymbols(): Promise<Map<string, bigint>> {
  const out = await new Deno.Command("nm", { args: [`${BUILD}guest.elf`], stdout: "piped" })
    .output();
  const map = new Map<string, bigint>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const [addr, , name] = line.split(" ");
    if (name) map.set(name, BigInt("0x" + addr));
  }
  return map;
}

// ---- tests -----------------------------------------------------------------

Deno.test("layout.ts agrees with guest/layout.h, testvm_abi.h and guest.elf", async () => {
  // Evaluate the headers' numeric #defines (numbers, names, + and <<).
  const defs = new Map<string, bigint>();
  for (const file of ["guest/layout.h", "include/testvm_abi.h"]) {
    for (
      const m of (await Deno.readTextFile(HERE + file)).matchAll(/^#define\s+(\w+)\s+([^/\n]+)/gm)
    ) {
      const [, name = "", raw = ""] = m;
      const expr = raw.trim().replace(/TVM_U64\((\w+)\)/g, "$1");
      if (!/^[\w\s+()<x]*$/.test(expr)) continue;
      try {
        const js = expr.replace(/\b(0x[0-9a-fA-F]+|\d+)\b/g, "$1n").replace(
          /\b([A-Z_][A-Z0-9_]*)\b/g,
          (n) => {
            if (!defs.has(n)) throw new Error(n);
            return `${defs.get(n)}n`;
          },
        );
        defs.set(name, (0, eval)(js));
      } catch { /* not a number */ }
    }
  }
  const rename: Record<string, string> = {
    TVM_HIGHMEM_BASE: "HIGHMEM_BASE",
    TVM_HIGHMEM_MIN: "HIGHMEM_MIN",
    TVM_MMIO_GPA: "MMIO_GPA",
    TVM_MMIO_REG_ID: "MMIO_REG_ID",
    TVM_MMIO_REG_READS: "MMIO_REG_READS",
    TVM_MMIO_ID: "MMIO_ID",
    TVM_LAPIC_GPA: "LAPIC_GPA",
    TVM_FBUF_GPA: "FBUF_GPA",
    TVM_FBUF_PIXELS_OFF: "FBUF_PIXELS_OFF",
    TVM_FBUF_NPIXELS: "FBUF_NPIXELS",
  };
  let checked = 0;
  for (const [cname, value] of defs) {
    const tsName = rename[cname] ?? cname;
    const ts = (L as Record<string, unknown>)[tsName];
    if (ts === undefined) continue;
    assert.equal(BigInt(ts as bigint | number), value, `${tsName} differs from ${cname}`);
    checked++;
  }
  assert.ok(checked >= 45, `only ${checked} constants compared`);

  const syms = await nmSymbols();
  for (const [name, addr] of Object.entries(L.SYMBOLS)) {
    assert.equal(syms.get(name), addr, `symbol ${name}`);
  }
  for (const fn of L.CALL_CHAIN) assert.ok(syms.has(fn), `guest function ${fn}`);
  assert.ok(syms.get("tick")! >= L.KERNEL_VBASE + L.KERNEL_PHYS, "tick linked in the higher half");
});

for (const api of ["0103", "0200"] as const) {
  Deno.test(`libvmmapi ${api}: hold, inspect, translate and resume a running VM`, async () => {
    const vm = await startVm();
    try {
      await waitBooted(api, vm);
      assert.equal(await cpusOf(api, vm, "active"), "0,1,2,3");
      assert.equal(await cpusOf(api, vm, "debug"), "3", "the parked AP sits in the debug set");
      assert.equal(await cpusOf(api, vm, "suspended"), "");
      await assertMoving(api, vm, [0, 1, 2]);

      // Hold: snapshot the debug set first, suspend all, counters stop.
      assert.equal(at(await probe(api, vm, "suspend", "all", "debug"), 1).get("cpus"), "0,1,2,3");
      await assertStill(api, vm, [0, 1, 2]);

      // Registers differ per vCPU and per mode.
      const regs = [VM_REG.RIP, VM_REG.CR0, VM_REG.CR3, VM_REG.CR4, VM_REG.EFER].join(",");
      const [s0, s1, s2] =
        (await probe(api, vm, "regset", "0", regs, "regset", "1", regs, "regset", "2", regs))
          .map((l) => {
            const v = l.get("values").split(",").map(BigInt);
            return { rip: at(v, 0), cr0: at(v, 1), cr3: at(v, 2), efer: at(v, 4) };
          });
      if (!s0 || !s1 || !s2) throw new Error("regset output missing");
      assert.ok(
        s0.rip >= L.KERNEL_VBASE && s1.rip >= L.KERNEL_VBASE,
        "long-mode vCPUs run the higher-half kernel",
      );
      assert.ok(s2.rip < 0x1_0000n, "the 32-bit vCPU runs low code");
      assert.equal(
        new Set([s0.cr3, s1.cr3, s2.cr3]).size,
        3,
        "each vCPU has its own page-table root",
      );
      assert.ok((s0.efer & EFER_LMA) && (s1.efer & EFER_LMA));
      assert.equal(s2.efer & EFER_LMA, 0n);
      assert.equal(s2.cr0 & CR0_PE, CR0_PE);
      const cs0 = await one(api, vm, "seg", "0", String(VM_REG.CS));
      const cs2 = await one(api, vm, "seg", "2", String(VM_REG.CS));
      assert.equal(BigInt(cs0.get("access")) & ACCESS_L, ACCESS_L, "64-bit code segment");
      assert.equal(
        BigInt(cs2.get("access")) & (ACCESS_L | ACCESS_DB),
        ACCESS_DB,
        "32-bit code segment",
      );
      const fsBase = await one(api, vm, "reg", "0", String(VM_REG.FS_BASE));
      if (api === "0103") assert.equal(fsBase.opt("err"), "EINVAL", "13.x stops at register 44");
      else assert.equal(fsBase.opt("value"), "0x0", "15/main has FS_BASE");

      // Translation: one VA, different pages per vCPU; honouring the paging argument.
      const t = await probe(
        api,
        vm,
        "readv",
        "0",
        hex(L.PRIVATE_VA),
        "24",
        "readv",
        "1",
        hex(L.PRIVATE_VA),
        "24",
        "xlate",
        "0",
        hex(L.KERNEL_VBASE + L.LAYOUT_PHYS + 0x123n),
        "xlate",
        "0",
        hex(L.DMAP_VBASE + 0x345678n),
        "xlate",
        "1",
        hex(L.LAPIC_VA + 0x20n),
        "xlate",
        "0",
        "0x800000000000",
        "xlatep",
        "0",
        hex(L.PRIVATE_VA),
        hex(s1.cr3),
        "3",
        "3",
        "0",
        "1",
        "xlatep",
        "0",
        hex(L.PRIVATE_VA),
        hex(s0.cr3),
        "3",
        "3",
        "3",
        "1",
        "paging",
        "2",
      );
      assert.equal(at(t, 0).get("gpa"), hex(L.PRIVATE_PHYS));
      assert.equal(at(t, 0).get("str"), L.privateText(0).replaceAll(" ", "_"));
      assert.equal(at(t, 1).get("gpa"), hex(L.PRIVATE_PHYS + L.PRIVATE_STRIDE));
      assert.equal(at(t, 1).get("str"), L.privateText(1).replaceAll(" ", "_"));
      assert.equal(at(t, 2).get("gpa"), hex(L.LAYOUT_PHYS + 0x123n), "2 MiB kernel page");
      assert.equal(at(t, 3).get("gpa"), hex(0x345678n), "direct map");
      assert.equal(at(t, 4).get("gpa"), hex(L.LAPIC_GPA + 0x20n), "4 KiB window onto the APIC");
      assert.equal(at(t, 5).get("fault"), "1", "non-canonical");
      assert.equal(
        at(t, 6).get("gpa"),
        hex(L.PRIVATE_PHYS + L.PRIVATE_STRIDE),
        "vCPU 0 walking vCPU 1's CR3",
      );
      assert.equal(at(t, 7).get("fault"), "1", "cpl 3 on supervisor pages");

      // The 32-bit vCPU: PAE if this KVM allows paging outside long mode, else flat.
      const g = await probe(
        api,
        vm,
        "u64p",
        hex(L.LAYOUT_PHYS + L.OFF_PAE_ACTIVE),
        "u64p",
        hex(L.LAYOUT_PHYS + L.OFF_PAE_ROOT),
        "u64p",
        hex(L.LAYOUT_PHYS + L.OFF_LEGACY32_ROOT),
        "u64p",
        hex(L.LAYOUT_PHYS + L.OFF_GIANT_ROOT),
      );
      const paeActive = (BigInt(at(g, 0).get("value")) & 0xffff_ffffn) === 1n;
      const [paeRoot, legacyRoot, giantRoot] = [1, 2, 3].map((i) => BigInt(at(g, i).get("value")));
      if (paeRoot === undefined || legacyRoot === undefined || giantRoot === undefined) {
        throw new Error("roots");
      }
      assert.equal(at(t, 8).get("cpu_mode"), "1", "protected mode");
      assert.equal(at(t, 8).get("paging_mode"), paeActive ? "2" : "0");
      assert.equal(s2.cr0 & CR0_PG, paeActive ? CR0_PG : 0n);
      const p = await probe(
        api,
        vm,
        "xlate",
        "2",
        hex(L.PAE_PRIVATE_VA),
        "xlatep",
        "2",
        hex(L.PAE_PRIVATE_VA),
        hex(paeRoot),
        "1",
        "2",
        "0",
        "1",
        "xlatep",
        "2",
        "0x3456789",
        hex(paeRoot),
        "1",
        "2",
        "0",
        "1",
        "xlatep",
        "2",
        hex(L.PAE_PRIVATE_VA + 0x10n),
        hex(legacyRoot),
        "1",
        "1",
        "0",
        "1",
        "xlatep",
        "2",
        "0x3456789",
        hex(legacyRoot),
        "1",
        "1",
        "0",
        "1",
        "xlatep",
        "0",
        hex(L.DMAP_VBASE + 0x3456789n),
        hex(giantRoot),
        "3",
        "3",
        "0",
        "1",
        "xlatep",
        "0",
        hex(L.KERNEL_VBASE + 0x100n),
        hex(giantRoot),
        "3",
        "3",
        "0",
        "1",
      );
      const private2 = L.PRIVATE_PHYS + 2n * L.PRIVATE_STRIDE;
      assert.equal(
        at(p, 0).get("gpa"),
        paeActive ? hex(private2) : hex(L.PAE_PRIVATE_VA),
        "vCPU 2 on its own paging",
      );
      assert.equal(at(p, 1).get("gpa"), hex(private2), "PAE 4 KiB");
      assert.equal(at(p, 2).get("gpa"), "0x3456789", "PAE 2 MiB");
      assert.equal(at(p, 3).get("gpa"), hex(private2 + 0x10n), "32-bit 4 KiB");
      assert.equal(at(p, 4).get("gpa"), "0x3456789", "32-bit 4 MiB");
      assert.equal(at(p, 5).get("gpa"), "0x3456789", "1 GiB page");
      assert.equal(at(p, 6).get("gpa"), "0x100", "1 GiB kernel page");

      // Guest RAM through the device fd matches the documented layout.
      const m = await probe(
        api,
        vm,
        "readp",
        hex(L.LAYOUT_PHYS),
        "8",
        ...[0, 1, 2, 3].flatMap((
          c,
        ) => ["readp", hex(L.percpuPhys(c, L.PC_MSG)), String(L.PC_MSG_LEN)]),
        "readp",
        hex(L.PRIVATE_PHYS + 3n * L.PRIVATE_STRIDE),
        "20",
      );
      assert.equal(at(m, 0).get("str"), "TESTVM01");
      for (const c of [0, 1, 2, 3]) {
        assert.equal(at(m, 1 + c).get("str"), L.vcpuMessage(c).replaceAll(" ", "_"));
      }
      assert.equal(at(m, 5).get("str"), L.privateText(3).replaceAll(" ", "_"));

      // In-kernel APIC through kernemu; the userspace MMIO device is out of reach.
      const k = await probe(
        api,
        vm,
        ...[0, 1, 2, 3].flatMap((
          c,
        ) => ["kernemu", String(c), hex(L.LAPIC_GPA + L.LAPIC_REG_ID), "4"]),
        "kernemu",
        "0",
        hex(L.LAPIC_GPA + L.LAPIC_REG_VERSION),
        "4",
        "kernemu",
        "0",
        hex(L.MMIO_GPA + L.MMIO_REG_READS),
        "8",
        "kernemu",
        "0",
        hex(L.MMIO_GPA),
        "4",
        "kernemu",
        "0",
        "0x1000",
        "4",
      );
      for (const c of [0, 1, 2, 3]) {
        assert.equal(BigInt(at(k, c).get("value")), BigInt(c) << 24n, `APIC ID of vCPU ${c}`);
      }
      assert.ok((BigInt(at(k, 4).get("value")) & 0xffn) !== 0n, "APIC version");
      for (const i of [5, 6, 7]) assert.equal(at(k, i).get("err"), "EINVAL");

      // Memory map and topology.
      const mm = await one(api, vm, "mmap");
      assert.equal(mm.get("count"), "2");
      assert.equal(
        mm.get("range0"),
        `0x0+${hex((256n << 20n) - L.HIGHMEM_MIN)},seg0@0x0,prot7,flags0`,
      );
      assert.ok(mm.get("range1").startsWith(`${hex(L.HIGHMEM_BASE)}+${hex(L.HIGHMEM_MIN)},seg0@`));
      assert.equal((await one(api, vm, "memseg", "0")).get("len"), hex(256n << 20n));
      assert.deepEqual(Object.fromEntries((await one(api, vm, "topology")).kv), {
        sockets: "4",
        cores: "1",
        threads: "1",
        maxcpus: "4",
      });

      // Resume only what we suspended (the AP was in the debug set before).
      await probe(api, vm, "resume", "0", "resume", "1", "resume", "2");
      assert.equal(await cpusOf(api, vm, "debug"), "3");
      await assertMoving(api, vm, [0, 1, 2]);

      // The guest itself reads the MMIO counter: only its own boot read came before.
      await probe(api, vm, "writep", hex(L.LAYOUT_PHYS + L.OFF_MMIO_PROBE), "1");
      await waitFor(
        "the guest's MMIO probe",
        async () =>
          (await one(api, vm, "readp", hex(L.LAYOUT_PHYS + L.OFF_MMIO_PROBE), "4")).get("hex") ===
            "00000000",
      );
      assert.equal(
        (await one(api, vm, "u64p", hex(L.LAYOUT_PHYS + L.OFF_MMIO_LAST_READS))).get("value"),
        "2",
      );
      assert.equal(
        (await one(api, vm, "u64p", hex(L.LAYOUT_PHYS + L.OFF_MMIO_ID))).get("value"),
        String(L.MMIO_ID),
      );

      vm.child.kill("SIGTERM");
      assert.equal(await vm.exited(), 0, "SIGTERM is a clean exit");
      await assert.rejects(Deno.stat(`${vm.dir}/${vm.name}`), "control socket removed");
      assert.match(await Deno.readTextFile(vm.serial), /testvm demo guest: running/);
    } finally {
      await vm.stop();
    }
  });

  Deno.test(`libvmmapi ${api}: unknown names and vanished VMs fail cleanly`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "testvm-" });
    const open = at(
      parse(new TextDecoder().decode(
        (await new Deno.Command(`${BUILD}probe`, {
          args: [LIBS[api], "no-such-vm", "active"],
          env: { TESTVM_DIR: dir },
          stdout: "piped",
        }).output()).stdout,
      )),
      1,
    );
    assert.equal(open.get("err"), "ENOENT");
    await Deno.remove(dir, { recursive: true });

    const vm = await startVm();
    try {
      const child = new Deno.Command(`${BUILD}probe`, {
        args: [
          LIBS[api],
          vm.name,
          "wait",
          "active",
          "reg",
          "0",
          "20",
          "suspend",
          "all",
          "suspend",
          "0",
          "kernemu",
          "0",
          hex(L.LAPIC_GPA + 0x20n),
          "4",
          "mmap",
          "topology",
        ],
        env: { TESTVM_DIR: vm.dir },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Kill the VM only once the probe holds it open and waits on stdin.
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("open ok")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      assert.equal(await vm.stop(), 0);
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode("go\n"));
      await w.close();
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
      const status = await child.status;
      await readAll(child.stderr);
      assert.equal(status.code, 0, "no crash after the VM is gone");
      const out = { stdout: new TextEncoder().encode(text) };
      const lines = parse(new TextDecoder().decode(out.stdout)).slice(3);
      assert.equal(lines.length, 7);
      for (const l of lines) {
        assert.ok(["ENXIO", "EBADF"].includes(l.opt("err") ?? l.get("end")), l.text);
      }
    } finally {
      await vm.stop();
    }
  });
}

Deno.test("a second VM with a live name is refused; a stale name is replaced", async () => {
  const vm = await startVm();
  try {
    const dup = await new Deno.Command(`${BUILD}testvm`, {
      args: ["--name", vm.name, "--cpus", "1", "--mem", "64M", "--guest", "demo"],
      env: { TESTVM_DIR: vm.dir },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.notEqual(dup.code, 0);
    assert.match(new TextDecoder().decode(dup.stderr), /already running/);
    assert.equal(await cpusOf("0200", vm, "active"), "0,1,2,3", "the first VM is untouched");

    vm.child.kill("SIGKILL");
    await vm.exited();
    await Deno.stat(`${vm.dir}/${vm.name}`); // stale socket left behind
    const again = await startVm({ name: vm.name, dir: vm.dir, cpus: 1 });
    assert.equal(await cpusOf("0200", again, "active"), "0");
    assert.equal(await again.stop(), 0);
  } finally {
    await vm.stop();
  }
});

Deno.test("the hypervisor releases an AP while a debugger holds the VM", async () => {
  const vm = await startVm({ extra: ["--spinup-delay", "1500"] });
  try {
    await waitBooted("0200", vm);
    await probe("0200", vm, "writep", hex(L.LAYOUT_PHYS + L.OFF_START_AP), "1");
    await waitFor(
      "the BSP's spin-up request",
      async () =>
        (await one("0200", vm, "readp", hex(L.LAYOUT_PHYS + L.OFF_AP_SPINUP_SENT), "4")).get(
          "hex",
        ) === "01000000",
    );
    // Hold everything; the AP is still in the debug set (bhyve put it there) ...
    const held = await probe("0200", vm, "debug", "suspend", "all", "debug");
    assert.equal(at(held, 0).get("cpus"), "3");
    assert.equal(at(held, 2).get("cpus"), "0,1,2,3");
    // ... until the hypervisor's spin-up takes it out, debugger or not.
    await waitFor(
      "vCPU 3 to leave the debug set",
      async () => (await cpusOf("0200", vm, "debug")) === "0,1,2",
    );
    await assertStill("0200", vm, [0, 1, 2]);
    await assertMoving("0200", vm, [3]);
    const mode = await one("0200", vm, "readp", hex(L.percpuPhys(3, L.PC_MODE)), "4");
    assert.equal(mode.get("hex"), "40000000", "vCPU 3 reached long mode");
    assert.equal(
      (await one("0200", vm, "reg", "3", String(VM_REG.CR3))).get("value") !== "0x0",
      true,
    );
    await probe("0200", vm, "resume", "0", "resume", "1", "resume", "2");
    await assertMoving("0200", vm, [0, 1, 2, 3]);
  } finally {
    await vm.stop();
  }
});

Deno.test("MTRAP exits just continue; a breakpoint exit with BPT_EXIT aborts with status 4", async () => {
  const vm = await startVm();
  try {
    await waitBooted("0200", vm);
    assert.equal(
      (await one("0200", vm, "setcap", "1", String(CAP.MTRAP_EXIT), "1")).opt("err"),
      undefined,
    );
    assert.equal((await one("0200", vm, "cap", "1", String(CAP.MTRAP_EXIT))).get("value"), "1");
    await assertMoving("0200", vm, [0, 1]);
    await one("0200", vm, "setcap", "1", String(CAP.MTRAP_EXIT), "0");

    // What a debugger's software breakpoint would do: int3 over tick().
    const tick = (await nmSymbols()).get("tick")! - L.KERNEL_VBASE;
    const orig = (await one("0200", vm, "u64p", hex(tick))).get("value");
    const patched = (BigInt(orig) & 0xffff_ff00n) | 0xccn;
    await probe(
      "0200",
      vm,
      ...[0, 1].flatMap((c) => ["setcap", String(c), String(CAP.BPT_EXIT), "1"]),
      "writep",
      hex(tick),
      hex(patched),
    );
    assert.equal(await vm.exited(), 4);
    assert.match(await vm.stderr, /unexpected VMEXIT_DEBUG/);
    await assert.rejects(Deno.stat(`${vm.dir}/${vm.name}`), "control socket removed");
  } finally {
    await vm.stop();
  }
});

Deno.test("vm_resume_all_cpus releases the parked AP into its reset state and the VM aborts", async () => {
  const vm = await startVm();
  try {
    await waitBooted("0200", vm);
    await probe("0200", vm, "suspend", "all", "resume", "all");
    assert.equal(await vm.exited(), 4);
    assert.match(await vm.stderr, /vCPU 3/);
  } finally {
    await vm.stop();
  }
});
