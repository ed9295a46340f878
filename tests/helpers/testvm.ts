/**
 * Starting and stopping the test VM (tests/testvm) from a test, for every suite that needs one.
 *
 * Each VM gets a unique name and, unless told otherwise, its own temporary TESTVM_DIR, so
 * tests never see each other's VMs. Always stop it: `await using vm = await TestVm.start()`,
 * or `try { … } finally { await vm.stop(); }`.
 *
 * @example
 * await using vm = await TestVm.start({ cpus: 2 });
 * vm.useDirHere(); // libvmmapi in this process finds VMs under vm.dir
 * const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
 *
 * @module
 */

const BUILD = new URL("../testvm/build/", import.meta.url);

/** The test VM's hypervisor binary. */
export const TESTVM_BINARY = new URL("testvm", BUILD).pathname;

/** The test VM's libvmmapi builds, by API generation. */
export const LIBVMMAPI = {
  "0200": new URL("libvmmapi.so.6", BUILD).pathname,
  "0103": new URL("libvmmapi.so.5", BUILD).pathname,
} as const;

/** Whether the test VM is built (hypervisor, guest and both libraries). */
export function testvmBuilt(): boolean {
  return [TESTVM_BINARY, new URL("guest.elf", BUILD).pathname, ...Object.values(LIBVMMAPI)]
    .every((path) => {
      try {
        return Deno.statSync(path).isFile;
      } catch {
        return false;
      }
    });
}

/**
 * Whether this machine has KVM (/dev/kvm), which the Linux guest needs. The demo guest runs
 * without it too, on the test VM's software CPU (Unicorn 2.1).
 */
export function kvmAvailable(): boolean {
  try {
    Deno.statSync("/dev/kvm");
    return true;
  } catch {
    return false;
  }
}

/** $TESTVM_VMM_VERSION (13, 14 or 15), the version mode suites run under unless they pick one. */
export function envVmmVersion(): 13 | 14 | 15 | undefined {
  const value = Deno.env.get("TESTVM_VMM_VERSION");
  if (value === undefined || value === "") return undefined;
  if (value === "13" || value === "14" || value === "15") return Number(value) as 13 | 14 | 15;
  throw new Error(`TESTVM_VMM_VERSION=${value}: must be 13, 14 or 15`);
}

/** The libvmmapi generation a FreeBSD release ships: .so.5 (0103) with 13.x, else .so.6. */
export function generationFor(version: 13 | 14 | 15 | undefined): "0103" | "0200" {
  return version === 13 ? "0103" : "0200";
}

/** Options for {@link TestVm.start}. */
export interface TestVmOptions {
  /** VM name; default a unique "t-<pid>-<n>". */
  name?: string;
  cpus?: number;
  /** e.g. "64M". */
  mem?: string;
  guest?: string;
  /** TESTVM_DIR for the VM; default a fresh temporary directory, removed on stop. */
  dir?: string;
  /**
   * --vmm-version: which FreeBSD release's vmm.ko and bhyve to imitate (start-up sequence,
   * registers, capabilities). Default: $TESTVM_VMM_VERSION (CI runs suites under 13 and 14
   * too), else the test VM's own default, 15.
   */
  vmmVersion?: 13 | 14 | 15;
  /** --setup-ms: bhyve's set-up time before it resumes the BSP (14 and later). */
  setupMs?: number;
  /** --io-delay: how long emulating a read of the userspace MMIO device takes (ms). */
  ioDelayMs?: number;
  /** --x2apic-vcpu: this vCPU's local APIC starts in x2APIC mode. */
  x2apicVcpu?: number;
  /** --bootrom: a boot ROM segment below 4 GiB, as `bhyve -l` has. */
  bootrom?: boolean;
  /** --fbuf: bhyve's framebuffer segment at 3 GiB, with known contents. */
  fbuf?: boolean;
  /** --spinup-delay in ms. */
  spinupDelayMs?: number;
  serial?: string;
  /** How long to wait for "ready NAME" (ms); default 30000. */
  readyTimeoutMs?: number;
}

let counter = 0;

/** A running test VM process. */
export class TestVm implements AsyncDisposable {
  readonly name: string;
  readonly dir: string;
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit status when the process ends (for whatever reason). */
  readonly exited: Promise<Deno.CommandStatus>;
  #ownsDir: boolean;
  #stderr = "";
  #stderrDone: Promise<void>;
  #stopped = false;

  private constructor(name: string, dir: string, ownsDir: boolean, process: Deno.ChildProcess) {
    this.name = name;
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.process = process;
    this.exited = process.status;
    this.#stderrDone = (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr += chunk;
      }
    })().catch(() => {});
  }

  /** What the VM printed on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Starts a VM and waits for its "ready NAME" line. */
  static async start(options: TestVmOptions = {}): Promise<TestVm> {
    const name = options.name ?? `t-${Deno.pid}-${++counter}`;
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? await Deno.makeTempDir({ prefix: "testvm-" });
    const args = [
      "--name",
      name,
      "--cpus",
      String(options.cpus ?? 1),
      "--mem",
      options.mem ?? "64M",
      "--guest",
      options.guest ?? "demo",
    ];
    const version = options.vmmVersion ?? envVmmVersion();
    if (version !== undefined) args.push("--vmm-version", String(version));
    if (options.setupMs !== undefined) args.push("--setup-ms", String(options.setupMs));
    if (options.ioDelayMs !== undefined) args.push("--io-delay", String(options.ioDelayMs));
    if (options.x2apicVcpu !== undefined) args.push("--x2apic-vcpu", String(options.x2apicVcpu));
    if (options.bootrom) args.push("--bootrom");
    if (options.fbuf) args.push("--fbuf");
    if (options.spinupDelayMs !== undefined) {
      args.push("--spinup-delay", String(options.spinupDelayMs));
    }
    if (options.serial !== undefined) args.push("--serial", options.serial);
    const process = new Deno.Command(TESTVM_BINARY, {
      args,
      env: { TESTVM_DIR: dir },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const vm = new TestVm(name, dir, ownsDir, process);
    try {
      await vm.#waitReady(options.readyTimeoutMs ?? 30_000);
    } catch (error) {
      await vm.stop();
      throw new Error(`${error instanceof Error ? error.message : error}\n${vm.stderr}`, {
        cause: error,
      });
    }
    return vm;
  }

  async #waitReady(timeoutMs: number): Promise<void> {
    const lines = this.process.stdout.pipeThrough(new TextDecoderStream());
    const reader = lines.getReader();
    let buffer = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`testvm ${this.name}: no "ready" within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      for (;;) {
        const { value, done } = await Promise.race([reader.read(), timeout]);
        if (done) throw new Error(`testvm ${this.name} exited before "ready"`);
        buffer += value;
        if (buffer.split("\n").some((line) => line.trim() === `ready ${this.name}`)) break;
      }
    } finally {
      clearTimeout(timer);
    }
    // Keep draining stdout so the VM never blocks on a full pipe.
    (async () => {
      for (;;) if ((await reader.read()).done) break;
    })().catch(() => {});
  }

  /** Points libvmmapi in THIS process at the VM's directory (sets TESTVM_DIR). */
  useDirHere(): void {
    Deno.env.set("TESTVM_DIR", this.dir);
  }

  /** Stops the VM (SIGTERM, then SIGKILL after 5 s) and removes its temporary directory. */
  async stop(): Promise<Deno.CommandStatus> {
    if (!this.#stopped) {
      this.#stopped = true;
      try {
        this.process.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        try {
          this.process.kill("SIGKILL");
        } catch {
          // already gone
        }
        resolve();
      }, 5_000);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    const status = await this.exited;
    await this.#stderrDone;
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
