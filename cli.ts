/**
 * The command line of bhyve-gdbstub: parsing and the help text.
 *
 * Parsing is pure (no I/O) so that every bad argument can be tested for its one-line message.
 * `node:util` parseArgs reads it: a Deno built-in, so the program needs nothing but Deno.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { type Level, LEVELS } from "./log/record.ts";

export const VERSION = "0.1.0";

/**
 * The Deno permissions main.ts needs: ffi for libvmmapi, net to listen, read for the library,
 * write for the lock and hold record next to the VM, env for BHYVE_GDBSTUB_*, and the user id (to
 * believe only a hold record this user wrote). deno.json's `start` says the same.
 */
export const RUN_PERMISSIONS = [
  "--allow-ffi",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys=uid",
] as const;

/** Where to listen, from `-G [w][ADDR:]PORT`. */
export interface ListenSpec {
  /** Hold the guest until a debugger attaches and continues it (the leading `w`). */
  wait: boolean;
  /** Host to bind; localhost unless the user names one. */
  hostname: string;
  port: number;
}

/** The log levels, lowest first: the logger's own list (log/record.ts). */
export const LOG_LEVELS = LEVELS;
export type LogLevel = Level;

export interface Options {
  vm: string;
  listen: ListenSpec;
  /** Explicit libvmmapi path (`--vmmapi` or `BHYVE_GDBSTUB_VMMAPI`), if any. */
  vmmapi?: string;
  logLevel: LogLevel;
  /** Explicit libunicorn path (`--unicorn` or `BHYVE_GDBSTUB_UNICORN`), if any. */
  unicorn?: string;
  /** `--emu-budget INSTRUCTIONS[:MILLISECONDS]`: an emulated continue's budget. */
  emuBudget?: { instructions: number; milliseconds?: number };
  /** `--allow-write`: memory and register writes reach the guest (off by default). */
  allowWrite?: boolean;
  /** `--max-hold`: release the guest once a debugger has held it this long (ms); off if unset. */
  maxHoldMs?: number;
  /** `--stall-timeout`: bound on a half-sent packet or a reply whose write blocks (ms). */
  stallTimeoutMs?: number;
  /** Where `monitor dump NAME` may write (`--dump-dir`); without it the command is refused. */
  dumpDir?: string;
}

/** `release --vm NAME`: resume the vCPUs a killed bhyve-gdbstub left held, then exit. */
export interface ReleaseOptions {
  vm: string;
  vmmapi?: string;
}

/** `bhyve-gdbstub dump --vm NAME -o FILE [--paging] [--live] [--force]`. */
export interface DumpCommandOptions {
  vm: string;
  output: string;
  paging: boolean;
  live: boolean;
  force: boolean;
  vmmapi?: string;
  logLevel: LogLevel;
}

export type Command =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run"; options: Options }
  | { kind: "release"; options: ReleaseOptions }
  | { kind: "dump"; options: DumpCommandOptions };

/** A command-line mistake: main prints `message` on one line and exits with status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export const DEFAULT_HOST = "127.0.0.1";

/**
 * Parses `-G`'s argument: `[w][ADDR:]PORT`, with IPv6 written `[ADDR]:PORT`.
 *
 * @example
 * parseListenSpec("w[::1]:1234"); // { wait: true, hostname: "::1", port: 1234 }
 */
export function parseListenSpec(text: string): ListenSpec {
  const wait = text.startsWith("w");
  const rest = wait ? text.slice(1) : text;
  if (rest === "") {
    throw new UsageError(`-G ${text}: a port is required${wait ? " after 'w'" : ""}`);
  }
  let hostname = DEFAULT_HOST;
  let portText = rest;
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(rest);
  if (v6) {
    hostname = v6[1]!;
    portText = v6[2]!;
    if (hostname === "") throw new UsageError(`-G ${text}: empty address in brackets`);
  } else if (rest.includes(":")) {
    const colon = rest.lastIndexOf(":");
    hostname = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (hostname === "") throw new UsageError(`-G ${text}: empty address before ':'`);
    if (hostname.includes(":")) {
      throw new UsageError(`-G ${text}: write an IPv6 address in brackets, as [::1]:1234`);
    }
  }
  if (!/^[0-9]+$/.test(portText)) {
    throw new UsageError(`-G ${text}: '${portText}' is not a port number`);
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) {
    throw new UsageError(`-G ${text}: port ${port} is out of range (1-65535)`);
  }
  return { wait, hostname, port };
}

/** Parses the arguments (without the program name) into a command, or throws UsageError. */
export function parseCommandLine(
  args: string[],
  env: { get(name: string): string | undefined } = { get: () => undefined },
): Command {
  // Subcommands: the first word picks one; anything else is the server's command line.
  switch (args[0]) {
    case "release":
      return parseRelease(args.slice(1), env);
    case "dump":
      return parseDumpCommand(args.slice(1), env);
  }
  const v = parseOptions("", args, {
    vm: { type: "string" },
    gdb: { type: "string", short: "G" },
    vmmapi: { type: "string" },
    unicorn: { type: "string" },
    "emu-budget": { type: "string" },
    "log-level": { type: "string" },
    "max-hold": { type: "string" },
    "stall-timeout": { type: "string" },
    "allow-write": { type: "boolean" },
    "dump-dir": { type: "string" },
    help: { type: "boolean", short: "h" },
    version: { type: "boolean", short: "V" },
  });
  if (v.help) return { kind: "help" };
  if (v.version) return { kind: "version" };
  const vm = parseVmName("", v.vm);
  if (v.gdb === undefined) throw new UsageError("-G [w][ADDR:]PORT is required: where to listen");
  const options: Options = {
    vm,
    listen: parseListenSpec(v.gdb),
    logLevel: parseLogLevel(v["log-level"]),
    ...vmmapiOption(v.vmmapi, env),
  };
  if (v["allow-write"]) options.allowWrite = true;
  const unicorn = optionOrEnv(v.unicorn, env, "BHYVE_GDBSTUB_UNICORN");
  if (unicorn !== undefined) options.unicorn = unicorn;
  if (v["emu-budget"] !== undefined) options.emuBudget = parseBudget(v["emu-budget"]);
  if (v["max-hold"] !== undefined) options.maxHoldMs = parseDuration("--max-hold", v["max-hold"]);
  if (v["stall-timeout"] !== undefined) {
    options.stallTimeoutMs = parseDuration("--stall-timeout", v["stall-timeout"]);
  }
  if (v["dump-dir"] !== undefined) {
    if (v["dump-dir"] === "") throw new UsageError("--dump-dir needs a directory");
    options.dumpDir = v["dump-dir"];
  }
  return { kind: "run", options };
}

function parseRelease(
  args: string[],
  env: Env,
): Command {
  const v = parseOptions("release: ", args, {
    vm: { type: "string" },
    vmmapi: { type: "string" },
  });
  const vm = parseVmName("release: ", v.vm);
  const options: ReleaseOptions = { vm, ...vmmapiOption(v.vmmapi, env) };
  return { kind: "release", options };
}

type Env = { get(name: string): string | undefined };

/**
 * parseArgs with the program's rules (strict, no positionals); a mistake becomes a UsageError
 * whose message starts with `prefix` (the subcommand: "dump: ", or "" for the server).
 */
function parseOptions<const O extends ParseArgsOptionsConfig>(
  prefix: string,
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, strict: true, allowPositionals: false, options }).values;
  } catch (error) {
    throw new UsageError(`${prefix}${describeParseError(error)}`);
  }
}

/** `--vm NAME`: required, and a name under /dev/vmm/, so without '/'. */
function parseVmName(subcommand: string, vm: string | undefined): string {
  if (vm === undefined || vm === "") {
    throw new UsageError(`${subcommand}--vm NAME is required: the name of the running bhyve VM`);
  }
  if (vm.includes("/")) {
    throw new UsageError(`${subcommand}--vm ${vm}: a VM name cannot contain '/'`);
  }
  return vm;
}

/** `--log-level LEVEL`, info by default. */
function parseLogLevel(text = "info"): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(text)) {
    throw new UsageError(`--log-level ${text}: expected one of ${LOG_LEVELS.join(", ")}`);
  }
  return text as LogLevel;
}

/** An option's value, else the environment variable's; empty means unset either way. */
function optionOrEnv(value: string | undefined, env: Env, variable: string): string | undefined {
  const chosen = value ?? env.get(variable);
  return chosen === "" ? undefined : chosen;
}

/** `--vmmapi PATH`, else BHYVE_GDBSTUB_VMMAPI, as a fragment of every command's options. */
function vmmapiOption(value: string | undefined, env: Env): { vmmapi?: string } {
  const vmmapi = optionOrEnv(value, env, "BHYVE_GDBSTUB_VMMAPI");
  return vmmapi === undefined ? {} : { vmmapi };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: a number with a unit, `ms`, `s`, `m` or `h` (a bare number is seconds).
 *
 * @example
 * parseDuration("--max-hold", "90s"); // 90000
 */
export function parseDuration(option: string, text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text);
  const ms = match ? Number(match[1]) * UNITS[match[2] ?? "s"]! : NaN;
  if (!Number.isFinite(ms) || ms < 1 || ms > 2 ** 31 - 1) {
    throw new UsageError(`${option} ${text}: expected a duration such as 500ms, 30s, 5m or 1h`);
  }
  return Math.round(ms);
}

function parseDumpCommand(
  args: string[],
  env: Env,
): Command {
  const v = parseOptions("dump: ", args, {
    vm: { type: "string" },
    output: { type: "string", short: "o" },
    paging: { type: "boolean" },
    live: { type: "boolean" },
    force: { type: "boolean" },
    vmmapi: { type: "string" },
    "log-level": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (v.help) return { kind: "help" };
  const vm = parseVmName("dump: ", v.vm);
  if (v.output === undefined || v.output === "") {
    throw new UsageError("dump: -o FILE is required: where to write the core");
  }
  const options: DumpCommandOptions = {
    vm,
    output: v.output,
    paging: v.paging ?? false,
    live: v.live ?? false,
    force: v.force ?? false,
    logLevel: parseLogLevel(v["log-level"]),
    ...vmmapiOption(v.vmmapi, env),
  };
  return { kind: "dump", options };
}

/** `--emu-budget INSTRUCTIONS[:MILLISECONDS]`, both positive integers. */
function parseBudget(text: string): { instructions: number; milliseconds?: number } {
  const match = /^([0-9]+)(?::([0-9]+))?$/.exec(text);
  const instructions = Number(match?.[1]);
  const milliseconds = match?.[2] === undefined ? undefined : Number(match[2]);
  if (
    match === null || !Number.isSafeInteger(instructions) || instructions <= 0 ||
    (milliseconds !== undefined && (!Number.isSafeInteger(milliseconds) || milliseconds <= 0))
  ) {
    throw new UsageError(
      `--emu-budget ${text}: expected INSTRUCTIONS[:MILLISECONDS], positive integers`,
    );
  }
  return milliseconds === undefined ? { instructions } : { instructions, milliseconds };
}

function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // node's messages are long and mention "args"; keep the part a user needs.
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown option ${unknown[1]} (see --help)`;
  const missing = /Option '([^']+)' argument missing/.exec(message);
  if (missing) return `option ${missing[1]!.split(" ")[0]} needs a value (see --help)`;
  const positional = /Unexpected argument '([^']+)'/.exec(message);
  if (positional) return `unexpected argument '${positional[1]}' (see --help)`;
  return `${message.split("\n")[0]} (see --help)`;
}

export const HELP = `bhyve-gdbstub ${VERSION}
Attach gdb or lldb to a RUNNING bhyve virtual machine, by name, from a separate process.
No restart of the VM and no cooperation from the guest are needed.

Usage:
  bhyve-gdbstub --vm NAME -G [w][ADDR:]PORT [options]
  bhyve-gdbstub release --vm NAME [--vmmapi PATH]
      resume the vCPUs a bhyve-gdbstub killed with SIGKILL left held, then exit
  bhyve-gdbstub dump --vm NAME -o FILE [--paging] [--live] [--force]

Options:
  --vm NAME            the running VM (/dev/vmm/NAME)
  -G, --gdb [w][ADDR:]PORT
                       listen for one debugger on PORT, on 127.0.0.1 unless ADDR is
                       given (IPv6 as [::1]:PORT). A leading 'w' holds the guest until
                       a debugger attaches and continues it; if the VM does not exist
                       yet, waits for /dev/vmm/NAME to appear and holds its boot vCPU
                       as bhyve lets it go (see below).
  --vmmapi PATH        the libvmmapi shared library (also BHYVE_GDBSTUB_VMMAPI);
                       default: libvmmapi.so.7, .so.6, .so.5, then any other
                       /usr/lib/libvmmapi.so.*
  --unicorn PATH       libunicorn 2.1 or later, for stepping, breakpoints and watchpoints
                       by emulation (also BHYVE_GDBSTUB_UNICORN); default:
                       libunicorn.so.2, then libunicorn.so
  --emu-budget N[:MS]  how far an emulated continue runs before it stops and says so:
                       N instructions, MS milliseconds (default 100000000:10000)
  --log-level LEVEL    trace, debug (every packet), info (default), warning, error
  --max-hold DURATION  release the guest once a debugger has held it this long
                       (e.g. 90s, 5m) and drop that debugger; off by default
  --stall-timeout DURATION
                       drop a debugger that leaves a packet half sent or a reply
                       unread this long (default 30s)
  --allow-write        let the debugger write guest memory (RAM only, through the
                       vCPU's page tables) and registers (set var, set $rax, jump);
                       off by default: nothing is ever written to the guest
  --dump-dir DIR       let 'monitor dump NAME' write cores into DIR (plain names only,
                       never overwriting, never following a link); refused without it
  -h, --help           this text
  -V, --version        the version

bhyve-gdbstub dump saves the VM as an ELF core in QEMU's dump-guest-memory layout, for gdb
and crash.
Dump options:
  -o, --output FILE    the core file (refused if it exists, unless --force)
  --paging             PT_LOADs by virtual address from the boot vCPU's page tables
                       (QEMU's -p; what gdb needs to read kernel addresses)
  --live               copy without holding the guest (the image may be torn)
  --force              replace an existing FILE

Examples:
  bhyve-gdbstub --vm freebsd14 -G 1234
      then: gdb /usr/lib/debug/boot/kernel/kernel.debug -ex 'target remote localhost:1234'
      (the guest kernel's debug file; a Linux guest: the vmlinux from its
      distribution's debug package, such as Debian's linux-image-VERSION-dbg)
      lldb: gdb-remote localhost:1234, and 'process plugin packet monitor help'
      for gdb's 'monitor help'
  bhyve-gdbstub --vm web -G w192.168.1.10:5555
      holds VM 'web' until a debugger on the named address continues it
  bhyve-gdbstub dump --vm web -o /var/crash/web.core --paging
      then: gdb /usr/lib/debug/boot/kernel/kernel.debug /var/crash/web.core,
      or, for a Linux guest, crash vmlinux /var/crash/web.core

What a debugger can do: list vCPUs as threads, read every vCPU's registers, read guest
memory by virtual address through that vCPU's page tables (and in-kernel MMIO such as
the local APIC), stop the guest (Ctrl-C) and continue it; the guest is held while a
debugger is attached and runs again when it detaches or the connection drops.

A separate process gets no single-step, breakpoints or watchpoints from bhyve (its own
threads take those exits): with --allow-write and libunicorn (--unicorn), the held vCPU's
instructions are executed by emulation instead and written back; instructions that cannot be
emulated faithfully (port I/O, MMIO, x87/SSE, MSRs, CPUID, ...) are refused with the reason,
and interrupts are not delivered during an emulated run.

What cannot be done from outside a stock bhyve (the VM exits go to bhyve's own threads):
  - a guaranteed stop at the very first instruction: bhyve starts the boot vCPU itself.
    On FreeBSD 14 and later 'w' watches for bhyve's release of the boot vCPU and holds it
    within the ~1 ms before its thread runs it, then says which it got: "held at the
    first instruction" or "held after the guest ran (RIP moved from X to Y)". On 13.x
    bhyve runs the boot vCPU at once: 'w' holds it after the guest ran, and says so;
  - reading MMIO that bhyve emulates in its own process (PCI BARs, the framebuffer's
    registers; its memory is device memory, and is read);
  - reading x87/SSE registers (libvmmapi has no call for them).
`;
