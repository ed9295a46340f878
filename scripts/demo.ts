/**
 * `deno task demo`: the main job on the test VM, in one command. Builds what is missing, boots
 * the test VM with the demo guest, serves it with bhyve-gdbstub on 127.0.0.1:1234 (or what
 * `-G` says), prints the gdb and lldb command lines, and on Ctrl-C stops both cleanly.
 *
 *   deno task demo [-G [w][ADDR:]PORT] [--cpus N] [--log-level LEVEL]
 */
import { parseArgs } from "node:util";
import { RUN_PERMISSIONS } from "../cli.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const BUILD = `${ROOT}tests/testvm/build`;
const VM = "demo";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    gdb: { type: "string", short: "G", default: "127.0.0.1:1234" },
    cpus: { type: "string", default: "4" },
    "log-level": { type: "string", default: "info" },
  },
});

const make = await new Deno.Command("make", { args: ["-s", "-C", `${ROOT}tests/testvm`] })
  .output();
if (!make.success) {
  console.error(new TextDecoder().decode(make.stderr));
  console.error("demo: building the test VM failed (it needs gcc, make and the Linux headers)");
  Deno.exit(1);
}

const dir = await Deno.makeTempDir({ prefix: "bhyve-gdbstub-demo-" });
const serial = `${dir}/serial.log`;
const env = { TESTVM_DIR: dir };
const vm = new Deno.Command(`${BUILD}/testvm`, {
  args: [
    "--name",
    VM,
    "--cpus",
    values.cpus,
    "--mem",
    "256M",
    "--guest",
    "demo",
    "--serial",
    serial,
  ],
  env,
  stdout: "piped",
  stderr: "inherit",
}).spawn();
if (!await readyLine(vm.stdout)) {
  console.error("demo: the test VM did not start (is /dev/kvm there and usable?)");
  Deno.exit(1);
}

const stub = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    ...RUN_PERMISSIONS,
    `${ROOT}main.ts`,
    "--vm",
    VM,
    "-G",
    values.gdb,
    "--vmmapi",
    `${BUILD}/libvmmapi.so.6`,
    "--log-level",
    values["log-level"],
  ],
  env,
  stdin: "null",
}).spawn();

const port = values.gdb.replace(/^w/, "");
const remote = /^\d+$/.test(port) ? `127.0.0.1:${port}` : port;
console.log(`
demo: test VM '${VM}' runs ${values.cpus} vCPUs (guest console: ${serial});
      bhyve-gdbstub serves it on ${remote}. Attach with:

  gdb ${BUILD}/guest.elf -ex 'target remote ${remote}'
  lldb ${BUILD}/guest.elf -o 'gdb-remote ${remote}'

Then try: info threads, bt, info registers cr3, x/s 0xffff800000000000 (a different page on
each vCPU: 'thread 2' and read it again), monitor help, continue and Ctrl-C, detach.
Ctrl-C here stops the server and the VM.
`);

let stopping = false;
async function stopAll(status: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const child of [stub, vm]) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  Deno.exit(status);
}
Deno.addSignalListener("SIGINT", () => void stopAll(0));
Deno.addSignalListener("SIGTERM", () => void stopAll(0));
const ended = await Promise.race([
  stub.status.then((s) => `bhyve-gdbstub exited (${s.code})`),
  vm.status.then((s) => `the test VM exited (${s.code})`),
]);
if (!stopping) {
  console.error(`demo: ${ended}; stopping`);
  await stopAll(1);
}

/** Waits for the test VM's `ready NAME` line, then keeps draining its stdout. */
async function readyLine(stdout: ReadableStream<Uint8Array>): Promise<boolean> {
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes(`ready ${VM}`)) {
    const { value, done } = await reader.read();
    if (done) return false;
    text += value;
  }
  void (async () => {
    while (!(await reader.read()).done);
  })();
  return true;
}
