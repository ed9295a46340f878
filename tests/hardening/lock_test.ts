/**
 * vmm/lock.ts: one bhyve-gdbstub per VM, refused with the holder's PID; the lock dies with
 * its process; a planted symlink is never followed.
 */
import assert from "node:assert/strict";
import { lockDirectory, lockPath, lockVm, VmLockError } from "../../vmm/lock.ts";

const LOCK_URL = new URL("../../vmm/lock.ts", import.meta.url).href;

Deno.test("the lock directory: env override, else /var/run on FreeBSD, /tmp elsewhere", () => {
  const env = (value?: string) => ({ get: () => value });
  assert.equal(lockDirectory(env("/x/y")), "/x/y");
  assert.equal(lockDirectory(env()), Deno.build.os === "freebsd" ? "/var/run" : "/tmp");
  assert.equal(lockPath("vm1", "/run/"), "/run/bhyve-gdbstub.vm1.lock");
});

Deno.test("a second lock on the same VM is refused, naming the holder; release lets it in", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await lockVm("guest0", { dir });
    assert.equal(await Deno.readTextFile(first.path), `${Deno.pid}\n`);
    await assert.rejects(
      lockVm("guest0", { dir }),
      (error: unknown) =>
        error instanceof VmLockError && error.pid === Deno.pid &&
        error.message ===
          `VM guest0 is already being served by another bhyve-gdbstub (process ${Deno.pid} ` +
            `holds ${dir}/bhyve-gdbstub.guest0.lock)`,
    );
    using other = await lockVm("guest1", { dir }); // another VM is independent
    first.release();
    first.release();
    using again = await lockVm("guest0", { dir });
    assert.ok(again.path.endsWith("guest0.lock") && other.path.endsWith("guest1.lock"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the lock is held by another process until it dies, then free", async () => {
  const dir = await Deno.makeTempDir();
  const holder = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `const { lockVm } = await import(${JSON.stringify(LOCK_URL)});
       await lockVm("vmx", { dir: ${JSON.stringify(dir)} });
       console.log("locked"); setInterval(() => {}, 1000);`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    assert.equal((await reader.read()).value?.trim(), "locked");
    const error = await lockVm("vmx", { dir }).catch((e) => e);
    assert.ok(error instanceof VmLockError, String(error));
    assert.equal(error.pid, holder.pid);
    assert.match(error.message, new RegExp(`process ${holder.pid} holds`));
    holder.kill("SIGKILL");
    await holder.status;
    reader.releaseLock();
    await holder.stdout.cancel().catch(() => {});
    using lock = await lockVm("vmx", { dir });
    assert.equal(await Deno.readTextFile(lock.path), `${Deno.pid}\n`);
  } finally {
    try {
      holder.kill("SIGKILL");
    } catch {
      // already gone
    }
    await holder.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a symlink planted at the lock path is refused, its target untouched", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const victim = `${dir}/victim`;
    await Deno.writeTextFile(victim, "precious");
    await Deno.symlink(victim, lockPath("vm2", dir));
    await assert.rejects(lockVm("vm2", { dir }), /is not a regular file/);
    assert.equal(await Deno.readTextFile(victim), "precious");
    await assert.rejects(lockVm("../etc", { dir }), /not a valid VM name/);
    await assert.rejects(lockVm("vm3", { dir: `${dir}/missing` }), /BHYVE_GDBSTUB_LOCK_DIR/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
