/**
 * bhyve-gdbstub: a GDB remote-protocol server for a running bhyve VM.
 *
 * This file parses the command line, sets up logging and wires the layers together
 * (rsp/ ← vmm/ ← ffi/); see docs/architecture.md.
 *
 * @module
 */
import {
  HELP,
  type Options,
  parseCommandLine,
  type ReleaseOptions,
  UsageError,
  VERSION,
} from "./cli.ts";
import { guardExits } from "./exits.ts";
import { configure, escapeControls, getLogger } from "./log/mod.ts";
import { runDump } from "./dump_command.ts";
import { loadVmmapi, VmmapiLoadError } from "./ffi/mod.ts";
import { ListenError, type RspServer, serve } from "./rsp/mod.ts";
import { HoldRecord, holdRecordPath } from "./vmm/hold_record.ts";
import { lockVm, VmLockError } from "./vmm/lock.ts";
import { loadEmulator, UnicornLoadError } from "./ffi/emulator.ts";
import { DEFAULT_BUDGET, type EmulationSetup } from "./vmm/emulated_control.ts";
import { releaseRecorded } from "./vmm/release.ts";
import { holdAtBoot, openTarget, type Vmmapi, VmmError, type VmTarget } from "./vmm/mod.ts";

const log = getLogger(["bhyve-gdbstub"]);

/** Runs the program and returns its exit status. */
export async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = parseCommandLine(args, Deno.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bhyve-gdbstub: ${escapeControls(error.message)}`);
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
      // Everything goes to stderr, one escaped line per record (log/record.ts).
      configure({ lowestLevel: command.options.logLevel });
      return await run(command.options);
    case "release":
      configure({ lowestLevel: "warning" });
      return release(command.options);
    case "dump":
      configure({ lowestLevel: command.options.logLevel });
      return await runDump(command.options);
  }
}

/** Opens the VM, listens, and serves debuggers until a signal or the VM's end. */
async function run(options: Options): Promise<number> {
  const api = load(options.vmmapi);
  if (typeof api === "number") return api;
  log.debug("libvmmapi {path}, API {generation}", { path: api.path, generation: api.generation });
  const stop = new AbortController();
  const exits = guardExits({
    signal: (name) => {
      log.info(`${name}: releasing the guest and exiting`);
      stop.abort();
    },
    lastResort: () => lastResort?.releaseNow() ?? "nothing was held",
  });
  try {
    return await serveVm(api, options, stop.signal);
  } finally {
    exits.remove();
    api.close();
  }
}

/** Loads libvmmapi, or says why not and returns the exit status. */
function load(path: string | undefined): Vmmapi | number {
  try {
    return loadVmmapi({ path });
  } catch (error) {
    if (!(error instanceof VmmapiLoadError)) throw error;
    return fail(error.message);
  }
}

/** The target being served, for the last-resort release of an uncaught error. */
let lastResort: VmTarget | undefined;

/** `release --vm NAME`: resume what a killed server left held (vmm/release.ts). */
async function release(options: ReleaseOptions): Promise<number> {
  const api = load(options.vmmapi);
  if (typeof api === "number") return api;
  try {
    const result = await releaseRecorded(api, options.vm);
    if (!result.ok) return fail(result.message);
    console.error(`bhyve-gdbstub: ${result.message}`);
    return 0;
  } catch (error) {
    if (error instanceof VmLockError) return fail(error.message);
    if (error instanceof VmmError && error.code === "ENOENT") {
      return fail(`no VM named '${options.vm}' (/dev/vmm/${options.vm} does not exist)`);
    }
    if (error instanceof VmmError) return fail(`cannot open VM '${options.vm}': ${error.message}`);
    throw error;
  } finally {
    api.close();
  }
}

async function serveVm(api: Vmmapi, options: Options, signal: AbortSignal): Promise<number> {
  const { vm, listen } = options;
  const badDumpDir = checkDumpDir(options.dumpDir);
  if (badDumpDir !== undefined) return fail(badDumpDir);
  // One bhyve-gdbstub per VM: two would fight over the debug set.
  const lock = await lockVm(vm).catch((error: Error) => error);
  if (lock instanceof Error) return fail(lock.message);
  using _lock = lock;
  let target: VmTarget;
  // libvmmapi.so.5 ships with 13.x's bhyve, whose parked vCPU threads never sleep.
  const record = new HoldRecord(holdRecordPath(vm));
  const targetOptions = {
    heldVcpusSpin: api.generation === "0103",
    record,
    allowWrite: options.allowWrite ?? false,
    emulation: emulationSetup(options),
    ...dumpDirOf(options),
  };
  try {
    if (listen.wait) {
      console.error(
        `bhyve-gdbstub: waiting for VM ${vm} to start, to hold its boot vCPU before it runs ` +
          "(FreeBSD 14 and later; 13.x starts it before anyone can hold it).",
      );
      const hold = await holdAtBoot(api, vm, { signal, ...targetOptions });
      console.error(`bhyve-gdbstub: VM ${vm}: ${hold.message}`);
      target = hold.target;
    } else {
      target = openTarget(api, vm, targetOptions);
    }
  } catch (error) {
    if (signal.aborted) return 0;
    if (error instanceof VmmError && error.code === "ENOENT") {
      return fail(`no VM named '${vm}' (/dev/vmm/${vm} does not exist: is it running?)`);
    }
    if (error instanceof VmmError && (error.code === "EACCES" || error.code === "EPERM")) {
      return fail(
        `cannot open VM '${vm}': ${error.message}. Run bhyve-gdbstub as root: vm_open needs ` +
          "/dev/vmm/NAME, and on FreeBSD 15 write access to /dev/vmmctl too.",
      );
    }
    if (error instanceof VmmError) return fail(`cannot open VM '${vm}': ${error.message}`);
    throw error;
  }
  lastResort = target;
  try {
    let server: RspServer;
    try {
      server = serve(target, {
        hostname: listen.hostname,
        port: listen.port,
        signal,
        ...(options.maxHoldMs !== undefined && { maxHoldMs: options.maxHoldMs }),
        ...(options.stallTimeoutMs !== undefined && { stallTimeoutMs: options.stallTimeoutMs }),
      });
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
    lastResort = undefined;
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

/** Why --dump-dir cannot be used, if it cannot: it must be an existing directory. */
function checkDumpDir(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  try {
    if (Deno.statSync(dir).isDirectory) return undefined;
  } catch (error) {
    return `--dump-dir ${dir}: ${(error as Error).message.replace(/ \(os error.*$/s, "")}`;
  }
  return `--dump-dir ${dir}: not a directory`;
}

/** `monitor dump` writes only where the operator said (--dump-dir). */
function dumpDirOf(options: Options): { dumpDir?: string } {
  return options.dumpDir === undefined ? {} : { dumpDir: options.dumpDir };
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/**
 * How long an attached debugger keeps its session once the VM has vanished, so its next
 * command is answered with why (rsp/guards/gone.ts) instead of a closed connection.
 */
const GONE_GRACE_MS = 10_000;

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
    for (let waited = 0; server.busy && waited < GONE_GRACE_MS; waited += 50) await delay(50);
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
  console.error(`bhyve-gdbstub: ${escapeControls(message)}`);
  return 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
