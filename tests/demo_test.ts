/**
 * End-to-end: `deno task demo` as a user runs it in a terminal. A second demo with the same VM
 * name or the same port fails with one line before any banner; Ctrl-C (SIGINT to the whole
 * process group, as a terminal sends it) exits 0, says nothing about an exit, and leaves no
 * process and no temporary directory behind.
 */
import assert from "node:assert/strict";
import { freePort } from "./helpers/stub.ts";
import { lockVm } from "../vmm/lock.ts";

const DEMO = new URL("../scripts/demo.ts", import.meta.url).pathname;
const PERMISSIONS = ["--allow-run", "--allow-read", "--allow-write", "--allow-env"];

/** Starts a demo in a session of its own (setsid), so it gets a process group as in a terminal. */
function demo(name: string, port: number) {
  const process = new Deno.Command("setsid", {
    args: [
      Deno.execPath(),
      "run",
      ...PERMISSIONS,
      DEMO,
      "--name",
      name,
      "-G",
      `127.0.0.1:${port}`,
      "--cpus",
      "1",
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { stdout: "", stderr: "" };
  const done = Promise.all((["stdout", "stderr"] as const).map(async (which) => {
    for await (const text of process[which].pipeThrough(new TextDecoderStream())) {
      out[which] += text;
    }
  }));
  return { process, out, done };
}

/** Waits for `check`, but not past `ms` nor past the demo's exit. */
async function until(d: ReturnType<typeof demo>, check: () => boolean, ms: number) {
  let exited = false;
  void d.process.status.then(() => exited = true);
  for (const end = Date.now() + ms; !check(); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end || exited) return check();
  }
  return true;
}

Deno.test("demo: --name; a taken name or port fails in one line; Ctrl-C exits 0 and cleans up", async () => {
  const name = `demo-test-${Deno.pid}`;
  const port = freePort();
  const first = demo(name, port);
  try {
    assert.ok(
      await until(first, () => first.out.stdout.includes("Attach with:"), 60_000),
      first.out.stderr,
    );
    assert.match(first.out.stdout, new RegExp(`test VM '${name}' runs 1 vCPUs`));
    const dir = /guest console: (\S+)\/serial\.log/.exec(first.out.stdout)?.[1];
    assert.ok(dir !== undefined && (await Deno.stat(dir)).isDirectory, first.out.stdout);

    for (
      const [other, otherPort, why] of [
        [name, freePort(), /^demo: cannot use VM name '.*': VM .* is already being served/],
        [`${name}-b`, port, /^demo: bhyve-gdbstub failed: Cannot listen on 127\.0\.0\.1:\d+/],
      ] as const
    ) {
      const second = demo(other, otherPort);
      const status = await second.process.status;
      await second.done;
      assert.equal(status.code, 1, second.out.stderr);
      assert.equal(second.out.stdout, "", "no banner");
      const lines = second.out.stderr.trimEnd().split("\n").filter((l) => !l.includes("Task"));
      assert.equal(lines.length, 1, second.out.stderr);
      assert.match(lines[0]!, why);
    }

    // Ctrl-C in the terminal: SIGINT to every process of the demo's group.
    await new Deno.Command("kill", { args: ["-INT", "--", `-${first.process.pid}`] }).output();
    const status = await first.process.status;
    await first.done;
    assert.equal(status.code, 0, first.out.stderr);
    assert.doesNotMatch(first.out.stderr, /exited \(\d+\); stopping/);
    await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, `${dir} is left behind`);
    // The server is gone: its lock is free and its port can be listened on again.
    (await lockVm(name)).release();
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  } finally {
    try {
      Deno.kill(-first.process.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});
