/**
 * libvmmapi failing one call, once: the real VmTarget over the real ffi bindings and the real
 * test VM, with a test-only proxy in between that makes one named VmHandle method throw a
 * VmmError (EIO) the next time it is called. The packet that needed the call gets an Enn
 * reply, the session goes on, and the VM is never left suspended.
 *
 * Nothing here is in production code: the proxy wraps the handle this test opened.
 */
import assert from "node:assert/strict";
import { loadVmmapi } from "../../ffi/mod.ts";
import { Session } from "../../rsp/session.ts";
import { type VmHandle, VmmError, VmTarget } from "../../vmm/mod.ts";
import { LIBVMMAPI, TestVm, testvmBuilt } from "../helpers/testvm.ts";
import { MockConnection } from "../rsp/mock_connection.ts";
import { Observer, sleep, until } from "./harness.ts";
import * as L from "../testvm/layout.ts";

const ignore = !testvmBuilt();
const CPUS = 2;

/** A VmHandle whose method `name` throws EIO on its next call(s); everything else is real. */
class FaultyHandle {
  readonly handle: VmHandle;
  #armed = new Map<string, number>();
  /** Faults delivered, by method. */
  readonly fired: string[] = [];

  constructor(real: VmHandle) {
    this.handle = new Proxy(real, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== "function") return value;
        const name = String(prop);
        return (...args: unknown[]) => {
          const left = this.#armed.get(name) ?? 0;
          if (left > 0) {
            this.#armed.set(name, left - 1);
            this.fired.push(name);
            throw new VmmError(`vm_${name}`, "injected", 5, "EIO", "Input/output error");
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  }

  /** Makes the next `times` calls of `method` fail (and disarms any other). */
  fail(method: keyof VmHandle, times = 1): void {
    this.#armed.clear();
    this.#armed.set(method, times);
  }
}

interface Rig {
  vm: TestVm;
  observer: Observer;
  faulty: FaultyHandle;
  target: VmTarget;
  conn: MockConnection;
  done: Promise<void>;
  close(): Promise<void>;
}

async function rig(): Promise<Rig> {
  const vm = await TestVm.start({ cpus: CPUS, mem: "64M" });
  const observer = new Observer(vm);
  await observer.allRunning(CPUS);
  const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
  const real = api.open(vm.name);
  const faulty = new FaultyHandle(real);
  const target = new VmTarget(faulty.handle, { heldPollMs: 20, runningPollMs: 20 });
  const conn = new MockConnection();
  const done = new Session(target, conn, { packetSize: 0x4000 }).run();
  return {
    vm,
    observer,
    faulty,
    target,
    conn,
    done,
    async close() {
      conn.end();
      await done;
      await target.close();
      api.close();
      observer[Symbol.dispose]();
      await vm.stop();
    },
  };
}

const kernelVa = (L.KERNEL_VBASE + L.LAYOUT_PHYS).toString(16);

Deno.test({
  name: "one failed libvmmapi call: an Enn reply, the session goes on, the VM runs after",
  ignore,
  async fn() {
    const r = await rig();
    try {
      const { conn, faulty } = r;
      assert.match(await conn.ask("?"), /^T05thread:1;$/);
      await conn.ask("QStartNoAckMode");
      await conn.ask("QEnableErrorStrings"); // Enn;hex(message): the code and the reason
      const registers = await conn.ask("g");
      const memory = await conn.ask(`m${kernelVa},8`);
      assert.equal(memory, "54455354564d3031"); // "TESTVM01"

      // Each packet, with the one call it needs failing once, then again with none failing.
      // A register batch that fails degrades to one-by-one reads: the same answer, no error.
      const cases: [keyof VmHandle, string, RegExp, string | RegExp][] = [
        ["getRegisterSet", "g", new RegExp(`^${registers}$`), registers],
        // (register_reader.ts turns this EIO into "cannot be read on this target", E01)
        ["getRegister", "p10;thread:2;", /^E0[15];/, "*"],
        ["readRam", `m${kernelVa},8`, /^E05;/, memory],
        ["gla2gpa", `m${kernelVa},8`, /^E0e;/, memory],
        ["getRegisterSet", `m${kernelVa},8`, /^E05;/, memory],
        // A thread not in the cached set makes the target look again.
        ["activeCpus", "g;thread:3;", /^E05;/, /^E03;/],
        ["getRegisterSet", "qThreadExtraInfo,1", /^[0-9a-f]+$/, "*"],
        ["readKernemu", `m${(L.LAPIC_VA + L.LAPIC_REG_VERSION).toString(16)},4`, /^E0e;/, "*"],
      ];
      for (const [method, body, failed, ok] of cases) {
        // Drop the caches the held target keeps, so the call really happens.
        assert.match(await conn.ask("vCont;t"), /^T00thread:/);
        const fired = faulty.fired.length;
        faulty.fail(method);
        let answer = await conn.ask(body);
        assert.deepEqual(faulty.fired.slice(fired), [method], `${body} did not call ${method}`);
        assert.match(answer, failed, `${method} failing under ${body}: ${answer}`);
        while (answer.startsWith("O")) answer = await conn.reply(); // monitor output, then OK/E
        let again = await conn.ask(body);
        while (again.startsWith("O")) again = await conn.reply();
        if (ok instanceof RegExp) assert.match(again, ok, `${body} after ${method} failed once`);
        else if (ok !== "*") assert.equal(again, ok, `${body} after ${method} failed once`);
        else assert.doesNotMatch(again, /^E/, `${body} after ${method} failed once`);
      }
      console.log(`faults delivered: ${faulty.fired.join(", ")}`);
      assert.ok(faulty.fired.length >= 6, faulty.fired.join(", "));
      assert.deepEqual(r.observer.debugCpus(), [0, 1], "still held");
    } finally {
      await r.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "failed run-control calls never leave a vCPU suspended",
  ignore,
  async fn() {
    const r = await rig();
    try {
      const { conn, faulty, observer } = r;
      await conn.ask("?");
      await conn.ask("QStartNoAckMode");

      // vm_resume_cpu fails once on continue: it is retried, every vCPU runs.
      faulty.fail("resumeCpu");
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "resume despite one failed resume");
      await observer.counting(CPUS);
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);

      // vm_resume_cpu fails twice in a row: the vCPU is stranded, then retried until it runs.
      faulty.fail("resumeCpu", 3);
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "stranded vCPU retried", 5000);
      assert.equal(r.target.control.stranded.size, 0);
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);

      // vm_debug_cpus fails on the look release takes first: what is held is resumed anyway.
      faulty.fail("debugCpus");
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "resume despite a failed look");
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);

      // vm_debug_cpus fails on the stop (Ctrl-C): tried again, the stop happens.
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "running");
      faulty.fail("debugCpus");
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);
      assert.deepEqual(observer.debugCpus(), [0, 1]);

      // vm_get_register fails on the read that waits for a vCPU to park: the stop holds.
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "running");
      faulty.fail("getRegister");
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);
      assert.deepEqual(observer.debugCpus(), [0, 1]);
      assert.notEqual(await conn.ask("g"), "");

      // vm_suspend_cpu fails for one vCPU on a stop: the next poll holds it.
      conn.send("vCont;c");
      await until(() => observer.debugCpus().length === 0, "running");
      faulty.fail("suspendCpu");
      conn.push("\x03");
      assert.match(await conn.reply(), /^T02thread:/);
      await until(() => observer.debugCpus().length === CPUS, "the held poll takes the straggler");

      // Detach with vm_resume_cpu failing once: the VM still runs after.
      faulty.fail("resumeCpu");
      assert.equal(await conn.ask("D"), "OK");
      await r.done;
      await observer.allRunning(CPUS);
      console.log(`faults delivered: ${faulty.fired.join(", ")}`);
      assert.ok(faulty.fired.length >= 8, faulty.fired.join(", "));
    } finally {
      await r.close().catch(() => {});
    }
  },
});

Deno.test({
  name: "vm_resume_cpu failing for good: close() keeps trying, then says what to run",
  ignore,
  async fn() {
    const r = await rig();
    try {
      await r.conn.ask("?");
      r.faulty.fail("resumeCpu", 4); // two tries each for two vCPUs at detach
      assert.equal(await r.conn.ask("D"), "OK");
      await r.done;
      // The retry timer gets them running.
      await until(() => r.observer.debugCpus().length === 0, "retried resume", 5000);
      await sleep(50);
      assert.equal(r.target.control.stranded.size, 0);
    } finally {
      await r.close().catch(() => {});
    }
  },
});
