/**
 * A stock Linux kernel (Debian's cloud vmlinux) booted two ways for the Linux end-to-end tests:
 * in the test VM (`testvm --linux`, served by bhyve-gdbstub) and in QEMU (its own gdb stub).
 * Both get the same vmlinux, command line, memory and vCPU count, and both boot it through the
 * PVH entry, so a debugger must see the same kernel in both.
 *
 * Guest code runs ~1000x slower than native on the dev machines' KVM (kvm_pvm): the kernel
 * reaches start_kernel's call tree (setup_arch and on) within seconds to a minute, never a shell.
 *
 * @module
 */
import { TESTVM_BINARY } from "../helpers/testvm.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/**
 * The kernel command line for both VMs: the test VM's default (LINUX_DEFAULT_CMDLINE in
 * tests/testvm/hv/main.c, which says why each word is there), spelled out so that QEMU gets
 * exactly the same.
 */
export const CMDLINE = "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr lpj=1000000 " +
  "tsc=reliable swiotlb=noforce noxsave clearcpuid=cx16,popcnt,smap panic=0";
export const MEM = "128M";
export const CPUS = 1;

/** What the serial console shows once the kernel is inside start_kernel (setup_arch on). */
export const IN_START_KERNEL = /BIOS-e820: \[mem /;

/** Fetches (or reuses) the vmlinux through scripts/linux_kernel.sh; returns its path. */
export function vmlinuxPath(): Promise<string> {
  return fetchScript("linux_kernel.sh");
}

/** Runs a fetch script of scripts/ (progress on stderr); returns the path it prints last. */
export async function fetchScript(name: string, args: string[] = []): Promise<string> {
  const out = await new Deno.Command(`${ROOT}scripts/${name}`, {
    args,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const path = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  if (!out.success || path === "") throw new Error(`scripts/${name} failed`);
  return path;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A booting kernel (test VM or QEMU) whose serial console goes to a file. */
export abstract class Booting implements AsyncDisposable {
  readonly dir: string;
  readonly serialPath: string;
  readonly process: Deno.ChildProcess;
  readonly startedAt = Date.now();
  #exited = false;
  #stderr = "";

  protected constructor(dir: string, process: Deno.ChildProcess) {
    this.dir = dir;
    this.serialPath = `${dir}/serial.log`;
    this.process = process;
    process.status.then(() => this.#exited = true);
    (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr += chunk;
      }
    })().catch(() => {});
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The process has exited. */
  get exited(): boolean {
    return this.#exited;
  }

  /** The serial console so far. */
  serial(): string {
    try {
      return Deno.readTextFileSync(this.serialPath);
    } catch {
      return "";
    }
  }

  /** Waits until the console matches `pattern`; throws with the console on a timeout or exit. */
  async waitSerial(pattern: RegExp, timeoutMs: number, pollMs = 250): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.serial())) {
      if (this.#exited || Date.now() > deadline) {
        throw new Error(
          `${this.constructor.name}: no ${pattern} on the console after ${
            Date.now() - this.startedAt
          } ms${this.#exited ? " (exited)" : ""}\n--- console ---\n${this.serial()}\n` +
            `--- stderr ---\n${this.#stderr}`,
        );
      }
      await sleep(pollMs);
    }
    return Date.now() - this.startedAt;
  }

  async stop(): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 5000);
    await this.process.status;
    clearTimeout(timer);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** `testvm --linux`: the VM a bhyve-gdbstub serves. */
export class LinuxTestVm extends Booting {
  readonly name: string;

  private constructor(name: string, dir: string, process: Deno.ChildProcess) {
    super(dir, process);
    this.name = name;
  }

  static async start(vmlinux: string): Promise<LinuxTestVm> {
    const name = `lx-${Deno.pid}`;
    const dir = await Deno.makeTempDir({ prefix: "testvm-linux-" });
    const process = new Deno.Command(TESTVM_BINARY, {
      args: [
        ...["--name", name, "--cpus", String(CPUS), "--mem", MEM],
        ...["--linux", vmlinux, "--cmdline", CMDLINE, "--serial", `${dir}/serial.log`],
      ],
      env: { TESTVM_DIR: dir },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new LinuxTestVm(name, dir, process);
  }
}

/** QEMU booting the same vmlinux (`-kernel`, PVH), with its gdb stub and a QMP socket. */
export class LinuxQemu extends Booting {
  readonly gdbPort: number;
  readonly accel: string;

  private constructor(dir: string, process: Deno.ChildProcess, port: number, accel: string) {
    super(dir, process);
    this.gdbPort = port;
    this.accel = accel;
  }

  get qmpPath(): string {
    return `${this.dir}/qmp.sock`;
  }

  /** `paused`: QEMU's -S, the kernel's first instruction waits for gdb's `continue`. */
  static async start(
    vmlinux: string,
    port: number,
    accel = "kvm",
    paused = false,
  ): Promise<LinuxQemu> {
    const dir = await Deno.makeTempDir({ prefix: "qemu-linux-" });
    const process = new Deno.Command("qemu-system-x86_64", {
      args: [
        // kvm_pvm refuses the ARCH_CAPABILITIES MSR that QEMU sets for -cpu host/max.
        ...["-accel", accel, "-cpu", accel === "kvm" ? "host,-arch-capabilities" : "max"],
        ...["-kernel", vmlinux, "-append", CMDLINE],
        ...["-m", MEM, "-smp", String(CPUS), "-nographic", "-no-reboot", "-nodefaults"],
        ...["-serial", `file:${dir}/serial.log`, "-gdb", `tcp:127.0.0.1:${port}`],
        ...["-qmp", `unix:${dir}/qmp.sock,server=on,wait=off`],
        ...(paused ? ["-S"] : []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new LinuxQemu(dir, process, port, accel);
  }

  /** QMP query-status: "running", "debug" (stopped by gdb), "paused", "prelaunch" (-S), ... */
  async status(): Promise<string> {
    const reply = await this.qmp("query-status") as { return?: { status?: string } };
    return reply.return?.status ?? "unknown";
  }

  /** One QMP command (e.g. "cont", "stop"); waits up to 10 s for QEMU's QMP socket. */
  async qmp(execute: string): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 10_000;
    let conn: Deno.UnixConn;
    for (;;) {
      try {
        conn = await Deno.connect({ transport: "unix", path: this.qmpPath });
        break;
      } catch (error) {
        if (Date.now() > deadline || this.exited) throw error;
        await sleep(50);
      }
    }
    try {
      const lines = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      const next = async (): Promise<Record<string, unknown>> => {
        for (;;) {
          const newline = buffer.indexOf("\n");
          if (newline >= 0) {
            const line = buffer.slice(0, newline);
            buffer = buffer.slice(newline + 1);
            const message = JSON.parse(line);
            if (!("event" in message)) return message;
            continue;
          }
          const { value, done } = await lines.read();
          if (done) throw new Error("QMP closed");
          buffer += value;
        }
      };
      const send = (cmd: string) =>
        conn.write(new TextEncoder().encode(JSON.stringify({ execute: cmd }) + "\n"));
      await next(); // greeting
      await send("qmp_capabilities");
      await next();
      await send(execute);
      const reply = await next();
      lines.releaseLock();
      return reply;
    } finally {
      conn.close();
    }
  }
}

/** Resolves once `check` holds, polling every 50 ms; rejects after `timeoutMs`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** linux_banner, read from the vmlinux file itself (ELF symbol table and program headers). */
export async function bannerFromElf(path: string): Promise<{ text: string; vaddr: bigint }> {
  using file = await Deno.open(path);
  const read = async (offset: number, length: number) => {
    const buf = new Uint8Array(length);
    await file.seek(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = await file.read(buf.subarray(got));
      if (n === null) throw new Error(`${path}: short read at ${offset}`);
      got += n;
    }
    return new DataView(buf.buffer);
  };
  const eh = await read(0, 64);
  const num = (v: DataView, off: number) => Number(v.getBigUint64(off, true));
  const phoff = num(eh, 0x20), shoff = num(eh, 0x28);
  const phnum = eh.getUint16(0x38, true), shnum = eh.getUint16(0x3c, true);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const sh = await read(shoff + i * 64, 64);
    sections.push({
      type: sh.getUint32(4, true),
      offset: num(sh, 0x18),
      size: num(sh, 0x20),
      link: sh.getUint32(0x28, true),
    });
  }
  const symtab = sections.find((s) => s.type === 2); // SHT_SYMTAB
  if (symtab === undefined) throw new Error(`${path}: no symbol table`);
  const strtab = sections[symtab.link]!;
  const names = new Uint8Array((await read(strtab.offset, strtab.size)).buffer);
  const syms = await read(symtab.offset, symtab.size);
  const wanted = new TextEncoder().encode("linux_banner\0");
  let vaddr: bigint | undefined;
  for (let off = 0; off + 24 <= symtab.size && vaddr === undefined; off += 24) {
    const name = syms.getUint32(off, true);
    if (wanted.every((b, i) => names[name + i] === b)) vaddr = syms.getBigUint64(off + 8, true);
  }
  if (vaddr === undefined) throw new Error(`${path}: no linux_banner symbol`);
  for (let i = 0; i < phnum; i++) {
    const ph = await read(phoff + i * 56, 56);
    const [offset, va, filesz] = [
      ph.getBigUint64(8, true),
      ph.getBigUint64(16, true),
      ph
        .getBigUint64(32, true),
    ];
    if (ph.getUint32(0, true) === 1 && vaddr >= va && vaddr < va + filesz) {
      const bytes = new Uint8Array((await read(Number(offset + vaddr - va), 512)).buffer);
      return { text: new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0))), vaddr };
    }
  }
  throw new Error(`${path}: linux_banner is not in a loaded segment`);
}

/** Physical address of a kernel image symbol (nokaslr: virtual - __START_KERNEL_map). */
export function kernelPhys(vaddr: bigint): bigint {
  return vaddr - 0xffffffff80000000n;
}
