/**
 * bhyve-gdbstub: a GDB remote-protocol server for a running bhyve VM.
 *
 * This file parses the command line, sets up logging and wires the layers together
 * (rsp/ ← vmm/ ← ffi/); see ../shared/docs/architecture.md.
 *
 * @module
 */
import { configure, defaultTextFormatter, getLogger, type LogRecord } from "@logtape/logtape";
import { HELP, type Options, parseCommandLine, UsageError, VERSION } from "./cli.ts";
import { loadVmmapi, VmmapiLoadError } from "./ffi/mod.ts";
import { ListenError, type RspServer, serve } from "./rsp/mod.ts";
import { lockVm } from "./vmm/lock.ts";
import { loadEmulator, UnicornLoadError } from "./ffi/emulator.ts";
import { DEFAULT_BUDGET, type EmulationSetup } from "./vmm/emulated_control.ts";
import { openTarget, type Vmmapi, VmmError, type VmTarget, waitAndHold } from "./vmm/mod.ts";

const log = getLogger(["bhyve-gdbstub"]);

/** Runs the program and returns its exit status. */
export async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = parseCommandLine(args, Deno.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bhyve-gdbstub: ${error.message}`);
    return 2;
  }
  switch (command.kind) {
    case "help":
      console.log(HELP);
      return 0;
    case "version":
      console.log(`bhyve-gdbstub ${VERSION}`);
      return 0;
    case "run":
      await setUpLogging(command.options);
      return await run(command.options);
  }
}

async function setUpLogging(options: Options): Promise<void> {
  await configure({
    // Everything goes to stderr, synchronously, so the last lines before an exit are kept.
    sinks: { stderr: (record: LogRecord) => console.error(defaultTextFormatter(record).trimEnd()) },
    loggers: [
      { category: ["bhyve-gdbstub"], lowestLevel: options.logLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Opens the VM, listens, and serves debuggers until a signal or the VM's end. */
async function run(options: Options): Promise<number> {
  let api: Vmmapi;
  try {
    api = loadVmmapi({ path: options.vmmapi });
  } catch (error) {
    if (!(error instanceof VmmapiLoadError)) throw error;
    return fail(error.message);
  }
  log.debug("libvmmapi {path}, API {generation}", { path: api.path, generation: api.generation });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  for (const signal of SIGNALS) Deno.addSignalListener(signal, onSignal);
  try {
    return await serveVm(api, options, stop.signal);
  } finally {
    for (const signal of SIGNALS) Deno.removeSignalListener(signal, onSignal);
    api.close();
  }
}

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

async function serveVm(api: Vmmapi, options: Options, signal: AbortSignal): Promise<number> {
  const { vm, listen } = options;
  // One bhyve-gdbstub per VM: two would fight over the debug set.
  const lock = await lockVm(vm).catch((error: Error) => error);
  if (lock instanceof Error) return fail(lock.message);
  using _lock = lock;
  let target: VmTarget;
  try {
    if (listen.wait) {
      console.error(
        `bhyve-gdbstub: holding VM ${vm} as soon as its vCPUs are active (waiting for it if it ` +
          "does not exist yet). From outside bhyve this is the earliest possible stop, not the " +
          "first instruction.",
      );
      target = await waitAndHold(api, vm, {
        signal,
        allowWrite: options.allowWrite ?? false,
        emulation: emulationSetup(options),
      });
    } else {
      target = openTarget(api, vm, {
        allowWrite: options.allowWrite ?? false,
        emulation: emulationSetup(options),
      });
    }
  } catch (error) {
    if (signal.aborted) return 0;
    if (error instanceof VmmError && error.code === "ENOENT") {
      return fail(`no VM named '${vm}' (/dev/vmm/${vm} does not exist: is it running?)`);
    }
    if (error instanceof VmmError) return fail(`cannot open VM '${vm}': ${error.message}`);
    throw error;
  }
  try {
    let server: RspServer;
    try {
      server = serve(target, { hostname: listen.hostname, port: listen.port, signal });
    } catch (error) {
      if (error instanceof ListenError) return fail(error.message);
      throw error;
    }
    announce(options, server.addr);
    const gone = watchForExit(target, server, signal);
    await server.finished;
    const why = await gone;
    return why === undefined ? 0 : fail(why);
  } finally {
    await target.close().catch((error) => log.error("closing the VM: {error}", { error }));
  }
}

/**
 * The emulator for stepping and breakpoints: libunicorn if it loads (else the reason, which
 * stepping then shows the user), the budget. The guest write paths come with --allow-write.
 */
function emulationSetup(options: Options): EmulationSetup {
  let factory: EmulationSetup["factory"];
  try {
    const lib = loadEmulator(options.unicorn);
    log.debug("libunicorn {path}, version {version}", { path: lib.path, version: lib.version });
    factory = lib;
  } catch (error) {
    if (!(error instanceof UnicornLoadError)) throw error;
    factory = error.message;
  }
  const setup: EmulationSetup = { factory };
  if (options.emuBudget !== undefined) {
    setup.budget = { ...DEFAULT_BUDGET, ...options.emuBudget };
  }
  return setup;
}

function announce(options: Options, addr: Deno.NetAddr): void {
  const where = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  if (!LOOPBACK.has(addr.hostname)) {
    log.warn(
      `listening on ${where}:${addr.port}, not localhost: anyone who can reach it can read ` +
        `the memory of VM ${options.vm}`,
    );
  }
  if (options.allowWrite) {
    log.warn(`--allow-write: a debugger may change VM ${options.vm}'s memory and registers`);
  }
  log.info(`serving VM ${options.vm}: gdb -ex 'target remote ${where}:${addr.port}'`);
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * Ends the server when the VM vanishes, after giving an attached debugger's session a moment
 * to tell its client. Resolves with the reason, or undefined when the server ended otherwise.
 */
async function watchForExit(
  target: VmTarget,
  server: RspServer,
  signal: AbortSignal,
): Promise<string | undefined> {
  const done = new AbortController();
  void server.finished.then(() => done.abort());
  try {
    const event = await target.waitForStop(AbortSignal.any([signal, done.signal]));
    if (event.kind !== "exited") return undefined;
    for (let waited = 0; server.busy && waited < 2000; waited += 50) await delay(50);
    await server.close();
    return event.message;
  } catch {
    return undefined; // aborted: a signal, or the server ended first
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function fail(message: string): number {
  console.error(`bhyve-gdbstub: ${message}`);
  return 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
