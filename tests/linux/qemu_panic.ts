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

/** How long the console may stay silent before a boot counts as stuck (ms). */
const SILENT_MS = 60_000;
/** Boots tried before giving up: TCG with two vCPUs now and then stops making progress. */
const BOOTS = 2;

/**
 * Starts QEMU with its serial log and QMP socket in `dir`; resolves once it panicked. QEMU's
 * TCG (no /dev/kvm) with two vCPUs has been seen to stall mid-boot, its console silent for
 * minutes at a random point (twice in a day, at "Loading compiled-in X.509 certificates" and
 * in ACPI's PCI set-up); a boot whose console is silent for a minute is killed, its last line
 * printed, and the boot tried once more.
 */
export async function bootToPanic(
  vmlinux: string,
  dir: string,
  options: PanicOptions,
): Promise<Deno.ChildProcess> {
  const log = `${dir}/serial.log`;
  const serial = () => Deno.readTextFile(log).catch(() => "");
  for (let boot = 1;; boot++) {
    const process = startQemu(vmlinux, dir, options, options.extra ?? []);
    let seen = "";
    let changed = Date.now();
    let stuck = false;
    try {
      await until("the kernel's panic", async () => {
        const text = await serial();
        if (text.length !== seen.length) [seen, changed] = [text, Date.now()];
        stuck = Date.now() - changed > SILENT_MS;
        return PANICKED.test(text) || stuck;
      }, 300_000);
      if (!stuck) return process;
    } catch (error) {
      process.kill("SIGKILL");
      await process.status;
      throw error;
    }
    process.kill("SIGKILL");
    await process.status;
    const last = seen.trimEnd().split("\n").at(-1) ?? "";
    if (boot === BOOTS) {
      throw new Error(`QEMU's boot stalled ${BOOTS} times; the last at: ${last}`);
    }
    console.error(
      `bootToPanic: boot ${boot} stalled (console silent ${SILENT_MS / 1000} s at ` +
        `"${last}"); booting again`,
    );
    await Deno.remove(log).catch(() => {});
    await Deno.remove(`${dir}/qmp.sock`).catch(() => {});
  }
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
