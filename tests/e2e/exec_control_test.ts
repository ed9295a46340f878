/**
 * End-to-end: every execution-control command a gdb or lldb user types by reflex, with and
 * without --allow-write, through the real gdb 13 and lldb 14. Each must come back to the prompt
 * (the client's timeout is never hit), say why in words, and leave the guest held (it runs
 * again only once the debugger leaves); writes are read back through a fresh connection.
 *
 * Two backends run the same scripts: the demo guest in the test VM behind `deno run main.ts`
 * (needs /dev/kvm), and the same guest image behind the same server in this process (always
 * runs): what a client shows depends only on the packets, and those are the same.
 */
import assert from "node:assert/strict";
import { serve } from "../../rsp/server.ts";
import { runGdb, sectioned, sectionsOf } from "../helpers/gdb.ts";
import { ElfTarget } from "../helpers/elf_target.ts";
import { GuestProbe } from "../helpers/guest.ts";
import { type LldbStep, runLldbSession } from "../helpers/lldb.ts";
import { Stub } from "../helpers/stub.ts";
import { TestVm, testvmBuilt } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const GUEST_ELF = new URL("guest.elf", L.BUILD_DIR).pathname;
const hex = (v: bigint) => `0x${v.toString(16)}`;
/** layout.ncpus, the variable the watchpoints watch. */
const NCPUS_VA = L.LAYOUT_VA + L.OFF_NCPUS;

/** Where the debugger finds the guest, and how the test tells whether it ran. */
interface Backend extends AsyncDisposable {
  address: string;
  /**
   * Asserts that nothing ran while the debugger was attached, except for the one continue of
   * the `ignore` section (call after it left).
   */
  assertHeldWhileAttached(output: string): void;
  /** Settles once vCPU `cpu` runs (for a Ctrl-C), after the debugger held it. */
  resumed(cpu?: number): Promise<void>;
  /** Asserts that a scheduler-locked continue of thread 2 ran vCPU 1 only. */
  assertRanOnly2(): Promise<void>;
  /** Asserts that the guest runs again (the debugger left or "killed" it). */
  assertRunsAfter(): Promise<void>;
}

/** The demo guest's image in this process, frozen in `tick` as vCPU 0 is most of the time. */
function imageBackend(allowWrite: boolean): Backend {
  const symbols = new TextDecoder().decode(
    new Deno.Command("nm", { args: [GUEST_ELF] }).outputSync().stdout,
  );
  const at = (name: string) =>
    BigInt(`0x${new RegExp(`^(\\w+) \\w ${name}$`, "m").exec(symbols)![1]}`);
  // The return address: the instruction after work_loop's call of tick.
  const code = new TextDecoder().decode(
    new Deno.Command("objdump", { args: ["-d", GUEST_ELF] }).outputSync().stdout,
  );
  const call = /call +[0-9a-f]+ <tick>\n *([0-9a-f]+):/.exec(code)!;
  const target = new ElfTarget(GUEST_ELF, {
    pc: at("tick") + 7n, // past the prologue: rbp is set up
    sp: at("stacks") + 0x1000n,
    returnTo: BigInt(`0x${call[1]}`),
  }, { threads: 4, allowWrite });
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  return {
    address: `127.0.0.1:${server.addr.port}`,
    assertHeldWhileAttached() {
      const ran = target.calls.filter((c) => /^(resume|step)/.test(c));
      assert.deepEqual(ran, ["resume"], "only the ignore section's continue may run");
    },
    async resumed() {
      while (!target.running) await new Promise((r) => setTimeout(r, 10));
    },
    assertRanOnly2() {
      assert.ok(target.calls.includes("resume 2"), target.calls.join(" "));
      return Promise.resolve();
    },
    assertRunsAfter() {
      assert.equal(target.calls.at(-1), "detach");
      return Promise.resolve();
    },
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
}

/** The demo guest in the test VM behind `deno run main.ts`. */
async function vmBackend(allowWrite: boolean): Promise<Backend> {
  const vm = await TestVm.start({ cpus: 4, mem: "256M" });
  const stub = await Stub.start({
    vm: vm.name,
    dir: vm.dir,
    args: allowWrite ? ["--allow-write"] : [],
  });
  const probe = GuestProbe.open(vm);
  assert.ok(await probe.running([0, 1]), "the guest runs before the debugger attaches");
  return {
    address: stub.address,
    assertHeldWhileAttached(output) {
      // The script prints vCPU 0's loop counter first and last: it must not have moved.
      const counters = [...output.matchAll(/^\$\d+ = (\d+)\s*$/gm)].map((m) => m[1]);
      assert.ok(counters.length >= 2, output);
      assert.equal(counters[0], counters.at(-1), "vCPU 0 ran while the debugger was attached");
    },
    async assertRunsAfter() {
      assert.ok(await probe.running([0, 1]), "the guest runs again");
    },
    async resumed(cpu = 0) {
      await probe.waitHeld([cpu], true, 120_000);
      assert.ok(await probe.waitHeld([cpu], false, 120_000), `vCPU ${cpu} runs`);
    },
    async assertRanOnly2() {
      // Checked while vCPU 1 runs, before the Ctrl-C.
      assert.ok(await probe.stopped([0], 300), "vCPU 0 stays held");
    },
    async [Symbol.asyncDispose]() {
      probe[Symbol.dispose]();
      await stub[Symbol.asyncDispose]();
      await vm[Symbol.asyncDispose]();
    },
  };
}

const STEP_REFUSED =
  /Single-step is not available: [^\n]*outside bhyve[^\n]*\n+Thread \d+ stopped\./;
const NO_WRITE = "bhyve-gdbstub was started without --allow-write";
const runPast = (what: string) =>
  new RegExp(
    `Cannot continue: the VM would run past (?:[^\\n]* and )?${what}, which cannot be set\\. Breakpoints are not available: .*The VM stays stopped: delete or disable them to continue \\(or 'monitor breakpoints ignore' to run past them\\)\\.\\n+Thread \\d+ stopped\\.`,
  );

/** Every gdb command of the issue; `after` prints the counter again, then `kill` leaves. */
function gdbScript(allowWrite: boolean): string[] {
  return [
    `file ${GUEST_ELF}`,
    ...sectioned({
      attach: [`target remote ${"{address}"}`],
      before: ["p layout.percpu[0].counter", "p layout.percpu[0].id"],
      stepi: ["stepi"],
      nexti: ["nexti"],
      step: ["step"],
      next: ["next"],
      until: ["until"],
      advance: ["advance spin"],
      finish: ["finish"],
      break: ["break tick", "continue", "delete"],
      tbreak: ["tbreak spin", "continue", "delete"],
      hbreak: ["hbreak spin", "continue", "delete"],
      watch: ["watch layout.ncpus", "continue", "delete"],
      rwatch: ["rwatch layout.ncpus", "continue", "delete"],
      awatch: ["awatch layout.ncpus", "continue", "delete"],
      signal: ["signal SIGUSR1"],
      gcore: [`gcore ${Deno.makeTempDirSync()}/core`],
      setvar: ["set var layout.percpu[0].id = 7"],
      // vCPU 3 is the AP bhyve keeps parked: it stays put after the debugger leaves.
      setrax: ["thread 4", "set $rax = 77", "thread 1"],
      jump: allowWrite ? [] : ["jump spin"],
      after: ["p layout.percpu[0].counter"],
      // An internal breakpoint (Linux's lx-symbols sets one) cannot be deleted: run past it.
      ignore: ["break tick", "monitor breakpoints ignore", "continue", "delete"],
      kill: ["kill"],
    }),
  ];
}

function assertGdb(s: Record<string, string>, allowWrite: boolean, all: string): void {
  for (const name of ["stepi", "nexti", "step", "next", "until"]) {
    assert.match(s[name]!, STEP_REFUSED, `${name}\n${all}`);
  }
  assert.match(s.advance!, runPast("the breakpoint at 0x[0-9a-f]+"), all);
  assert.match(s.finish!, runPast("the breakpoint at 0x[0-9a-f]+"), all);
  assert.match(s.break!, /Breakpoint 1 at 0x[0-9a-f]+: file guest\/main\.c/, all);
  assert.match(s.break!, runPast("the breakpoint at 0x[0-9a-f]+"), all);
  assert.match(s.tbreak!, /Temporary breakpoint 2 at /, all);
  assert.match(s.tbreak!, runPast("the breakpoint at 0x[0-9a-f]+"), all);
  assert.match(s.hbreak!, /Hardware assisted breakpoint 3 at /, all);
  assert.match(s.hbreak!, runPast("the hardware breakpoint at 0x[0-9a-f]+"), all);
  const ncpus = hex(NCPUS_VA);
  assert.match(s.watch!, runPast(`the write watchpoint on 4 bytes at ${ncpus}`), all);
  assert.match(s.rwatch!, runPast(`the read watchpoint on 4 bytes at ${ncpus}`), all);
  assert.match(s.awatch!, runPast(`the access watchpoint on 4 bytes at ${ncpus}`), all);
  assert.match(
    s.signal!,
    /bhyve-gdbstub cannot deliver signal 30 to a VM \(a VM has no signals\): nothing was resumed\..*\n+Thread \d+ stopped\./,
    all,
  );
  // gdb decides this alone (no OS ABI for the guest): it sends no packet to answer.
  assert.match(s.gcore!, /Can't create a corefile/, all);
  if (allowWrite) {
    assert.equal(s.setvar!.trim(), "", all);
    assert.equal(
      // Only gdb's own thread-switch lines (the frame, and its source line if it has one).
      s.setrax!.split("\n").filter((l) => !/^(\[Switching to thread |#0 |\d+\t)/.test(l))
        .join("\n").trim(),
      "",
      all,
    );
  } else {
    // gdb 13 prints no text for a refused memory write; the server's log has the reason.
    assert.match(s.setvar!, new RegExp(`Cannot access memory at address 0x[0-9a-f]+`), all);
    assert.match(
      s.setrax!,
      new RegExp(
        `Could not write register "rax"; remote failure reply 'E\\.Writing registers is not available: ${NO_WRITE}`,
      ),
      all,
    );
    assert.match(
      s.jump!,
      new RegExp(
        `Could not write register "rip"; remote failure reply 'E\\.Writing registers is not available: ${NO_WRITE}`,
      ),
      all,
    );
  }
  assert.match(s.ignore!, /a continue runs past them\./, all);
  assert.match(
    s.ignore!,
    /Running past the breakpoint at 0x[0-9a-f]+ \(monitor breakpoints ignore\)\./,
    all,
  );
  assert.match(s.ignore!, /received signal SIGINT/, all);
  assert.match(s.kill!, /\[Inferior 1 \(Remote target\) killed\]/, all);
}

/**
 * The lldb commands of the issue, interactively (batch mode stops at the first refusal). lldb
 * reports stops asynchronously: each command that resumes gets a moment for its stop to print.
 */
function lldbScript(address: string): LldbStep[] {
  const settle = () => new Promise((resolve) => setTimeout(resolve, 1000));
  const resumes = (command: string): LldbStep[] => [command, settle];
  return [
    `gdb-remote ${address}`,
    settle,
    ...resumes("thread step-in"),
    ...resumes("thread step-over"),
    ...resumes("thread step-inst"),
    ...resumes("thread step-out"),
    "thread plan discard 1", // or every continue would re-insert the step-out's breakpoint
    "breakpoint set -n spin",
    ...resumes("process continue"),
    "breakpoint delete 1",
    "watchpoint set variable layout.ncpus",
    ...resumes("process continue"),
    "watchpoint delete 1",
    `memory write -s 4 ${hex(L.LAYOUT_VA + 0x60n)} 0`, // padding: harmless to the guest,
    "thread select 4",
    "register write rax 78",
    "process status",
    "process kill",
  ];
}

function assertLldb(output: string, allowWrite: boolean): void {
  // step-in and step-inst ask for a single step; step-over does too, unless the instruction it
  // stopped at is a branch or call, where lldb sets a breakpoint and continues instead (which
  // is refused too, below): where the vCPU stopped decides which.
  const steps = output.match(/stop reason = Single-step is not available: .*outside bhyve/g);
  assert.ok((steps?.length ?? 0) >= 2 && (steps?.length ?? 0) <= 3, output);
  assert.match(
    output,
    /stop reason = Cannot continue: the VM would run past the breakpoint at 0x[0-9a-f]+/,
    output,
  );
  assert.match(output, /Breakpoint 1: where = guest\.elf`spin/, output);
  assert.match(output, /A refused 'thread step-out' stays pending until 'thread plan discard 1'\./);
  const spin =
    /Breakpoint 1: where = guest\.elf`spin[^\n]*address = (0x[0-9a-f]+)/.exec(output)![1];
  assert.match(
    output,
    new RegExp(
      `stop reason = Cannot continue: the VM would run past the breakpoint at ${spin}, which`,
    ),
    "after the plan is discarded, only the user's breakpoint is left",
  );
  assert.match(
    output,
    new RegExp(
      `stop reason = Cannot continue: the VM would run past the write watchpoint on 4 bytes at ${
        hex(NCPUS_VA)
      }`,
    ),
    output,
  );
  assert.match(output, /Process 1 stopped/, output);
  if (allowWrite) {
    assert.doesNotMatch(output, /memory write failed|Failed to write register/, output);
  } else {
    // lldb 14 prints no server text for refused writes either.
    assert.match(output, /memory write failed for 0x/, output);
    assert.match(output, /Failed to write register 'rax'/, output);
  }
  assert.match(
    output,
    /got unexpected response to k packet: E\.bhyve-gdbstub never kills a VM: it detached instead, and the VM runs on as it did before the attach/,
    output,
  );
}

const noVm = !testvmBuilt();
const backends = [
  {
    name: "guest image",
    make: (w: boolean) => Promise.resolve(imageBackend(w)),
    ignore: !testvmBuilt(),
  },
  { name: "test VM", make: vmBackend, ignore: noVm },
];

for (const { name, make, ignore } of backends) {
  for (const allowWrite of [false, true]) {
    const mode = allowWrite ? "--allow-write" : "read-only";
    Deno.test({
      name: `gdb (${name}, ${mode}): every refused command returns, in words, guest held`,
      ignore,
    }, async () => {
      await using backend = await make(allowWrite);
      const script = gdbScript(allowWrite).map((c) => c.replace("{address}", backend.address));
      const { output, timedOut } = await runGdb(script, {
        timeoutMs: 120_000,
        interruptOn: backend.resumed(),
      });
      const s = sectionsOf(output);
      const all = `${output}`;
      assert.ok(!timedOut && s.kill !== undefined, all);
      assertGdb(s, allowWrite, all);
      backend.assertHeldWhileAttached(`${s.before}${s.after}`);
      await backend.assertRunsAfter();

      // A fresh connection reads back what was (or was not) written.
      const before = /^\$\d+ = (\d+)\s*$/gm;
      const id = [...s.before!.matchAll(before)][1]![1];
      const check = await runGdb([
        `file ${GUEST_ELF}`,
        `target remote ${backend.address}`,
        ...sectioned({
          id: ["p layout.percpu[0].id"],
          rax: ["thread 4", "p $rax"],
          done: ["detach"],
        }),
      ], { timeoutMs: 60_000 });
      const r = sectionsOf(check.output);
      assert.ok(!check.timedOut && r.done !== undefined, check.output);
      assert.match(r.id!, new RegExp(`= ${allowWrite ? 7 : id}$`, "m"), check.output);
      if (allowWrite) assert.match(r.rax!, /= 77$/m, check.output);
      else assert.doesNotMatch(r.rax!, /= 77$/m, check.output);

      // Scheduler-locking: `vCont;c:2` runs vCPU 1 alone; the Ctrl-C stop names thread 2.
      const onlyTwo = backend.resumed(1).then(() => backend.assertRanOnly2());
      const locked = await runGdb([
        `file ${GUEST_ELF}`,
        `target remote ${backend.address}`,
        "set scheduler-locking on",
        "thread 2",
        "continue",
        "info threads",
        "detach",
      ], { timeoutMs: 60_000, interruptOn: onlyTwo.catch(() => {}) });
      assert.ok(!locked.timedOut, locked.output);
      await onlyTwo;
      assert.match(locked.output, /Thread 2 (?:"[^"]*" )?received signal SIGINT/, locked.output);
      assert.match(locked.output, /^\* 2 +Thread 2/m, locked.output);
    });

    Deno.test(
      { name: `lldb (${name}, ${mode}): every refused command returns, in words`, ignore },
      async () => {
        await using backend = await make(allowWrite);
        const { output, timedOut } = await runLldbSession(lldbScript(backend.address), {
          file: GUEST_ELF,
          timeoutMs: 120_000,
        });
        assert.ok(!timedOut, output);
        assertLldb(output, allowWrite);
        await backend.assertRunsAfter();
      },
    );
  }
}
