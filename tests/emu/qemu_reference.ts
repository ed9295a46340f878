/**
 * QEMU as the reference CPU for differential tests of the emulator: it boots a kernel with its
 * RAM in a shared file (so its memory can be read and snapshotted from outside), stops where
 * told, and single-steps through its gdbstub (interrupts and timers masked while stepping);
 * `info registers` over QMP gives the whole state, segment hidden parts included.
 *
 * @module
 */
import { qmp } from "../linux/qmp.ts";
import type { CpuState, Segment, SegmentName } from "../../emu/emulator.ts";
import { RspClient } from "../../scripts/bench/rsp_client.ts";

const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);

/** A QEMU process with a gdbstub connection and a QMP socket. */
export class QemuReference {
  readonly ramFile: string;
  readonly ramBytes: number;
  #dir: string;
  #process: Deno.ChildProcess;
  #rsp: RspClient;
  #port: number;

  private constructor(
    dir: string,
    ramBytes: number,
    process: Deno.ChildProcess,
    rsp: RspClient,
    port: number,
  ) {
    this.#port = port;
    this.#dir = dir;
    this.ramFile = `${dir}/ram`;
    this.ramBytes = ramBytes;
    this.#process = process;
    this.#rsp = rsp;
  }

  /** Boots `kernel` (PVH) stopped at its first instruction (-S), TCG, one vCPU. */
  static async start(
    kernel: string,
    append: string,
    memMiB: number,
    port: number,
  ): Promise<QemuReference> {
    const dir = await Deno.makeTempDir({ prefix: "emu-qemu-" });
    const process = new Deno.Command("qemu-system-x86_64", {
      args: [
        ...["-accel", "tcg", "-cpu", "max", "-m", `${memMiB}M`, "-S"],
        ...["-object", `memory-backend-file,id=ram,size=${memMiB}M,mem-path=${dir}/ram,share=on`],
        ...["-machine", "pc,memory-backend=ram"],
        ...["-kernel", kernel, "-append", append],
        ...["-nographic", "-nodefaults", "-no-reboot", "-serial", `file:${dir}/serial.log`],
        ...["-gdb", `tcp:127.0.0.1:${port}`, "-qmp", `unix:${dir}/qmp.sock,server=on,wait=off`],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let rsp: RspClient | undefined;
    for (let i = 0; i < 100 && rsp === undefined; i++) {
      try {
        rsp = await RspClient.connect(port);
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (rsp === undefined) throw new Error("QEMU's gdbstub did not come up");
    await rsp.handshake();
    await rsp.stopReason();
    return new QemuReference(dir, memMiB * 1024 * 1024, process, rsp, port);
  }

  /** Runs until a hardware breakpoint at `address` (then removes it). */
  async runTo(address: bigint): Promise<void> {
    const z = `1,${address.toString(16)},1`;
    if ((await this.#rsp.request(`Z${z}`)) !== "OK") throw new Error("QEMU refused Z1");
    await this.#rsp.send("c");
    const stop = latin1((await this.#rsp.receive()).body);
    if (!stop.startsWith("T") && !stop.startsWith("S")) throw new Error(`stop: ${stop}`);
    await this.#rsp.request(`z${z}`);
  }

  /** One instruction; returns rax…r15, rip, eflags from the `g` packet. */
  async step(): Promise<bigint[]> {
    await this.#rsp.send("s");
    const stop = latin1((await this.#rsp.receive()).body);
    if (!stop.startsWith("T") && !stop.startsWith("S")) throw new Error(`step: ${stop}`);
    return this.generalRegisters();
  }

  /** rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8…r15, rip, eflags (QEMU's `g` order). */
  async generalRegisters(): Promise<bigint[]> {
    const g = await this.#rsp.request("g");
    const values: bigint[] = [];
    for (let i = 0; i < 17; i++) values.push(le(g.slice(i * 16, i * 16 + 16)));
    values.push(le(g.slice(17 * 16, 17 * 16 + 8)));
    return values;
  }

  /** The whole state, from QMP `info registers`. */
  async state(): Promise<CpuState> {
    return parseInfoRegisters(await this.registersText());
  }

  /** QMP `info registers` as QEMU prints it. */
  registersText(): Promise<string> {
    return this.#hmp("info registers");
  }

  /** The reference's guest RAM as it is now (the shared file). */
  readRam(gpa: bigint, length: number): Uint8Array {
    using file = Deno.openSync(this.ramFile);
    const bytes = new Uint8Array(length);
    file.seekSync(Number(gpa), Deno.SeekMode.Start);
    let got = 0;
    while (got < length) {
      const n = file.readSync(bytes.subarray(got));
      if (n === null) break;
      got += n;
    }
    return bytes;
  }

  /** A copy of guest RAM now, in a file of its own (for a private emulator image). */
  snapshot(): string {
    const copy = Deno.makeTempFileSync({ dir: this.#dir, prefix: "snap-" });
    Deno.copyFileSync(this.ramFile, copy);
    return copy;
  }

  async #hmp(command: string): Promise<string> {
    const [reply] = await qmp(`${this.#dir}/qmp.sock`, [
      { execute: "human-monitor-command", arguments: { "command-line": command } },
    ]);
    return typeof reply === "string" ? reply : "";
  }

  /** Closes the gdbstub connection (QEMU serves one debugger), leaving QEMU stopped. */
  disconnect(): void {
    this.#rsp.close();
  }

  /** Where QEMU's gdbstub listens. */
  get gdbAddress(): string {
    return `127.0.0.1:${this.#port}`;
  }

  async stop(): Promise<void> {
    try {
      this.#process.kill("SIGKILL");
    } catch {
      // gone already
    }
    await this.#process.status;
    await Deno.remove(this.#dir, { recursive: true });
  }
}

function le(hex: string): bigint {
  let value = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2) {
    value = (value << 8n) | BigInt(parseInt(hex.slice(i, i + 2), 16));
  }
  return value;
}

/** QEMU's segment-cache flags as VMX access rights (inverse of the engine's conversion). */
function accessRights(flags: number, selector: number, name: SegmentName): number {
  const access = ((flags >> 8) & 0xff) | (((flags >> 20) & 0xf) << 12);
  // A null data selector is "unusable" in VMX terms.
  if ((access & 0x80) === 0 && selector === 0 && name !== "cs") return access | 0x10000;
  return access;
}

/** Parses HMP `info registers` (x86-64). */
export function parseInfoRegisters(text: string): CpuState {
  // In long mode QEMU prints RAX…R15 and RIP; otherwise EAX…ESP and EIP (no R8…R15).
  const value = (name: string, otherwise?: string): bigint => {
    const match = new RegExp(`(?:^|[\\s])${name}\\s*=([0-9a-f]+)`, "m").exec(text);
    if (match === null) {
      if (otherwise === undefined) throw new Error(`no ${name} in info registers`);
      return otherwise === "" ? 0n : value(otherwise);
    }
    return BigInt(`0x${match[1]}`);
  };
  const segment = (label: string, name: SegmentName): Segment => {
    const match = new RegExp(`^${label}\\s*=([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)`, "m")
      .exec(text);
    if (match === null) throw new Error(`no ${label} in info registers`);
    const selector = parseInt(match[1]!, 16);
    return {
      selector,
      base: BigInt(`0x${match[2]}`),
      limit: parseInt(match[3]!, 16),
      access: accessRights(parseInt(match[4]!, 16), selector, name),
    };
  };
  const table = (label: string) => {
    const match = new RegExp(`^${label}=\\s*([0-9a-f]+) ([0-9a-f]+)`, "m").exec(text);
    if (match === null) throw new Error(`no ${label} in info registers`);
    return { base: BigInt(`0x${match[1]}`), limit: parseInt(match[2]!, 16) };
  };
  return {
    scalars: {
      rax: value("RAX", "EAX"),
      rbx: value("RBX", "EBX"),
      rcx: value("RCX", "ECX"),
      rdx: value("RDX", "EDX"),
      rsi: value("RSI", "ESI"),
      rdi: value("RDI", "EDI"),
      rbp: value("RBP", "EBP"),
      rsp: value("RSP", "ESP"),
      r8: value("R8", ""),
      r9: value("R9", ""),
      r10: value("R10", ""),
      r11: value("R11", ""),
      r12: value("R12", ""),
      r13: value("R13", ""),
      r14: value("R14", ""),
      r15: value("R15", ""),
      rip: value("RIP", "EIP"),
      eflags: value("RFL", "EFL"),
      cr0: value("CR0"),
      cr2: value("CR2"),
      cr3: value("CR3"),
      cr4: value("CR4"),
      efer: value("EFER"),
      dr0: value("DR0"),
      dr1: value("DR1"),
      dr2: value("DR2"),
      dr3: value("DR3"),
      dr6: value("DR6"),
      dr7: value("DR7"),
    },
    segments: {
      es: segment("ES ", "es"),
      cs: segment("CS ", "cs"),
      ss: segment("SS ", "ss"),
      ds: segment("DS ", "ds"),
      fs: segment("FS ", "fs"),
      gs: segment("GS ", "gs"),
      ldtr: segment("LDT", "ldtr"),
      tr: segment("TR ", "tr"),
    },
    gdtr: table("GDT"),
    idtr: table("IDT"),
  };
}
