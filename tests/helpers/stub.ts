/**
 * Runs the real bhyve-gdbstub (main.ts, through `deno run`) as a separate process against a
 * test VM, as a user would, for end-to-end tests.
 *
 * @module
 */
import { RUN_PERMISSIONS } from "../../cli.ts";
import { envVmmVersion, generationFor, LIBVMMAPI } from "./testvm.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

export interface StubOptions {
  /** The VM's name. */
  vm: string;
  /** The VM's TESTVM_DIR (where libvmmapi finds it by name). */
  dir: string;
  /**
   * Which libvmmapi generation; default the one the release in $TESTVM_VMM_VERSION ships
   * ("0103", libvmmapi.so.5, for 13), else "0200" (libvmmapi.so.6).
   */
  generation?: "0103" | "0200";
  /** Prefix the port with `w`. */
  wait?: boolean;
  /** More command-line arguments, e.g. ["--log-level", "debug"]. */
  args?: string[];
  /** How long to wait for the server to listen (ms); default 20000. */
  readyTimeoutMs?: number;
}

/** A free TCP port (closed again at once; good enough for a test; the cli refuses port 0). */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A running bhyve-gdbstub process. */
export class Stub implements AsyncDisposable {
  readonly port: number;
  readonly process: Deno.ChildProcess;
  readonly exited: Promise<Deno.CommandStatus>;
  #stderr = "";
  #stderrDone: Promise<void>;
  #listening = Promise.withResolvers<void>();

  private constructor(port: number, process: Deno.ChildProcess) {
    this.port = port;
    this.process = process;
    this.exited = process.status;
    this.#stderrDone = (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr += chunk;
        if (this.#stderr.includes("serving VM")) this.#listening.resolve();
      }
    })().catch(() => {});
  }

  /** Everything the stub printed on stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** `target remote` argument for gdb / `gdb-remote` for lldb. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the stub and waits until it listens (or, with `wait`, only until it started). */
  static async start(options: StubOptions): Promise<Stub> {
    const port = freePort();
    const lib = LIBVMMAPI[options.generation ?? generationFor(envVmmVersion())];
    const args = [
      "run",
      ...RUN_PERMISSIONS,
      MAIN,
      "--vm",
      options.vm,
      "-G",
      `${options.wait ? "w" : ""}127.0.0.1:${port}`,
      "--vmmapi",
      lib,
      ...(options.args ?? []),
    ];
    const process = new Deno.Command(Deno.execPath(), {
      args,
      env: { TESTVM_DIR: options.dir, NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stub = new Stub(port, process);
    if (!options.wait) await stub.listening(options.readyTimeoutMs ?? 20_000);
    return stub;
  }

  /** Resolves once the stub says it serves the VM; rejects if it exits or times out first. */
  async listening(timeoutMs = 20_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#listening.promise,
        this.exited.then((s) => {
          throw new Error(`bhyve-gdbstub exited (${s.code}) before listening:\n${this.stderr}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`bhyve-gdbstub not listening after ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until the stub's stderr matches `pattern`; false if it does not within `withinMs`. */
  async waitForStderr(pattern: RegExp, withinMs = 20_000): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    while (!pattern.test(this.#stderr)) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /** Stops the stub with SIGTERM (as a user's Ctrl-C would) and returns its exit status. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.process.kill("SIGTERM");
    } catch {
      // already gone
    }
    const status = await this.exited;
    await this.#stderrDone;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
