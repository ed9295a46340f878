/**
 * The machine line of the benchmark report: CPU, cores, kernel, KVM flavour and the versions
 * of Deno, gdb and QEMU, each read from the system (never assumed).
 *
 * @module
 */

async function firstLine(program: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "null" })
      .output();
    return new TextDecoder().decode(out.stdout).split("\n")[0]!.trim();
  } catch {
    return "not found";
  }
}

function read(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Which KVM module serves /dev/kvm (kvm_intel, kvm_amd, kvm_pvm …). */
function kvmFlavour(): string {
  const modules: string[] = [];
  try {
    for (const entry of Deno.readDirSync("/sys/module")) {
      if (/^kvm_/.test(entry.name)) modules.push(entry.name);
    }
  } catch {
    // no sysfs
  }
  const present = (() => {
    try {
      Deno.statSync("/dev/kvm");
      return true;
    } catch {
      return false;
    }
  })();
  return present ? (modules.sort().join("+") || "kvm") : "no /dev/kvm";
}

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  kvm: string;
  deno: string;
  gdb: string;
  qemu: string;
}

export async function machine(): Promise<Machine> {
  const cpuinfo = read("/proc/cpuinfo");
  return {
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    cores: navigator.hardwareConcurrency,
    kernel: read("/proc/sys/kernel/osrelease").trim() || Deno.osRelease(),
    kvm: kvmFlavour(),
    deno: Deno.version.deno,
    gdb: (await firstLine("gdb", ["--version"])).replace(/^GNU gdb \([^)]*\)\s*/, ""),
    qemu: (await firstLine("qemu-system-x86_64", ["--version"])).replace(
      /^QEMU emulator version\s*/,
      "",
    ),
  };
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, KVM ${m.kvm}, Deno ${m.deno}, ` +
    `gdb ${m.gdb}, QEMU ${m.qemu}`;
}
