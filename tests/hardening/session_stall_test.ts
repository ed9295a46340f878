/**
 * The session's stall timeout without a VM: a packet left half sent, or a write the debugger
 * never takes, ends the session (which detaches); a debugger idle between packets stays.
 */
import assert from "node:assert/strict";
import { Session } from "../../rsp/session.ts";
import { FakeTarget } from "../rsp/fake_target.ts";
import { MockConnection } from "../rsp/mock_connection.ts";

const STALL_MS = 150;

function start(conn = new MockConnection()) {
  const target = new FakeTarget();
  const done = new Session(target, conn, { packetSize: 0x1000, stallTimeoutMs: STALL_MS }).run();
  return { target, conn, done };
}

for (const partial of ["$m10", "$m1000,4#", "$m1000,4#1", "$g}", "$qC*"]) {
  Deno.test(`half a packet (${JSON.stringify(partial)}) ends the session after the timeout`, async () => {
    const s = start();
    assert.equal(await s.conn.ask("?"), "T05thread:1;");
    s.conn.push(partial);
    const started = performance.now();
    await s.done;
    const took = performance.now() - started;
    assert.ok(took >= STALL_MS * 0.9 && took < 10_000, `ended after ${took} ms`);
    assert.deepEqual(s.target.calls, ["stop", "detach"]);
  });
}

Deno.test("a debugger idle between packets is not timed out; a whole packet resets the clock", async () => {
  const s = start();
  assert.equal(await s.conn.ask("?"), "T05thread:1;");
  await new Promise((r) => setTimeout(r, STALL_MS * 3));
  // Sent in pieces, the whole packet within the timeout of its first byte: served.
  for (const piece of ["$qAtt", "ached", "#8f"]) {
    s.conn.push(piece);
    await new Promise((r) => setTimeout(r, STALL_MS / 5));
  }
  assert.equal(await s.conn.reply(), "1");
  await new Promise((r) => setTimeout(r, STALL_MS * 3));
  assert.equal(await s.conn.ask("qC"), "QC1");
  assert.ok(!s.conn.closed);
  s.conn.end();
  await s.done;
});

Deno.test("a packet dribbled in pieces, each in time but not the whole, ends the session", async () => {
  const s = start();
  assert.equal(await s.conn.ask("?"), "T05thread:1;");
  // The deadline runs from the first byte: more bytes do not extend it.
  const pieces = ["$qAtt", "a", "c", "h", "e", "d", "#8f"];
  for (const piece of pieces) {
    if (s.conn.closed) break;
    s.conn.push(piece);
    await new Promise((r) => setTimeout(r, STALL_MS / 2));
  }
  await s.done;
  assert.ok(s.conn.closed);
  assert.deepEqual(s.target.calls, ["stop", "detach"], "dropped before the packet was whole");
});

/** A connection whose writes never complete once `stuck` (the debugger stopped reading). */
class StuckConnection extends MockConnection {
  stuck = false;
  override write(data: Uint8Array): Promise<number> {
    return this.stuck ? new Promise(() => {}) : super.write(data);
  }
}

Deno.test("a debugger that stops reading is dropped after the timeout, and detached", async () => {
  const conn = new StuckConnection();
  const s = start(conn);
  assert.equal(await conn.ask("?"), "T05thread:1;");
  conn.stuck = true;
  conn.send("g");
  const started = performance.now();
  await s.done;
  const took = performance.now() - started;
  assert.ok(took >= STALL_MS * 0.9 && took < 10_000, `ended after ${took} ms`);
  assert.ok(conn.closed);
  assert.deepEqual(s.target.calls, ["stop", "detach"]);
});

Deno.test("a stop reply the debugger does not take ends the session too", async () => {
  const conn = new StuckConnection();
  const s = start(conn);
  assert.equal(await conn.ask("?"), "T05thread:1;");
  conn.send("c");
  await new Promise((r) => setTimeout(r, 20));
  conn.stuck = true;
  conn.push("\x03");
  await s.done;
  assert.ok(conn.closed);
  assert.equal(s.target.calls.at(-1), "detach");
});
