/**
 * End-to-end: a stock Debian Linux kernel, debugged with its own vmlinux symbols.
 *
 *  1. gdb and lldb through bhyve-gdbstub (`deno run main.ts`, a separate process) serving the
 *     test VM (`testvm --linux`), while the kernel boots in start_kernel's call tree;
 *  2. the same gdb script against QEMU booting the same vmlinux the same way (PVH entry, same
 *     command line, memory and vCPUs), printed side by side with (1) and compared where the two
 *     must agree.
 *
 * Nothing is skipped: without a cached vmlinux the test fetches it (scripts/linux_kernel.sh,
 * ~280 MB). The two kernels never boot at the same time (the dev machines have 2 shared cores).
 *
 *   deno test -A tests/linux/
 */
import assert from "node:assert/strict";
import { loadVmmapi } from "../../ffi/mod.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { runLldb } from "../helpers/lldb.ts";
import { freePort, Stub } from "../helpers/stub.ts";
import { kvmAvailable, LIBVMMAPI } from "../helpers/testvm.ts";
import {
  assertLxView,
  gdbScriptsPath,
  LATER_IN_BOOT,
  lxPreamble,
  lxScript,
  type LxView,
  lxView,
} from "./lx_scripts.ts";
import {
  bannerFromElf,
  CPUS,
  IN_START_KERNEL,
  kernelPhys,
  LinuxQemu,
  LinuxTestVm,
  until,
  vmlinuxPath,
} from "./linux.ts";

/** Time for a kernel to reach setup_arch; generous, as the 2 cores are shared. */
const BOOT_TIMEOUT_MS = 240_000;
/** Time for a kernel to get from setup_arch past mnt_init (LATER_IN_BOOT); as generous. */
const LATER_TIMEOUT_MS = 480_000;
/** How long the kernel runs between `continue` and the Ctrl-C. */
const RUN_MS = 3000;

/**
 * The Linux guest in the test VM needs KVM: without /dev/kvm the test VM runs on a software CPU,
 * which has no interrupt controller or timer to deliver a kernel's interrupts. Those tests are
 * ignored then, and said so; QEMU's half (TCG) runs everywhere.
 */
const ignore = !kvmAvailable();
if (ignore) {
  console.log(
    "tests/linux: the test VM's Linux runs are ignored: the Linux guest needs KVM (/dev/kvm), " +
      "missing here; the test VM's software CPU has no interrupt controller or timer for a " +
      "kernel. QEMU's runs (TCG) go on.",
  );
}
const vmlinux = await vmlinuxPath();
const { text: banner, vaddr: bannerAddress } = await bannerFromElf(vmlinux);
/** The kernel's own gdb helpers for this vmlinux (scripts/linux_gdb_scripts.sh). */
const lxScripts = await gdbScriptsPath(vmlinux);

/** Physical addresses of the kernel's two top-level page tables (the boot one, then swapper's). */
async function pageTableRoots(): Promise<bigint[]> {
  const { output } = await runGdb(["info address early_top_pgt", "info address init_top_pgt"], {
    preamble: ["set pagination off", `file ${vmlinux}`],
    timeoutMs: 120_000,
  });
  const roots = [...output.matchAll(/at address (0x[0-9a-f]+)/g)].map((m) => BigInt(m[1]!));
  assert.equal(roots.length, 2, output);
  return roots.map(kernelPhys);
}

/** The one gdb script both targets get; each section starts with `==NAME`. */
function gdbScript(address: string): string[] {
  const sections: Record<string, string[]> = {
    threads: ["info threads"],
    bt: ["bt 40"],
    banner: ["x/s linux_banner"],
    comm: ["p init_task.comm"],
    regs: ["info registers"],
    before: ["info registers rip rsp rax rbx rcx rdx rsi rdi r8 r9 r10 r11 r12 r13 r14 r15"],
    run: ["continue"],
    after: ["info registers rip rsp rax rbx rcx rdx rsi rdi r8 r9 r10 r11 r12 r13 r14 r15"],
    detach: ["detach"],
  };
  return [
    `target remote ${address}`,
    ...sectioned(sections),
  ];
}

const GDB_PREAMBLE = (file: string) => [
  "set pagination off",
  "set confirm off",
  "set print elements 0",
  `file ${file}`,
];

/** What one gdb run showed, reduced to what can be compared between two VMs. */
interface GdbView {
  output: string;
  s: Record<string, string>;
  threads: number;
  frames: string[];
  banner: string | undefined;
  comm: string | undefined;
  regNames: string[];
  reg(name: string): bigint | undefined;
}

function view(output: string): GdbView {
  const s = sectionsOf(output);
  const regs = s.regs ?? "";
  return {
    output,
    s,
    threads: [...(s.threads ?? "").matchAll(/^[* ] +\d+ +Thread /gm)].length,
    frames: [...(s.bt ?? "").matchAll(/^#\d+ +(?:0x[0-9a-f]+ in )?(\S+) /gm)].map((m) => m[1]!),
    banner: /<linux_banner>:\s+"(.*)"$/m.exec(s.banner ?? "")?.[1],
    comm: /= "([^"\\]*)/.exec(s.comm ?? "")?.[1],
    regNames: [...regs.matchAll(/^(\w+) +(?:0x|-?\d|\[)/gm)].map((m) => m[1]!),
    reg: (name) => {
      const m = new RegExp(`^${name} +(0x[0-9a-f]+)`, "m").exec(regs);
      return m === null ? undefined : BigInt(m[1]!);
    },
  };
}

/** The kernel moved on between `before` and `after`: some register of the file differs. */
function moved(v: GdbView): boolean {
  const grab = (text: string) => [...text.matchAll(/^(\w+) +(0x[0-9a-f]+)/gm)].map((m) => m[2]);
  const [a, b] = [grab(v.s.before ?? ""), grab(v.s.after ?? "")];
  return a.length > 2 && a.length === b.length && a.some((x, i) => x !== b[i]);
}

/** Checks that must hold for the kernel on any hypervisor. */
function assertKernelView(v: GdbView, roots: bigint[], label: string): void {
  const all = `${label}:\n${v.output}`;
  assert.ok(v.s.detach !== undefined, `gdb did not get to the end\n${all}`);
  assert.equal(v.threads, CPUS, `one thread per vCPU\n${all}`);
  const top = v.frames.indexOf("start_kernel");
  assert.ok(top >= 0, `the backtrace reaches start_kernel\n${v.s.bt}`);
  assert.ok(
    v.frames.slice(0, top).every((f) => /^[a-z_][\w.]*$/.test(f) && f !== "??"),
    `every frame below start_kernel resolves to a kernel function\n${v.s.bt}`,
  );
  assert.equal(v.banner, JSON.stringify(banner).slice(1, -1), `x/s linux_banner\n${v.s.banner}`);
  assert.ok(v.comm === "swapper" || v.comm === "swapper/0", `init_task.comm\n${v.s.comm}`);
  assert.match(v.s.regs ?? "", /^efer +0x[0-9a-f]+ +\[ .*\bLMA\b.* \]/m, "long mode");
  const cr3 = v.reg("cr3");
  assert.ok(cr3 !== undefined && roots.includes(cr3 & ~0xfffn), `kernel's CR3\n${v.s.regs}`);
  assert.match(
    v.s.regs ?? "",
    /^rip +0xffffffff8[0-9a-f]+ +0xffffffff8[0-9a-f]+ <\w+/m,
    "rip in the kernel",
  );
  assert.match(v.s.run ?? "", /received signal SIGINT/, `Ctrl-C stopped it\n${all}`);
  assert.ok(moved(v), `continue ran the kernel forward\n${v.s.before}\n${v.s.after}`);
}

function sideBySide(left: string, right: string, titles: [string, string]): string {
  const a = left.split("\n"), b = right.split("\n");
  const width = Math.min(90, Math.max(titles[0].length, ...a.map((l) => l.length)));
  const cut = (l: string) => l.length > width ? `${l.slice(0, width - 1)}…` : l.padEnd(width);
  const lines = [`${cut(titles[0])} | ${titles[1]}`, `${"-".repeat(width)}-+-${"-".repeat(40)}`];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    lines.push(`${cut(a[i] ?? "")} | ${b[i] ?? ""}`);
  }
  return lines.join("\n");
}

/** The registers gdb's x86-64 description has on every kernel target, in gdb's order. */
const CORE_REGS = [
  ..."rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip eflags".split(" "),
  ..."cs ss ds es fs gs fs_base gs_base k_gs_base cr0 cr2 cr3 cr4 cr8 efer".split(" "),
];

let testvmView: GdbView | undefined;
let testvmLx: LxView | undefined;

/** Resolves once gdb holds the test VM's vCPU 0 and then runs it again (`continue`). */
async function attachedAndContinued(vm: LinuxTestVm): Promise<void> {
  Deno.env.set("TESTVM_DIR", vm.dir);
  const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
  const handle = api.open(vm.name);
  try {
    await until("the attach", () => handle.debugCpus().includes(0), 120_000);
    await until("the continue", () => !handle.debugCpus().includes(0), 120_000);
  } finally {
    handle.close();
    api.close();
  }
}

Deno.test({
  name: "Linux in the test VM: gdb and lldb through bhyve-gdbstub",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const roots = await pageTableRoots();
    await using vm = await LinuxTestVm.start(vmlinux);
    const bootMs = await vm.waitSerial(IN_START_KERNEL, BOOT_TIMEOUT_MS);
    console.log(`testvm: kernel in setup_arch after ${bootMs} ms`);
    await using stub = await Stub.start({ vm: vm.name, dir: vm.dir });

    await t.step("gdb: threads, bt, banner, init_task, registers, continue + Ctrl-C", async () => {
      Deno.env.set("TESTVM_DIR", vm.dir);
      const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
      const handle = api.open(vm.name);
      try {
        // Ctrl-C once vCPU 0 runs again after `continue` (gdb holds it from the attach on).
        const resumed = (async () => {
          await until("the attach", () => handle.debugCpus().includes(0), 120_000);
          await until("the continue", () => !handle.debugCpus().includes(0), 120_000);
        })();
        const { output } = await runGdb(gdbScript(stub.address), {
          preamble: GDB_PREAMBLE(vmlinux),
          interruptOn: resumed,
          interruptDelayMs: RUN_MS,
          timeoutMs: 180_000,
        });
        testvmView = view(output);
        assertKernelView(testvmView, roots, `bhyve-gdbstub\n${stub.stderr}`);
        assert.match(testvmView.s.threads!, /vCPU 0, held by debugger, long mode/);
        await until(
          "the kernel to run after detach",
          () => !handle.debugCpus().includes(0),
          10_000,
        );
      } finally {
        handle.close();
        api.close();
      }
    });

    await t.step("lldb: backtrace and a memory read", async () => {
      const { output } = await runLldb([
        `target create ${vmlinux}`,
        `gdb-remote ${stub.address}`,
        // Only the first frame: lldb 14 spends minutes in a full unwind of this vmlinux.
        "thread backtrace -c 1",
        `memory read --format c --count 32 0x${bannerAddress.toString(16)}`,
        "register read rip cr3",
        "process detach",
      ], { timeoutMs: 150_000 });
      const all = `${output}\n--- bhyve-gdbstub ---\n${stub.stderr}`;
      assert.match(output, /frame #0: 0xffffffff8[0-9a-f]+ vmlinux-[\w.-]+`\w+/, all);
      assert.match(output, new RegExp(`: ${banner.slice(0, 13)}`), all);
      assert.match(output, /rip = 0xffffffff8[0-9a-f]+ +vmlinux-[\w.-]+`\w+/, all);
      assert.match(output, /Process \d+ detached/, all);
    });

    await t.step("Linux's gdb scripts (lx-*), Ctrl-C later in boot", async () => {
      // Ctrl-C once gdb's `continue` runs the kernel and the console shows mnt_init's line.
      const later = (async () => {
        await attachedAndContinued(vm);
        const ms = await vm.waitSerial(LATER_IN_BOOT, LATER_TIMEOUT_MS);
        console.log(`testvm: kernel past mnt_init after ${ms} ms`);
      })();
      const { output } = await runGdb(lxScript(stub.address), {
        preamble: lxPreamble(vmlinux, lxScripts),
        interruptOn: later,
        interruptDelayMs: 0,
        timeoutMs: LATER_TIMEOUT_MS + 180_000,
      });
      testvmLx = lxView(output);
      assertLxView(testvmLx, banner, vm.serial(), `bhyve-gdbstub\n${stub.stderr}`);
      assert.match(testvmLx.s.info!, /^bhyve-gdbstub \S+ \(gdb thread N is vCPU N-1\)$/m);
    });
  },
});

Deno.test({
  name: "Linux in QEMU: the same gdb script, side by side with the test VM",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(testvmView !== undefined, "the test VM run (previous test) must run first");
    const roots = await pageTableRoots();
    const port = freePort();
    // QEMU starts paused (-S), runs until the console shows setup_arch and is stopped there
    // through QMP, so gdb attaches in start_kernel however fast the accelerator boots (TCG gets
    // from setup_arch to the end of the boot in seconds, less than gdb takes to load the vmlinux).
    const startHeld = async (accel: string) => {
      const started = await LinuxQemu.start(vmlinux, port, accel, true);
      await started.qmp("cont").catch(() => {}); // a QEMU that failed to start says so below
      return started;
    };
    let qemu = await startHeld("kvm");
    try {
      await qemu.waitSerial(/Linux version|BIOS-e820/, 60_000);
    } catch (error) {
      // kvm_pvm may refuse what QEMU needs (its PVH option ROM runs in real mode): use TCG.
      console.log(`qemu -accel kvm failed, falling back to tcg: ${String(error).slice(0, 300)}`);
      await qemu.stop();
      qemu = await startHeld("tcg");
    }
    try {
      const bootMs = await qemu.waitSerial(IN_START_KERNEL, BOOT_TIMEOUT_MS, 5);
      await qemu.qmp("stop");
      console.log(`qemu (-accel ${qemu.accel}): kernel in setup_arch after ${bootMs} ms`);
      const resumed = (async () => {
        await until("the attach", async () => await qemu.status() !== "running", 120_000);
        await until("the continue", async () => await qemu.status() === "running", 120_000);
      })();
      const { output } = await runGdb(gdbScript(`127.0.0.1:${port}`), {
        preamble: GDB_PREAMBLE(vmlinux),
        interruptOn: resumed,
        interruptDelayMs: RUN_MS,
        timeoutMs: 180_000,
      });
      const q = view(output), b = testvmView;
      console.log(
        "\n" +
          sideBySide(b.output, q.output, ["bhyve-gdbstub + test VM", `QEMU -accel ${qemu.accel}`]),
      );
      assertKernelView(q, roots, "QEMU");
      // Where the two must agree.
      assert.equal(b.banner, q.banner);
      assert.equal(b.comm, q.comm);
      assert.equal(b.threads, q.threads);
      // gdb's general registers, as both targets must describe them (QEMU adds its vector
      // registers, bhyve-gdbstub its debug and descriptor-table registers: printed above).
      const core = (names: string[]) => names.filter((n) => CORE_REGS.includes(n));
      assert.deepEqual(core(b.regNames), CORE_REGS, "bhyve-gdbstub's register names");
      assert.deepEqual(core(q.regNames), CORE_REGS, "QEMU's register names");
      console.log(`only bhyve-gdbstub: ${b.regNames.filter((n) => !q.regNames.includes(n))}`);
      console.log(`only QEMU: ${q.regNames.filter((n) => !b.regNames.includes(n))}`);
      assert.ok(b.frames.includes("start_kernel") && q.frames.includes("start_kernel"));
    } finally {
      await qemu.stop();
    }
  },
});

Deno.test({
  name: "Linux's gdb scripts in QEMU (TCG), side by side with the test VM where it runs",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // TCG: the same on every host, and -S makes the Ctrl-C point independent of its speed.
    await using qemu = await LinuxQemu.start(vmlinux, freePort(), "tcg", true);
    const later = (async () => {
      // The QMP socket appears once QEMU is up: until then, not running.
      const running = async () => await qemu.status().catch(() => "") === "running";
      await until("the continue", running, 120_000);
      const ms = await qemu.waitSerial(LATER_IN_BOOT, LATER_TIMEOUT_MS);
      console.log(`qemu (-accel tcg): kernel past mnt_init after ${ms} ms`);
    })();
    const { output } = await runGdb(lxScript(`127.0.0.1:${qemu.gdbPort}`), {
      preamble: lxPreamble(vmlinux, lxScripts),
      interruptOn: later,
      interruptDelayMs: 0,
      timeoutMs: LATER_TIMEOUT_MS + 180_000,
    });
    const q = lxView(output);
    assertLxView(q, banner, qemu.serial(), "QEMU");
    if (ignore) return; // no test VM run to set beside it (no /dev/kvm): said once above
    const b = testvmLx;
    assert.ok(b !== undefined, "the test VM run (first test) must run first");
    console.log(
      "\n" + sideBySide(b.output, q.output, ["bhyve-gdbstub + test VM", "QEMU -accel tcg"]),
    );
    // Where the two must agree (how far each kernel got at the Ctrl-C may differ).
    const section = (v: LxView, name: string): string => (v.s[name] ?? "").trim();
    for (const name of ["version", "cmdline", "cpus"]) {
      assert.equal(section(b, name), section(q, name), name);
    }
    // cpu_number agrees; this_cpu_off is where each kernel put its per-CPU area.
    const cpuNumber = (v: LxView) => section(v, "percpu").split("\n")[0];
    assert.equal(cpuNumber(b), cpuNumber(q), "cpu_number");
    assert.deepEqual(b.tasks[0], q.tasks[0], "lx-ps: init_task");
  },
});
