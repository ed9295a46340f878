/**
 * QEMU booting the stock kernel until it sits in its panic loop: the Linux tests' command line
 * with `panic=0` (the kernel waits instead of rebooting once it finds no root file system), so
 * every subsystem is up and crash has a panic task to show. KVM where /dev/kvm exists, else
 * QEMU's TCG (seconds either way). Used by the dump test and the dump benchmark.
 *
 * @module
 */
import { kvmAvailable } from "../helpers/testvm.ts";
import { runGdb } from "../helpers/gdb.ts";
import { freePort } from "../helpers/stub.ts";
import { CMDLINE, until } from "./linux.ts";

const PANICKED = /end Kernel panic - not syncing/;

/** Options for {@link bootToPanic}. */
export interface PanicOptions {
  /** QEMU's -m, e.g. "128M". */
  mem: string;
  vcpus: number;
  /** More QEMU arguments (e.g. a memory backend). */
  extra?: string[];
}

function startQemu(vmlinux: string, dir: string, options: PanicOptions, extra: string[]) {
  const accel = kvmAvailable() ? "kvm" : "tcg";
  return new Deno.Command("qemu-system-x86_64", {
    args: [
      // kvm_pvm refuses the ARCH_CAPABILITIES MSR that QEMU sets for -cpu host/max.
      ...["-accel", accel, "-cpu", accel === "kvm" ? "host,-arch-capabilities" : "max"],
      ...["-kernel", vmlinux, "-append", CMDLINE.replace("panic=-1", "panic=0")],
      ...["-m", options.mem, "-smp", String(options.vcpus), "-nographic", "-no-reboot"],
      ...["-nodefaults", "-serial", `file:${dir}/serial.log`],
      ...["-qmp", `unix:${dir}/qmp.sock,server=on,wait=off`],
      ...extra,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Starts QEMU with its serial log and QMP socket in `dir`; resolves once it panicked. */
export async function bootToPanic(
  vmlinux: string,
  dir: string,
  options: PanicOptions,
): Promise<Deno.ChildProcess> {
  const process = startQemu(vmlinux, dir, options, options.extra ?? []);
  const serial = () => Deno.readTextFile(`${dir}/serial.log`).catch(() => "");
  try {
    await until("the kernel's panic", async () => PANICKED.test(await serial()), 300_000);
  } catch (error) {
    process.kill("SIGKILL");
    await process.status;
    throw error;
  }
  return process;
}

/**
 * Boots the kernel in QEMU until vCPU 0 reaches `symbol` (a hardware breakpoint through QEMU's
 * gdb stub), and has QEMU save it there with `dump-guest-memory` into `dir`/early.core and, with
 * paging, `dir`/early-p.core (HMP through the stub's `monitor`). Returns gdb's output.
 */
export async function qemuDumpAt(
  vmlinux: string,
  dir: string,
  symbol: string,
  options: PanicOptions,
): Promise<string> {
  const port = freePort();
  const process = startQemu(vmlinux, dir, options, ["-S", "-gdb", `tcp:127.0.0.1:${port}`]);
  try {
    const { output } = await runGdb([
      `file ${vmlinux}`,
      `target remote 127.0.0.1:${port}`,
      `hbreak ${symbol}`,
      "continue",
      `monitor dump-guest-memory ${dir}/early.core`,
      `monitor dump-guest-memory -p ${dir}/early-p.core`,
      "kill",
    ], { timeoutMs: 300_000 });
    return output;
  } finally {
    try {
      process.kill("SIGKILL");
    } catch {
      // gdb's `kill` ended QEMU already
    }
    await process.status;
  }
}
