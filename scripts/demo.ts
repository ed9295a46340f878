/**
 * `deno task demo`: the main job on the test VM, in one command. Builds what is missing, boots
 * the test VM with the demo guest, serves it with bhyve-gdbstub on 127.0.0.1:1234 (or what
 * `-G` says), prints the gdb and lldb command lines once the server listens, and on Ctrl-C
 * stops both, removes its temporary directory and exits 0.
 *
 *   deno task demo [--name NAME] [-G [w][ADDR:]PORT] [--cpus N] [--log-level LEVEL] [--allow-write]
 *
 * Stepping and breakpoints are emulated (Unicorn) and commit their result to the guest, so
 * they need `--allow-write`; the server is given the Unicorn that `.ci/run` puts in
 * `.cache/unicorn` (or BHYVE_GDBSTUB_UNICORN), as the test VM's software CPU is.
 *
 * A second demo with a VM name or a port already taken fails with one line, before any banner.
 */
import { parseArgs } from "node:util";
import { RUN_PERMISSIONS } from "../cli.ts";
import { lockVm } from "../vmm/lock.ts";
import { unicornPath } from "../tests/emu/machine.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BUILD = `${ROOT}tests/testvm/build`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string", default: "demo" },
    gdb: { type: "string", short: "G", default: "127.0.0.1:1234" },
    cpus: { type: "string", default: "4" },
    "log-level": { type: "string", default: "info" },
    "allow-write": { type: "boolean", default: false },
  },
});
const VM = values.name;

/** Everything to undo on the way out, newest first; run once, by `exit`. */
const cleanups: (() => Promise<void>)[] = [];
let exiting = false;
async function exit(status: number, message?: string): Promise<never> {
  if (!exiting) {
    exiting = true;
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    if (message !== undefined) console.error(`demo: ${message}`);
    Deno.exit(status);
  }
  return await new Promise<never>(() => {}); // the first call exits
}
// From the start, so a Ctrl-C while building or booting leaves nothing behind either.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => void exit(0));
}

// The name is taken when a bhyve-gdbstub (another demo's, say) holds its lock.
try {
  (await lockVm(VM)).release();
} catch (error) {
  await exit(1, `cannot use VM name '${VM}': ${(error as Error).message} (pick another: --name)`);
}

const make = await new Deno.Command("make", { args: ["-s", "-C", `${ROOT}tests/testvm`] })
  .output();
if (!make.success) {
  console.error(new TextDecoder().decode(make.stderr));
  await exit(1, "building the test VM failed (it needs gcc, make and the Linux headers)");
}

const dir = await Deno.makeTempDir({ prefix: "bhyve-gdbstub-demo-" });
cleanups.push(() => Deno.remove(dir, { recursive: true }));
const serial = `${dir}/serial.log`;
const env = { TESTVM_DIR: dir };

const vm = spawn(`${BUILD}/testvm`, [
  ...["--name", VM, "--cpus", values.cpus, "--mem", "256M", "--guest", "demo"],
  ...["--serial", serial],
]);
if (!await untilLine(vm.stdout, (line) => line === `ready ${VM}`)) {
  await exit(1, `the test VM did not start: ${await lastLine(vm.stderr)}`);
}
void drain(vm.stderr, true); // from now on, what the VM says goes to stderr

// Emulated stepping needs libunicorn: the one tests use (BHYVE_GDBSTUB_UNICORN, .cache/unicorn).
const unicorn = unicornPath();
const stub = spawn(Deno.execPath(), [
  "run",
  ...RUN_PERMISSIONS,
  `${ROOT}main.ts`,
  ...["--vm", VM, "-G", values.gdb, "--vmmapi", `${BUILD}/libvmmapi.so.6`],
  ...["--log-level", values["log-level"]],
  ...(values["allow-write"] ? ["--allow-write"] : []),
  ...(unicorn === undefined ? [] : ["--unicorn", unicorn]),
]);
void drain(stub.stdout, true);
// Until it listens, keep what the server says: if it fails, its last line is the reason.
const said: string[] = [];
const listening = await untilLine(stub.stderr, (line) => {
  said.push(line);
  return /serving VM/.test(line);
}, true);
if (!listening) {
  const reason = said.filter((l) => l.trim() !== "").at(-1) ?? "no reason given";
  await exit(1, `${reason.replace(/^bhyve-gdbstub: /, "bhyve-gdbstub failed: ")}`);
}
console.error(said.join("\n"));

const port = values.gdb.replace(/^w/, "");
const remote = /^\d+$/.test(port) ? `127.0.0.1:${port}` : port;
console.log(`
demo: test VM '${VM}' runs ${values.cpus} vCPUs (guest console: ${serial});
      bhyve-gdbstub serves it on ${remote}. Attach with:

  gdb ${BUILD}/guest.elf -ex 'target remote ${remote}'
  lldb ${BUILD}/guest.elf -o 'gdb-remote ${remote}'

Then try: info threads, bt, info registers cr3, x/s 0xffff800000000000 (a different page on
each vCPU: 'thread 2' and read it again), monitor help, continue and Ctrl-C, detach.${
  values["allow-write"]
    ? "\nStepping and breakpoints are emulated: stepi, next, break tick, continue."
    : "\nWith --allow-write, stepi, next, break and watch work too (by emulation)."
}
Ctrl-C here stops the server and the VM.
`);

const ended = await Promise.race([
  stub.process.status.then((s) => ({ who: "bhyve-gdbstub", code: s.code })),
  vm.process.status.then((s) => ({ who: "the test VM", code: s.code })),
]);
// Status 0 means it was told to stop (the terminal's Ctrl-C reaches every process of the
// group): a normal end, not something to report. Any other status may still be the same
// Ctrl-C seen first by a child: give our own signal listener a moment to claim the exit.
if (ended.code === 0) await exit(0);
await new Promise((resolve) => setTimeout(resolve, 300));
await exit(1, `${ended.who} exited (${ended.code}); stopping`);

interface Child {
  process: Deno.ChildProcess;
  stdout: ReadableStreamDefaultReader<string>;
  stderr: ReadableStreamDefaultReader<string>;
}

/** Starts a child of the demo; the cleanup stops it (SIGTERM) and waits for it. */
function spawn(program: string, args: string[]): Child {
  const process = new Deno.Command(program, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  cleanups.push(async () => {
    try {
      process.kill("SIGTERM");
    } catch {
      // already gone
    }
    await process.status;
  });
  const lines = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines()).getReader();
  return { process, stdout: lines(process.stdout), stderr: lines(process.stderr) };
}

/**
 * Reads lines until `found` says yes (true) or the stream ends (false); then keeps draining
 * the stream in the background, to stderr when `echo` is set, so the child never blocks.
 */
async function untilLine(
  reader: ReadableStreamDefaultReader<string>,
  found: (line: string) => boolean,
  echo = false,
): Promise<boolean> {
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    if (found(value)) break;
  }
  void drain(reader, echo);
  return true;
}

/** Reads the rest of a child's output, so it never blocks on a full pipe; shows it if `echo`. */
async function drain(reader: ReadableStreamDefaultReader<string>, echo: boolean): Promise<void> {
  try {
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      if (echo) console.error(r.value);
    }
  } catch {
    // the child is gone
  }
}

async function lastLine(reader: ReadableStreamDefaultReader<string>): Promise<string> {
  let last = "no reason given";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    if (r.value.trim() !== "") last = r.value;
  }
  return last;
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) controller.enqueue(line);
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}
