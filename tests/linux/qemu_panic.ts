/**
 * QEMU booting the stock kernel until it sits in its panic loop: the Linux tests' command line
 * with `panic=0` (the kernel waits instead of rebooting once it finds no root file system), so
 * every subsystem is up and crash has a panic task to show. KVM where /dev/kvm exists, else
 * QEMU's TCG (seconds either way). Used by the dump test and the dump benchmark.
 *
 * @module
 */
import { kvmAvailable } from "../helpers/testvm.ts";
import { CMDLINE, until } from "./linux.ts";

const PANICKED = /end Kernel panic - not syncing/;

/** Options for {@link bootToPanic}. */
export interface PanicOptions {
  /** QEMU's -m, e.g. "128M". */
  mem: string;
  vcpus: number;
}

/** Starts QEMU with its serial log and QMP socket in `dir`; resolves once it panicked. */
export async function bootToPanic(
  vmlinux: string,
  dir: string,
  options: PanicOptions,
): Promise<Deno.ChildProcess> {
  const accel = kvmAvailable() ? "kvm" : "tcg";
  const process = new Deno.Command("qemu-system-x86_64", {
    args: [
      // kvm_pvm refuses the ARCH_CAPABILITIES MSR that QEMU sets for -cpu host/max.
      ...["-accel", accel, "-cpu", accel === "kvm" ? "host,-arch-capabilities" : "max"],
      ...["-kernel", vmlinux, "-append", CMDLINE.replace("panic=-1", "panic=0")],
      ...["-m", options.mem, "-smp", String(options.vcpus), "-nographic", "-no-reboot"],
      ...["-nodefaults", "-serial", `file:${dir}/serial.log`],
      ...["-qmp", `unix:${dir}/qmp.sock,server=on,wait=off`],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
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
