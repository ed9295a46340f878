/**
 * Linux's own gdb helpers (the kernel's scripts/gdb: lx-version, lx-dmesg, lx-ps, `$lx_current()`,
 * ...) run against a booting kernel: the one gdb script both targets get, what it must show, and
 * the fetch of the scripts themselves (scripts/linux_gdb_scripts.sh).
 *
 * The script stops the kernel later in boot than linux_test.ts's first attach, with a plain
 * Ctrl-C (no breakpoint): once the console shows {@link LATER_IN_BOOT}, the command line is saved,
 * the per-CPU areas are set up and the scheduler is initialised, so every helper has something
 * real to read.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sectioned, sectionsOf } from "../helpers/gdb.ts";
import { CMDLINE, CPUS, fetchScript } from "./linux.ts";

/** mnt_init's line: after setup_command_line, setup_per_cpu_areas and sched_init. */
export const LATER_IN_BOOT = /Mount-cache hash table entries/;

/** Fetches (or reuses) the scripts matching `vmlinux`; returns the path of vmlinux-gdb.py. */
export function gdbScriptsPath(vmlinux: string): Promise<string> {
  return fetchScript("linux_gdb_scripts.sh", [vmlinux]);
}

/** gdb's preamble: the vmlinux, then the kernel's helpers (as `source vmlinux-gdb.py`). */
export function lxPreamble(vmlinux: string, scripts: string): string[] {
  return [
    "set pagination off",
    "set confirm off",
    "set print elements 0",
    `file ${vmlinux}`,
    `source ${scripts}`,
  ];
}

/**
 * The script: attach, `continue` until the caller's Ctrl-C (sent once the console shows
 * {@link LATER_IN_BOOT}), then the helpers. `monitor info version` is what the helpers ask to
 * learn that gdb's thread N is CPU N-1 (utils.py, get_gdbserver_type); $lx_current() and
 * $lx_per_cpu() need that answer.
 */
export function lxScript(address: string): string[] {
  return [
    `target remote ${address}`,
    ...sectioned({
      boot: ["continue"],
      info: ["monitor info version"],
      version: ["lx-version"],
      cmdline: ["lx-cmdline"],
      cpus: ["lx-cpus"],
      ps: ["lx-ps"],
      current: ["p $lx_current().pid", "p $lx_current().comm"],
      percpu: ['p $lx_per_cpu("cpu_number")', 'p/x $lx_per_cpu("this_cpu_off")'],
      offset: ["p/x __per_cpu_offset[0]"],
      dmesg: ["lx-dmesg"],
      detach: ["detach"],
    }),
  ];
}

/** What the helpers showed, in pieces that can be compared between two targets. */
export interface LxView {
  output: string;
  s: Record<string, string>;
  /** lx-ps: [pid, comm] of every task. */
  tasks: [number, string][];
  current: { pid: number; comm: string } | undefined;
  dmesg: string[];
}

export function lxView(output: string): LxView {
  const s = sectionsOf(output);
  const current = /^\$\d+ = (\d+)\n\$\d+ = "([^"\\]*)/m.exec(s.current ?? "");
  return {
    output,
    s,
    tasks: [...(s.ps ?? "").matchAll(/^0x[0-9a-f]+ +(\d+) +(\S+)$/gm)].map((m) => [
      Number(m[1]),
      m[2]!,
    ]),
    current: current === null ? undefined : { pid: Number(current[1]), comm: current[2]! },
    dmesg: (s.dmesg ?? "").split("\n").filter((l) => /^\[ *\d+\.\d+\] /.test(l)),
  };
}

/** `$N = VALUE` lines of a section, in order. */
function values(section: string | undefined): string[] {
  return [...(section ?? "").matchAll(/^\$\d+ = (.*)$/gm)].map((m) => m[1]!);
}

/**
 * What must hold on any hypervisor. `banner` is linux_banner from the vmlinux file; `console` is
 * what the kernel printed on its serial port, which lx-dmesg must reproduce from memory.
 */
export function assertLxView(v: LxView, banner: string, console: string, label: string): void {
  const all = `${label}:\n${v.output}`;
  assert.ok(v.s.detach !== undefined, `gdb did not get to the end\n${all}`);
  assert.match(v.s.boot ?? "", /received signal SIGINT/, `Ctrl-C stopped it\n${all}`);
  assert.ok((v.s.info ?? "").trim() !== "", `monitor info version answers\n${all}`);
  assert.equal((v.s.version ?? "").trim(), banner.trim(), `lx-version\n${all}`);
  assert.equal((v.s.cmdline ?? "").trim(), CMDLINE, `lx-cmdline\n${all}`);
  const cpuList = CPUS === 1 ? "[0]" : `[0-${CPUS - 1}]`;
  assert.match(v.s.cpus ?? "", new RegExp(`Possible CPUs : \\${cpuList}`), `lx-cpus\n${all}`);
  assert.match(v.s.cpus ?? "", /Online CPUs +: \[0/, `lx-cpus\n${all}`);
  assert.deepEqual(v.tasks[0], [0, "swapper/0"], `lx-ps starts at init_task\n${all}`);
  // $lx_current() reads the per-CPU current_task: one of the tasks lx-ps walked.
  const current = v.current;
  assert.ok(
    current !== undefined && v.tasks.some(([pid, comm]) =>
      pid === current.pid &&
      comm === current.comm
    ),
    `$lx_current() is a task lx-ps lists\n${all}`,
  );
  // $lx_per_cpu() adds __per_cpu_offset[0]; this_cpu_off holds that very offset.
  const [cpuNumber, thisCpuOff] = values(v.s.percpu);
  assert.equal(cpuNumber, "0", `$lx_per_cpu("cpu_number")\n${all}`);
  assert.equal(thisCpuOff, values(v.s.offset)[0], `this_cpu_off = __per_cpu_offset[0]\n${all}`);
  assert.ok(!/^0x0$/.test(thisCpuOff ?? "0x0"), `per-CPU areas set up\n${all}`);
  // lx-dmesg decodes the printk ring buffer in guest memory. The console printed the same
  // messages (those under its log level, timestamps rounded rather than cut) up to mnt_init's
  // line, which it showed before the Ctrl-C: each of those must be among lx-dmesg's.
  assert.ok(v.dmesg.some((l) => LATER_IN_BOOT.test(l)), `lx-dmesg reaches mnt_init\n${all}`);
  assert.match(v.dmesg[0] ?? "", /\] Linux version /, `lx-dmesg starts at the banner\n${all}`);
  const texts = new Set(v.dmesg.map((l) => l.replace(/^\[ *\d+\.\d+\] /, "")));
  const printed = [...console.matchAll(/^\[ *\d+\.\d+\] (.*?)\r?$/gm)].map((m) => m[1]!);
  const upTo = printed.findIndex((m) => LATER_IN_BOOT.test(m));
  assert.ok(upTo >= 0, `the console shows mnt_init's line\n${console}`);
  const missing = printed.slice(0, upTo + 1).filter((m) => !texts.has(m));
  assert.deepEqual(missing, [], `console messages lx-dmesg lacks\n${all}`);
}
