/**
 * Every way main.ts can end releases the guest: signals sent to the real process, an uncaught
 * error and an unhandled rejection (through crashing_main.ts, the real main() plus a fault);
 * and what a SIGKILL leaves behind (the hold record) is released by the next server or by
 * `bhyve-gdbstub release`, never touching bhyve's own parked AP.
 */
import assert from "node:assert/strict";
import { parseHoldRecord } from "../../vmm/hold_record.ts";
import { TestVm, testvmBuilt } from "../helpers/testvm.ts";
import { RawClient } from "../rsp/tcp_client.ts";
import * as L from "../testvm/layout.ts";
import { freePort, Observer, runMain, RunningVm, Server, until } from "./harness.ts";

const ignore = !testvmBuilt();
const CPUS = 2;
const CRASHING_MAIN = new URL("./crashing_main.ts", import.meta.url).pathname;

/** Attaches a raw client (the VM is then held by the server). */
async function attach(server: Server, observer: Observer, cpus: number[]): Promise<RawClient> {
  const client = await RawClient.connect(server.port);
  assert.equal(await client.ask("?"), "T05thread:1;");
  assert.deepEqual(observer.debugCpus(), cpus, "the attach holds the VM");
  return client;
}

/** Waits for the server to exit; returns its status. */
async function exitOf(server: Server): Promise<Deno.CommandStatus> {
  const status = await server.exited(15_000);
  assert.ok(status !== undefined, `the server did not exit\n${server.stderr}`);
  return status;
}

const SIGNALS: Deno.Signal[] = [
  "SIGHUP",
  "SIGINT",
  "SIGTERM",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGALRM",
  "SIGVTALRM",
  "SIGXCPU",
];

Deno.test({
  name: "every terminating signal while a debugger holds the VM: the guest runs, exit 0",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    for (const signal of SIGNALS) {
      const server = await Server.start(vm);
      try {
        const client = await attach(server, observer, [0, 1]);
        server.process.kill(signal);
        const status = await exitOf(server);
        client.close();
        assert.equal(status.code, 0, `${signal}: ${server.stderr}`);
        assert.match(server.stderr, new RegExp(`${signal}: releasing the guest and exiting`));
        assert.deepEqual(observer.debugCpus(), [], `${signal} left the VM held`);
        await observer.counting(CPUS);
      } finally {
        await server.kill();
      }
    }
  },
});

Deno.test({
  name: "SIGPIPE does not end the server (Deno ignores it): the session goes on",
  ignore,
  async fn() {
    await using running = await RunningVm.start(CPUS);
    const { vm, observer } = running;
    await using server = await Server.start(vm);
    const client = await attach(server, observer, [0, 1]);
    server.process.kill("SIGPIPE");
    assert.equal(await server.exited(500), undefined, "still serving");
    assert.equal(await client.ask("qfThreadInfo"), "m1,2");
    assert.equal(await client.ask("D"), "OK");
    client.close();
    await observer.allRunning(CPUS);
  },
});

for (const fault of ["error", "rejection"]) {
  Deno.test({
    name: `an uncaught ${fault} while the VM is held: released, one line, exit 1`,
    ignore,
    async fn() {
      await using running = await RunningVm.start(CPUS);
      const { vm, observer } = running;
      await using server = await Server.start(vm, {
        main: CRASHING_MAIN,
        env: { BHYVE_GDBSTUB_FAULT: fault },
      });
      const client = await attach(server, observer, [0, 1]);
      server.process.kill("SIGWINCH");
      const status = await exitOf(server);
      client.close();
      assert.equal(status.code, 1, server.stderr);
      const lines = server.stderr.split("\n").filter((l) => l.startsWith("bhyve-gdbstub:"));
      assert.equal(lines.length, 1, server.stderr);
      assert.match(
        lines[0]!,
        new RegExp(`^bhyve-gdbstub: internal error.*: injected ${fault}; released VM t-`),
      );
      assert.doesNotMatch(server.stderr, /\n\s+at /, "no stack trace");
      assert.deepEqual(observer.debugCpus(), []);
      await observer.counting(CPUS);
    },
  });
}

/** `bhyve-gdbstub release --vm NAME`, as a user runs it. */
function release(vm: TestVm): Promise<{ code: number; stderr: string }> {
  return runMain(vm, ["release", "--vm", vm.name]);
}

/** The demo guest with 4 vCPUs: PARKED_CPU stays in bhyve's debug set (never started). */
const FOUR = { cpus: 4, mem: "64M" };
const BOOTED = [0, 1, L.PAE_CPU];

/** Serves `vm`, attaches, SIGKILLs the server; returns an observer of what it left behind. */
async function killWhileHeld(vm: TestVm): Promise<Observer> {
  const observer = new Observer(vm);
  await observer.counting(BOOTED.length);
  const server = await Server.start(vm);
  const client = await attach(server, observer, [0, 1, 2, 3]);
  server.process.kill("SIGKILL");
  await server.process.status;
  client.close();
  const record = parseHoldRecord(
    await Deno.readTextFile(`${vm.dir}/bhyve-gdbstub.${vm.name}.held`),
  );
  assert.deepEqual(record, { pid: server.pid, vcpus: BOOTED }, "the record names ours only");
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(observer.debugCpus(), [0, 1, 2, 3], "a SIGKILL leaves them held");
  return observer;
}

Deno.test({
  name: "after a SIGKILL, the next server resumes what the record lists, not bhyve's AP",
  ignore,
  async fn() {
    await using vm = await TestVm.start(FOUR);
    using observer = await killWhileHeld(vm);
    await using server = await Server.start(vm);
    await until(
      () => observer.debugCpus().join() === `${L.PARKED_CPU}`,
      "the recorded vCPUs resumed",
    );
    assert.match(server.stderr, /resumed vCPUs 0, 1, 2 of VM t-\S+, left held by an earlier/);
    await observer.counting(BOOTED.length);
    // And the new server serves as usual; its detach leaves bhyve's AP where it was.
    const client = await attach(server, observer, [0, 1, 2, 3]);
    assert.equal(await client.ask("D"), "OK");
    client.close();
    await until(() => observer.debugCpus().join() === `${L.PARKED_CPU}`, "detached");
  },
});

Deno.test({
  name: "after a SIGKILL, `release --vm NAME` resumes the recorded vCPUs and exits 0",
  ignore,
  async fn() {
    await using vm = await TestVm.start(FOUR);
    using observer = await killWhileHeld(vm);
    const first = await release(vm);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stderr,
      new RegExp(
        `^bhyve-gdbstub: resumed vCPUs 0, 1, 2 of VM ${vm.name}; bhyve itself holds vCPUs 3\n$`,
      ),
    );
    assert.deepEqual(observer.debugCpus(), [L.PARKED_CPU]);
    await observer.counting(BOOTED.length);
    const again = await release(vm);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /no vCPUs of VM \S+ are recorded as held by a bhyve-gdbstub/);
    assert.deepEqual(observer.debugCpus(), [L.PARKED_CPU], "bhyve's AP is never touched");
    // While a server runs, release is refused: the live server owns the VM.
    await using server = await Server.start(vm);
    const refused = await release(vm);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`process ${server.pid} holds`));
  },
});

/** main.ts in `w` mode, waiting for a VM that does not exist yet (holds nothing; no KVM needed). */
function waitingServer(dir: string, main?: string, fault = "error"): Promise<Server> {
  return Server.start({ name: "absent", dir }, {
    listen: `w127.0.0.1:${freePort()}`,
    ready: /waiting for VM absent/,
    env: { BHYVE_GDBSTUB_FAULT: fault },
    ...(main === undefined ? {} : { main }),
  });
}

Deno.test({
  name: "signals and a crash while waiting in w mode: one line each, exit 0 or 1",
  ignore: !testvmBuilt(),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      for (const signal of ["SIGHUP", "SIGUSR1", "SIGALRM"] as Deno.Signal[]) {
        await using server = await waitingServer(dir);
        server.process.kill(signal);
        assert.equal((await exitOf(server)).code, 0, signal);
        assert.match(server.stderr, new RegExp(`${signal}: releasing the guest and exiting`));
      }
      const said = {
        error: "internal error: injected error",
        rejection: "internal error (unhandled rejection): injected rejection",
      };
      for (const [fault, words] of Object.entries(said)) {
        await using crashing = await waitingServer(dir, CRASHING_MAIN, fault);
        crashing.process.kill("SIGWINCH");
        assert.equal((await exitOf(crashing)).code, 1);
        const lines = crashing.stderr.split("\n").filter((l) => l.startsWith("bhyve-gdbstub:"));
        assert.equal(lines.at(-1), `bhyve-gdbstub: ${words}; nothing was held; exiting`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
