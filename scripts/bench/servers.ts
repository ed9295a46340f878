/**
 * The two servers under test, started and stopped by the benchmark: ours (a test VM plus
 * `main.ts` serving it) and QEMU's built-in gdbstub. Each side can be frozen while the other is
 * measured, so neither side's guest steals the machine's two cores from the other: QEMU with
 * SIGSTOP; ours by a parked debugger connection that holds every vCPU (SIGSTOP on the test VM
 * would make libvmmapi calls time out, and the server would take the VM for gone).
 *
 * @module
 */
import { RUN_PERMISSIONS } from "../../cli.ts";
import { freePort } from "../../tests/helpers/stub.ts";
import { LIBVMMAPI, TestVm } from "../../tests/helpers/testvm.ts";
import { RspClient } from "./rsp_client.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A process whose resource use the benchmark reads from /proc. */
export interface Measured {
  /** The process that serves the debugger (ours: the deno process; QEMU: qemu itself). */
  serverPid: number;
  port: number;
  /** Stops the guest, so it takes no CPU. */
  freeze(): Promise<void>;
  /** Lets it run again. */
  thaw(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether a TCP port is in LISTEN state on this machine (read from /proc, no connection). */
export function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(`:${hex}`) && fields[3] === "0A") return true;
    }
  }
  return false;
}

async function waitListening(port: number, what: string, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!listening(port)) {
    if (!alive()) throw new Error(`${what} exited before listening on port ${port}`);
    if (Date.now() > deadline) throw new Error(`${what}: not listening on ${port} after 60 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Drains a stream into a string (kept for error messages). */
function drain(stream: ReadableStream<Uint8Array>, sink: { text: string }): Promise<void> {
  return (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      sink.text = (sink.text + chunk).slice(-20_000);
    }
  })().catch(() => {});
}

/** Our side: a test VM and bhyve-gdbstub serving it. */
export class OursServer implements Measured {
  readonly vm: TestVm;
  readonly process: Deno.ChildProcess;
  readonly port: number;
  readonly log = { text: "" };
  #alive = true;

  private constructor(vm: TestVm, process: Deno.ChildProcess, port: number) {
    this.vm = vm;
    this.process = process;
    this.port = port;
    process.status.then(() => (this.#alive = false));
    drain(process.stderr, this.log);
    drain(process.stdout, this.log);
  }

  get serverPid(): number {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.#alive;
  }

  static async start(cpus: number, mem: string): Promise<OursServer> {
    const vm = await TestVm.start({ cpus, mem, guest: "demo" });
    const port = freePort();
    const process = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...RUN_PERMISSIONS,
        `${ROOT}main.ts`,
        "--vm",
        vm.name,
        "-G",
        `127.0.0.1:${port}`,
        "--vmmapi",
        LIBVMMAPI["0200"],
      ],
      env: { TESTVM_DIR: vm.dir },
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const server = new OursServer(vm, process, port);
    try {
      await waitListening(port, "bhyve-gdbstub", () => server.#alive);
    } catch (error) {
      await server.stop();
      throw new Error(`${(error as Error).message}\n${server.log.text}`);
    }
    return server;
  }

  #parked: RspClient | undefined;

  /** Attaches a debugger that just sits there: every vCPU parked. */
  async freeze(): Promise<void> {
    if (this.#parked !== undefined) return;
    const client = await RspClient.connect(this.port);
    await client.stopReason();
    this.#parked = client;
  }

  /** Detaches the parked debugger (the VM runs) and lets the server settle. */
  async thaw(): Promise<void> {
    const client = this.#parked;
    if (client === undefined) return;
    this.#parked = undefined;
    try {
      await client.request("D");
    } finally {
      client.close();
    }
    await new Promise((r) => setTimeout(r, 150));
  }

  async stop(): Promise<void> {
    await this.thaw().catch(() => {});
    if (this.#alive) signal(this.process.pid, "SIGTERM");
    const timer = setTimeout(() => signal(this.process.pid, "SIGKILL"), 5000);
    await this.process.status;
    clearTimeout(timer);
    await this.vm.stop();
  }
}

/** QEMU with its gdbstub, booting nothing; `accel` says whether KVM took it. */
export class QemuServer implements Measured {
  readonly process: Deno.ChildProcess;
  readonly port: number;
  readonly accel: "kvm" | "tcg";
  readonly log = { text: "" };
  #alive = true;

  private constructor(process: Deno.ChildProcess, port: number, accel: "kvm" | "tcg") {
    this.process = process;
    this.port = port;
    this.accel = accel;
    process.status.then(() => (this.#alive = false));
    drain(process.stderr, this.log);
    drain(process.stdout, this.log);
  }

  get serverPid(): number {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Starts QEMU paused (-S); KVM first, TCG if KVM refuses. */
  static async start(cpus: number, memMiB: number, accel?: "kvm" | "tcg"): Promise<QemuServer> {
    for (const candidate of accel ? [accel] : (["kvm", "tcg"] as const)) {
      const port = freePort();
      const process = new Deno.Command("qemu-system-x86_64", {
        args: [
          "-accel",
          candidate,
          "-m",
          `${memMiB}M`,
          "-smp",
          String(cpus),
          "-nodefaults",
          "-display",
          "none",
          "-monitor",
          "none",
          "-serial",
          "none",
          "-S",
          "-gdb",
          `tcp:127.0.0.1:${port}`,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const server = new QemuServer(process, port, candidate);
      try {
        await waitListening(port, "qemu", () => server.#alive);
        return server;
      } catch (error) {
        await server.stop();
        if (candidate === "tcg") throw new Error(`${(error as Error).message}\n${server.log.text}`);
      }
    }
    throw new Error("unreachable");
  }

  freeze(): Promise<void> {
    signal(this.process.pid, "SIGSTOP");
    return Promise.resolve();
  }

  thaw(): Promise<void> {
    signal(this.process.pid, "SIGCONT");
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    await this.thaw();
    if (this.#alive) signal(this.process.pid, "SIGTERM");
    const timer = setTimeout(() => signal(this.process.pid, "SIGKILL"), 5000);
    await this.process.status;
    clearTimeout(timer);
  }
}
