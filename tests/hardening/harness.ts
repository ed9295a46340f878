/**
 * What the hardening tests share: the real main.ts as a subprocess against a test VM, and a
 * second, independent look at the VM (its debug set and the guest's per-vCPU counters) through
 * this process's own libvmmapi, the way an operator would check a production VM.
 *
 * @module
 */
import { loadVmmapi } from "../../ffi/mod.ts";
import type { VmHandle, Vmmapi } from "../../vmm/mod.ts";
import { RUN_PERMISSIONS } from "../../cli.ts";
import { freePort } from "../helpers/stub.ts";
import { LIBVMMAPI, TestVm } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

/** main.ts, or a variant to try (HARDENING_MAIN=path, e.g. a patch before it lands). */
export const MAIN = Deno.env.get("HARDENING_MAIN") ??
  new URL("../../main.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every `everyMs` until it holds; returns the ms it took, or throws. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  everyMs = 10,
): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
  return performance.now() - start;
}

export { freePort } from "../helpers/stub.ts";

/** The VM a command names: a running test VM, or one that does not exist yet (`w` mode). */
export type VmRef = Pick<TestVm, "name" | "dir">;

/** How main.ts is run, for the server and the subcommands alike. */
export interface MainOptions {
  env?: Record<string, string>;
  generation?: "0200" | "0103";
  /** The program to run instead of {@link MAIN} (a wrapper around the real main()). */
  main?: string;
}

export interface ServerOptions extends MainOptions {
  /** -G argument; default 127.0.0.1:<free port>. */
  listen?: string;
  logLevel?: string;
  /** More arguments for main.ts (e.g. --max-hold 2s). */
  args?: string[];
  /** The line that says the server is up; default its "serving VM" line. */
  ready?: RegExp;
}

/**
 * main.ts with `args` about `vm`, as a user runs it: its permissions, the test VM's libvmmapi,
 * the lock file in the VM's directory.
 */
function mainCommand(vm: VmRef, args: string[], options: MainOptions): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...RUN_PERMISSIONS,
      options.main ?? MAIN,
      ...args,
      "--vmmapi",
      LIBVMMAPI[options.generation ?? "0200"],
    ],
    cwd: ROOT,
    env: { TESTVM_DIR: vm.dir, NO_COLOR: "1", BHYVE_GDBSTUB_LOCK_DIR: vm.dir, ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Runs a subcommand of main.ts to its end (e.g. `release --vm NAME`). */
export async function runMain(
  vm: VmRef,
  args: string[],
  options: MainOptions = {},
): Promise<{ code: number; stderr: string }> {
  const output = await mainCommand(vm, args, options).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

/** main.ts serving a test VM, as a user runs it. */
export class Server implements AsyncDisposable {
  stderr = "";
  readonly #stderrDone: Promise<void>;
  private constructor(
    readonly process: Deno.ChildProcess,
    readonly port: number,
  ) {
    this.#stderrDone = (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr += chunk;
      }
    })().catch(() => {});
    process.stdout.cancel().catch(() => {});
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Starts main.ts and waits for its "serving VM" line (or `options.ready`). */
  static async start(vm: VmRef, options: ServerOptions = {}): Promise<Server> {
    const port = freePort();
    const listen = options.listen ?? `127.0.0.1:${port}`;
    const ready = options.ready ?? /serving VM/;
    const process = mainCommand(vm, [
      "--vm",
      vm.name,
      "-G",
      listen,
      "--log-level",
      options.logLevel ?? "info",
      ...(options.args ?? []),
    ], options).spawn();
    const server = new Server(process, Number(/(\d+)$/.exec(listen)?.[1] ?? port));
    let exited = false;
    process.status.then(() => exited = true);
    try {
      await until(
        () => {
          if (exited) throw new Error(`main.ts exited before its line ${ready}`);
          return ready.test(server.stderr);
        },
        `the server's line ${ready}`,
        30_000,
      );
    } catch (error) {
      await server.kill();
      throw new Error(`${(error as Error).message}\n${server.stderr}`);
    }
    return server;
  }

  /** Resolves with the exit status, or undefined if it did not exit within `ms`. */
  async exited(ms: number): Promise<Deno.CommandStatus | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    });
    try {
      const status = await Promise.race([this.process.status, timeout]);
      if (status !== undefined) await this.#stderrDone;
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill(): Promise<void> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      // already gone
    }
    if ((await this.exited(5000)) === undefined) {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await this.process.status;
    await this.#stderrDone;
  }

  /** The server's open file descriptors, memory mappings and resident set (KiB), from /proc. */
  resources(): { fds: number; maps: number; rssKiB: number; threads: number } {
    const fds = [...Deno.readDirSync(`/proc/${this.pid}/fd`)].length;
    const maps = Deno.readTextFileSync(`/proc/${this.pid}/maps`).split("\n").filter(Boolean)
      .length;
    const status = Deno.readTextFileSync(`/proc/${this.pid}/status`);
    const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    return { fds, maps, rssKiB: field("VmRSS"), threads: field("Threads") };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}

/**
 * An independent look at the VM through this process's libvmmapi: which vCPUs sit in the
 * debug set, and the demo guest's per-vCPU counters (they move only while a vCPU runs).
 */
export class Observer implements Disposable {
  readonly #api: Vmmapi;
  readonly vm: VmHandle;
  #closed = false;

  constructor(testVm: TestVm) {
    testVm.useDirHere();
    this.#api = loadVmmapi({ path: LIBVMMAPI["0200"] });
    this.vm = this.#api.open(testVm.name);
  }

  debugCpus(): number[] {
    return this.vm.debugCpus();
  }

  counter(cpu: number): bigint {
    const bytes = new Uint8Array(8);
    this.vm.readRam(L.percpuPhys(cpu, L.PC_COUNTER), bytes);
    return new DataView(bytes.buffer).getBigUint64(0, true);
  }

  /** Guest-physical bytes (for "memory unchanged" checks). */
  read(gpa: bigint, length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.vm.readRam(gpa, bytes);
    return bytes;
  }

  /** Waits until every vCPU of a `cpus`-vCPU demo guest is out of the debug set and counting. */
  async allRunning(cpus: number, timeoutMs = 30_000): Promise<void> {
    await until(() => this.debugCpus().length === 0, "every vCPU out of the debug set", timeoutMs);
    await this.counting(cpus, timeoutMs);
  }

  /** Waits until every vCPU's counter moves. */
  async counting(cpus: number, timeoutMs = 10_000): Promise<void> {
    const start = Array.from({ length: cpus }, (_, cpu) => this.counter(cpu));
    await until(
      () => start.every((value, cpu) => this.counter(cpu) > value),
      "every vCPU counter to move",
      timeoutMs,
    );
  }

  /** Closes the VM and the library; once (a test may close it before it kills the VM). */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.vm.close();
    } catch {
      // the VM may be gone
    }
    this.#api.close();
  }
}

/** A test VM whose vCPUs all run, and an {@link Observer} of it; disposing stops both. */
export class RunningVm implements AsyncDisposable {
  private constructor(readonly vm: TestVm, readonly observer: Observer) {}

  /** Boots the demo guest on `cpus` vCPUs and waits until every one of them runs. */
  static async start(cpus: number, mem = "64M"): Promise<RunningVm> {
    const vm = await TestVm.start({ cpus, mem });
    let observer: Observer | undefined;
    try {
      observer = new Observer(vm);
      await observer.allRunning(cpus);
      return new RunningVm(vm, observer);
    } catch (error) {
      observer?.[Symbol.dispose]();
      await vm.stop();
      throw error;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.observer[Symbol.dispose]();
    await this.vm.stop();
  }
}

/** Frames a body (no escaping: tests use plain bodies). */
export function packet(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum += body.charCodeAt(i);
  return `$${body}#${(sum & 0xff).toString(16).padStart(2, "0")}`;
}
