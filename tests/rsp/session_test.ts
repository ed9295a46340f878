import assert from "node:assert/strict";
import { Session } from "../../rsp/session.ts";
import { TargetError, TargetGoneError } from "../../rsp/target.ts";
import { targetXml } from "../../rsp/target_xml.ts";
import { hexToText, textToHex } from "../../rsp/hex.ts";
import { type FakeOptions, FakeTarget } from "./fake_target.ts";
import { MockConnection } from "./mock_connection.ts";

function start(options: FakeOptions & { packetSize?: number } = {}) {
  const target = new FakeTarget(options);
  const conn = new MockConnection();
  const session = new Session(target, conn, { packetSize: options.packetSize ?? 0x1000 });
  const done = session.run();
  return { target, conn, session, done };
}

/** A session past the handshake, in no-ack mode, as gdb leaves it. */
async function startGdb(options: FakeOptions & { packetSize?: number } = {}) {
  const s = start(options);
  await s.conn.ask("qSupported:multiprocess+;swbreak+;vContSupported+;xmlRegisters=i386");
  await s.conn.ask("QStartNoAckMode");
  return s;
}

async function startLldb(options: FakeOptions = {}) {
  const s = start(options);
  await s.conn.ask("QStartNoAckMode");
  await s.conn.ask("qSupported:xmlRegisters=i386,arm,mips,arc;multiprocess+");
  await s.conn.ask("QThreadSuffixSupported");
  await s.conn.ask("QListThreadsInStopReply");
  await s.conn.ask("QEnableErrorStrings");
  return s;
}

async function finish(s: { conn: MockConnection; done: Promise<void> }) {
  s.conn.end();
  await s.done;
}

const hex64 = (n: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
};

Deno.test("attach stops the target and ? reports the stop thread", async () => {
  const s = start();
  assert.equal(await s.conn.ask("?"), "T05thread:1;");
  assert.deepEqual(s.target.calls, ["stop"]);
  await finish(s);
  assert.deepEqual(s.target.calls, ["stop", "detach"]);
});

Deno.test("acks: one write carries + and the reply; - retransmits; bad checksum gets -", async () => {
  const s = start();
  s.conn.send("qAttached");
  await s.conn.reply();
  assert.equal(new TextDecoder().decode(s.conn.writes.at(-1)), "+$1#31");
  s.conn.push("-");
  assert.equal(await s.conn.reply(), "1");
  assert.equal(new TextDecoder().decode(s.conn.writes.at(-1)), "$1#31");
  s.conn.push("$qAttached#00");
  const nack = await s.conn.nextEvent();
  assert.equal(nack.kind, "nack");
  assert.equal(await s.conn.ask("QStartNoAckMode"), "OK");
  assert.equal(new TextDecoder().decode(s.conn.writes.at(-1)), "+$OK#9a");
  s.conn.send("qAttached");
  await s.conn.reply();
  assert.equal(new TextDecoder().decode(s.conn.writes.at(-1)), "$1#31");
  await finish(s);
});

Deno.test("qSupported is computed; error-message+ is echoed only when offered", async () => {
  const s = start();
  assert.equal(
    await s.conn.ask("qSupported:multiprocess+;vContSupported+"),
    "PacketSize=1000;qXfer:features:read+;QStartNoAckMode+;vContSupported+;binary-upload+",
  );
  assert.match(await s.conn.ask("qSupported:error-message+"), /;error-message\+$/);
  assert.equal(await s.conn.ask("m0,4"), "E.Cannot read guest memory: 0x0 is not mapped on vCPU 0");
  await finish(s);
});

Deno.test("an unknown packet gets the empty reply and is recorded", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("qWhatever:1"), "");
  assert.equal(await s.conn.ask("vFile:open:xx"), "");
  assert.deepEqual([...s.session.unsupportedPackets], ["qWhatever", "vFile"]);
  await finish(s);
});

Deno.test("g sends the g set in regnum order, unreadable registers as x digits", async () => {
  const s = await startGdb();
  const original = s.target.readRegisters.bind(s.target);
  s.target.readRegisters = (thread) => {
    const values = original(thread);
    values[17] = undefined; // eflags
    return values;
  };
  const reply = await s.conn.ask("g");
  const rax = hex64(1n);
  const rip = hex64(0x1010n);
  assert.ok(reply.startsWith(rax));
  assert.equal(reply.slice(16 * 16, 17 * 16), rip);
  assert.equal(reply.slice(17 * 16, 17 * 16 + 8), "xxxxxxxx");
  const gBytes = 16 * 8 + 8 + 4 + 6 * 4 + 8 * 10 + 8 * 4 + 16 * 16 + 4;
  assert.equal(reply.length, gBytes * 2);
  await finish(s);
});

Deno.test("p reads one register; unknown and unreadable ones are errors", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("p10"), hex64(0x1010n));
  assert.equal(await s.conn.ask("p3d"), "E.Register cr8 cannot be read on this target");
  assert.equal(await s.conn.ask("p999"), "E.No register number 2457");
  assert.equal(await s.conn.ask("pzz"), "E16");
  assert.equal(await s.conn.ask("Hg2"), "OK");
  assert.equal(await s.conn.ask("p10"), hex64(0x1020n));
  await finish(s);
});

Deno.test("lldb: thread suffix, threads in stop replies, hex error strings", async () => {
  const s = await startLldb();
  assert.equal(await s.conn.ask("p10;thread:0002;"), hex64(0x1020n));
  assert.equal(await s.conn.ask("g;thread:2;").then((r) => r.slice(256, 272)), hex64(0x1020n));
  assert.equal(
    await s.conn.ask("?"),
    `T05thread:1;threads:1,2;hexname:${textToHex("vCPU 0, suspended, long mode")};`,
  );
  assert.equal(
    await s.conn.ask("p3d;thread:0001;"),
    `E01;${textToHex("Register cr8 cannot be read on this target")}`,
  );
  assert.equal(
    await s.conn.ask("qHostInfo"),
    `triple:${textToHex("x86_64-unknown-none")};ptrsize:8;endian:little;`,
  );
  await finish(s);
});

Deno.test("lldb: qThreadStopInfo names each thread; only the stopped one has a signal", async () => {
  const s = await startLldb({ threads: 3 });
  const name = (vcpu: number) => textToHex(`vCPU ${vcpu}, suspended, long mode`);
  assert.equal(await s.conn.ask("qThreadStopInfo1"), `T05thread:1;hexname:${name(0)};`);
  assert.equal(await s.conn.ask("qThreadStopInfo3"), `T00thread:3;hexname:${name(2)};`);
  assert.match(await s.conn.ask("qThreadStopInfo9"), /^E03;/);
  await finish(s);
});

Deno.test("m: hex, short reads at the end of the mapping, errors and clamping", async () => {
  const s = await startGdb({ packetSize: 0x100 });
  assert.equal(await s.conn.ask("m1000,4"), "00010203");
  assert.equal(await s.conn.ask("m3ffe,10"), "feff");
  assert.equal(await s.conn.ask("mdead0000,4"), "E0e");
  assert.equal(await s.conn.ask("m1000,ffffffff").then((r) => r.length), 0x100);
  assert.equal(await s.conn.ask("mffffffffffffff00,101"), "E0e");
  assert.equal(await s.conn.ask("m1000"), "E16");
  assert.equal(await s.conn.ask("m1000,0"), "");
  await finish(s);
});

Deno.test("x: gdb gets a b prefix; lldb's x0,0 probe switches to raw binary", async () => {
  const s = await startGdb();
  s.target.memory.set([0x23, 0x24, 0x7d, 0x2a], 0);
  assert.equal(await s.conn.ask("x1000,6"), "b#$}*\x04\x05");
  assert.equal(await s.conn.ask("x0,0"), "OK");
  assert.equal(await s.conn.ask("x1004,2"), "\x04\x05");
  await finish(s);
});

Deno.test("qXfer:features:read returns target.xml in m/l chunks", async () => {
  const s = await startGdb();
  let xml = "";
  for (let offset = 0;;) {
    const reply = await s.conn.ask(`qXfer:features:read:target.xml:${offset.toString(16)},200`);
    xml += reply.slice(1);
    offset += reply.length - 1;
    if (reply.startsWith("l")) break;
    assert.ok(reply.startsWith("m"));
  }
  assert.equal(xml, targetXml(s.target.description()));
  assert.match(await s.conn.ask("qXfer:features:read:other.xml:0,100"), /^E/);
  assert.match(await s.conn.ask("qXfer:features:read:target.xml"), /^E/);
  await finish(s);
});

Deno.test("thread queries: lists, current, extra info, H and T", async () => {
  const s = await startGdb({ threads: 3 });
  assert.equal(await s.conn.ask("qfThreadInfo"), "m1,2,3");
  assert.equal(await s.conn.ask("qsThreadInfo"), "l");
  assert.equal(await s.conn.ask("qC"), "QC1");
  assert.equal(await s.conn.ask("qThreadExtraInfo,2"), textToHex("vCPU 1, suspended, long mode"));
  assert.equal(await s.conn.ask("Hg3"), "OK");
  assert.equal(await s.conn.ask("qC"), "QC3");
  assert.equal(await s.conn.ask("Hg9"), "E03");
  assert.equal(await s.conn.ask("Hc-1"), "OK");
  assert.equal(await s.conn.ask("Hg0"), "OK");
  assert.equal(await s.conn.ask("qC"), "QC1");
  assert.equal(await s.conn.ask("T2"), "OK");
  assert.equal(await s.conn.ask("T9"), "E03");
  assert.equal(await s.conn.ask("qAttached"), "1");
  assert.equal(await s.conn.ask("qOffsets"), "");
  assert.equal(await s.conn.ask("qSymbol::"), "OK");
  assert.equal(await s.conn.ask("qTStatus"), "");
  assert.equal(await s.conn.ask("vMustReplyEmpty"), "");
  await finish(s);
});

Deno.test("thread lists longer than one packet continue in qsThreadInfo", async () => {
  const s = start({ threads: 40, packetSize: 0x20 });
  const ids: string[] = [];
  let reply = await s.conn.ask("qfThreadInfo");
  while (reply.startsWith("m")) {
    ids.push(...reply.slice(1).split(","));
    reply = await s.conn.ask("qsThreadInfo");
  }
  assert.equal(reply, "l");
  assert.deepEqual(ids, Array.from({ length: 40 }, (_, i) => (i + 1).toString(16)));
  await finish(s);
});

Deno.test("writes are refused with the target's reason", async () => {
  const s = await startGdb();
  assert.equal(
    await s.conn.ask("M1000,1:00"),
    "E.Writing memory is not available: the fake is read-only",
  );
  assert.equal(
    await s.conn.ask("X1000,1:\x00"),
    "E.Writing memory is not available: the fake is read-only",
  );
  assert.equal(
    await s.conn.ask("P0=00"),
    "E.Writing registers is not available: the fake is read-only",
  );
  assert.equal(
    await s.conn.ask("G00"),
    "E.Writing registers is not available: the fake is read-only",
  );
  assert.deepEqual(s.target.calls, ["stop"]);
  await finish(s);
});

/** The O packet and the stop reply of a refusal, as the session sends them. */
async function refusal(s: { conn: MockConnection }, packet: string, thread = 1) {
  const console = await s.conn.ask(packet);
  assert.ok(console.startsWith("O"), console);
  const text = hexToText(console.slice(1)) ?? "";
  assert.ok(text.endsWith("\n"));
  const message = text.slice(0, -1);
  assert.equal(
    await s.conn.reply(),
    `T00thread:${thread};reason:exception;description:${textToHex(message)};`,
  );
  return message;
}

Deno.test("a refused step is a no-signal stop with the reason, and ? says the same", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("vCont?"), "vCont;c;C;t");
  const reason = "Single-step is not available: the fake cannot step";
  assert.equal(await refusal(s, "vCont;s:2;c", 2), reason);
  assert.equal(
    await s.conn.ask("?"),
    `T00thread:2;reason:exception;description:${textToHex(reason)};`,
  );
  // The stop named thread 2: gdb is on it now, and a plain `s` means it.
  assert.equal(await refusal(s, "s", 2), reason);
  assert.match(await refusal(s, "vCont;C1e", 2), /cannot deliver signal 30 to a VM/);
  assert.match(await refusal(s, "c1000", 2), /Cannot resume at 0x1000: Writing registers/);
  assert.deepEqual(s.target.calls, ["stop"]);
  await finish(s);
});

Deno.test("breakpoints the target cannot honour: accepted, then the continue is refused", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("Z0,1000,1"), "OK");
  assert.equal(await s.conn.ask("Z2,2000,4"), "OK");
  const message = await refusal(s, "vCont;c");
  assert.match(
    message,
    /^Cannot continue: the VM would run past the breakpoint at 0x1000 and the write watchpoint on 4 bytes at 0x2000, which cannot be set\. Breakpoints are not available: the fake has no breakpoint exits/,
  );
  assert.match(
    message,
    /The VM stays stopped: delete or disable them to continue \(or 'monitor breakpoints ignore' to run past them\)\.$/,
  );
  assert.equal(await s.conn.ask("z0,1000,1"), "OK");
  assert.equal(await s.conn.ask("z2,2000,4"), "OK");
  s.conn.send("c");
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(s.target.running);
  s.conn.push("\x03");
  assert.equal(await s.conn.reply(), "T02thread:1;");
  assert.deepEqual(s.target.calls, ["stop", "resume", "waitForStop", "stop"]);
  await finish(s);
});

Deno.test("protocol misuse while running gets an error and changes nothing", async () => {
  const s = await startGdb();
  s.conn.send("vCont;c");
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(
    await s.conn.ask("vCont;s:1"),
    "E01",
  );
  assert.equal(await s.conn.ask("c"), "E01");
  assert.equal(await s.conn.ask("?"), "E01");
  assert.ok(s.target.running);
  s.conn.push("\x03");
  assert.equal(await s.conn.reply(), "T02thread:1;");
  assert.equal(await s.conn.ask("?"), "T02thread:1;");
  await finish(s);
});

Deno.test("a Ctrl-C that crosses a refusal stops the next resume; any other packet forgets it", async () => {
  const s = await startGdb();
  await refusal(s, "vCont;s:1");
  s.conn.push("\x03");
  assert.equal(await s.conn.ask("vCont;s:1"), "T02thread:1;");
  s.conn.push("\x03");
  assert.equal(await s.conn.ask("qC"), "QC1");
  await refusal(s, "vCont;s:1");
  assert.deepEqual(s.target.calls, ["stop"]);
  await finish(s);
});

Deno.test("per-thread continue runs only that thread; the Ctrl-C stop names it", async () => {
  const s = await startGdb({ threads: 3 });
  s.conn.send("vCont;c:2");
  await new Promise((r) => setTimeout(r, 20));
  s.conn.push("\x03");
  assert.equal(await s.conn.reply(), "T02thread:2;");
  assert.equal(await s.conn.ask("vCont;c:9"), "E03");
  assert.equal(await s.conn.ask("vCont;s:9"), "E03");
  assert.deepEqual(s.target.calls, ["stop", "resume 2", "waitForStop", "stop"]);
  await finish(s);
});

Deno.test("a target that can step: the step runs and reports SIGTRAP on that thread", async () => {
  const s = await startGdb({ canStep: true, threads: 3 });
  assert.equal(await s.conn.ask("vCont;s:3;c"), "T05thread:3;");
  assert.deepEqual(s.target.calls, ["stop", "step 3"]);
  await finish(s);
});

Deno.test("k detaches and says so in a reply lldb prints whole", async () => {
  const s = await startLldb();
  assert.equal(
    await s.conn.ask("k"),
    "E.bhyve-gdbstub never kills a VM: it detached instead, and the VM runs on as it did before the attach",
  );
  await s.done;
  assert.deepEqual(s.target.calls, ["stop", "detach"]);
});

Deno.test("a target that can step advertises s and S in vCont?", async () => {
  const s = await startGdb({ canStep: true });
  assert.equal(await s.conn.ask("vCont?"), "vCont;c;C;s;S;t");
  await finish(s);
});

Deno.test("without gdb's vContSupported+, errors stay Enn (gdb 13 reads m errors as hex)", async () => {
  const s = start();
  await s.conn.ask("qSupported");
  assert.equal(await s.conn.ask("P0=00"), "E01");
  await finish(s);
});

Deno.test("continue, then Ctrl-C stops the target and reports SIGINT", async () => {
  const s = await startGdb();
  s.conn.send("vCont;c");
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(s.conn.idle);
  assert.ok(s.target.running);
  s.conn.push("\x03");
  assert.equal(await s.conn.reply(), "T02thread:1;");
  assert.ok(!s.target.running);
  assert.deepEqual(s.target.calls, ["stop", "resume", "waitForStop", "stop"]);
  assert.equal(await s.conn.ask("?"), "T02thread:1;");
  await finish(s);
});

Deno.test("c in ack mode is acked at once; the stop reply comes when the target stops", async () => {
  const s = start();
  s.conn.send("c");
  assert.equal((await s.conn.nextEvent()).kind, "ack");
  s.target.stopOnOwn({ kind: "stopped", thread: 2, signal: 5 });
  assert.equal(await s.conn.reply(), "T05thread:2;");
  assert.equal(await s.conn.ask("qC"), "QC2");
  await finish(s);
});

Deno.test("vCont;t while running stops with signal 0; while stopped it answers at once", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("vCont;t"), "T00thread:1;");
  s.conn.send("c");
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(await s.conn.ask("vCont;t"), "T00thread:1;");
  await finish(s);
});

Deno.test("the target vanishing while running ends the session with W00 and a message", async () => {
  const s = await startGdb();
  s.conn.send("c");
  await new Promise((r) => setTimeout(r, 10));
  s.target.vanish("the VM was destroyed");
  assert.equal(await s.conn.reply(), "O" + textToHex("the VM was destroyed\n"));
  assert.equal(await s.conn.reply(), "W00");
  await s.done;
  assert.ok(s.conn.closed);
  assert.equal(s.target.calls.at(-1), "detach");
});

Deno.test("TargetGoneError: E05 where the reply is data, the words with the exit reply", async () => {
  const s = await startGdb();
  s.target.vanish();
  // gdb 13 would parse the text of an E.text reply to m as hex ("Invalid hex digit 46").
  assert.equal(await s.conn.ask("m1000,1"), "E05");
  assert.equal(await s.conn.ask("g"), "E05");
  // A packet answered by a stop reply gets the reason as console output, then the exit.
  assert.equal(await s.conn.ask("vCont;c"), "O" + textToHex("the VM is gone\n"));
  assert.equal(await s.conn.reply(), "W00");
  await s.done;
  assert.ok(s.conn.closed);
});

Deno.test("an unexpected failure is reported and the session goes on", async () => {
  const s = await startGdb();
  s.target.readMemory = () => {
    throw new RangeError("boom");
  };
  assert.equal(await s.conn.ask("m1000,1"), "E05");
  assert.equal(await s.conn.ask("qAttached"), "1");
  await finish(s);
});

Deno.test("D detaches, replies OK and closes; k detaches, says so and closes", async () => {
  const d = await startGdb();
  assert.equal(await d.conn.ask("D"), "OK");
  await d.done;
  assert.ok(d.conn.closed);
  assert.deepEqual(d.target.calls, ["stop", "detach"]);
  const k = await startGdb();
  k.conn.send("k");
  await k.done;
  assert.ok(k.conn.closed);
  assert.deepEqual(k.target.calls, ["stop", "detach"]);
});

Deno.test("a dropped connection detaches, even while the target runs", async () => {
  const s = await startGdb();
  s.conn.send("c");
  await new Promise((r) => setTimeout(r, 10));
  s.conn.end();
  await s.done;
  assert.deepEqual(s.target.calls, ["stop", "resume", "waitForStop", "detach"]);
});

Deno.test("qRcmd: output as O packets then OK; errors; no monitor means empty", async () => {
  const s = await startGdb();
  assert.equal(
    await s.conn.ask(`qRcmd,${textToHex("info")}`),
    "O" + textToHex("fake monitor: info (vCPU 1)\n"),
  );
  assert.equal(await s.conn.reply(), "OK");
  assert.equal(await s.conn.ask(`qRcmd,${textToHex("fail")}`), "E16");
  assert.equal(await s.conn.ask("qRcmd,zz"), "E16");
  await finish(s);
  const none = await startGdb({ monitor: false });
  assert.equal(await none.conn.ask(`qRcmd,${textToHex("info")}`), "");
  await finish(none);
});

Deno.test("an oversize packet gets an error naming the limit", async () => {
  const s = await startGdb({ packetSize: 0x40 });
  assert.equal(
    await s.conn.ask("X1000,80:" + "a".repeat(0x80)),
    "E07",
  );
  assert.equal(await s.conn.ask("qAttached"), "1");
  await finish(s);
});

Deno.test("attach failure: a vanished target is reported as an exit; other errors detach", async () => {
  const gone = new FakeTarget();
  gone.stop = () => Promise.reject(new TargetGoneError("no such VM"));
  const conn = new MockConnection();
  const done = new Session(gone, conn).run();
  assert.equal(await conn.ask("?"), "O" + textToHex("no such VM\n"));
  assert.equal(await conn.reply(), "W00");
  await done;
  const broken = new FakeTarget();
  broken.stop = () => Promise.reject(new TargetError("cannot suspend", 16));
  await new Session(broken, new MockConnection()).run();
  assert.deepEqual(broken.calls, ["detach"]);
});

Deno.test("writes reach a target that writes: M, X, P, and G only where bytes changed", async () => {
  const s = await startGdb({ allowWrite: true });
  assert.equal(await s.conn.ask("M1000,2:abcd"), "OK");
  assert.deepEqual([...s.target.memory.subarray(0, 2)], [0xab, 0xcd]);
  assert.equal(await s.conn.ask("X1002,2:}]}\x03"), "OK"); // escaped } and #
  assert.deepEqual([...s.target.memory.subarray(2, 4)], [0x7d, 0x23]);
  assert.equal(await s.conn.ask("X1000,0:"), "OK");
  assert.equal(await s.conn.ask("M1000,2:ab"), "E16"); // length mismatch: malformed
  // gdb 13 prints no text for an M/X error ("Cannot access memory"): the code only.
  assert.equal(await s.conn.ask("M3fff,2:0102"), "E0e");
  assert.equal(await s.conn.ask("P10=1122334455667788"), "OK");
  assert.equal(await s.conn.ask("p10"), "1122334455667788");
  const g = await s.conn.ask("g");
  const rax = "2a00000000000000";
  assert.equal(await s.conn.ask(`G${rax}${g.slice(16)}`), "OK");
  assert.equal((await s.conn.ask("g")).slice(0, 16), rax);
  assert.deepEqual(s.target.calls.filter((c) => c.startsWith("write")), [
    "writeMemory 1 1000 2",
    "writeMemory 1 1002 2",
    "writeMemory 1 3fff 2",
    "writeRegister 1 16",
    "writeRegister 1 0",
  ]);
  await finish(s);
});

Deno.test("monitor breakpoints ignore: a continue runs past unarmed breakpoints, saying so", async () => {
  const s = await startGdb();
  assert.equal(await s.conn.ask("Z0,1000,1"), "OK");
  await refusal(s, "c");
  const ask = async (command: string) => {
    const first = await s.conn.ask(`qRcmd,${textToHex(command)}`);
    assert.equal(await s.conn.reply(), "OK");
    return hexToText(first.slice(1)) ?? "";
  };
  assert.equal(
    await ask("breakpoints ignore"),
    "Breakpoints the VM cannot honour (set now: the breakpoint at 0x1000): a continue runs past them.\n",
  );
  assert.equal(await ask("breakpoints bogus"), "Usage: monitor breakpoints [ignore|refuse]\n");
  const note = await s.conn.ask("c");
  assert.equal(
    hexToText(note.slice(1)),
    "Running past the breakpoint at 0x1000 (monitor breakpoints ignore).\n",
  );
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(s.target.running);
  s.conn.push("\x03");
  assert.equal(await s.conn.reply(), "T02thread:1;");
  assert.match(await ask("breakpoints refuse"), /a continue is refused while any is set/);
  await refusal(s, "c");
  await finish(s);
});

Deno.test("a target with breakpoints gets Z/z; one it refuses is unarmed, with its reason", async () => {
  const s = await startGdb({ breakpoints: true });
  assert.equal(await s.conn.ask("Z0,1000,1"), "OK");
  assert.equal(await s.conn.ask("Z4,2000,4"), "OK");
  const message = await refusal(s, "c");
  assert.match(
    message,
    /^Cannot continue: the VM would run past the access watchpoint on 4 bytes at 0x2000, which cannot be set\. Access watchpoints are not available: the fake has none\. The VM stays stopped/,
  );
  assert.equal(await s.conn.ask("z4,2000,4"), "OK");
  assert.equal(await s.conn.ask("z0,1000,1"), "OK");
  assert.deepEqual(s.target.calls, ["stop", "insert sw 1000", "remove sw 1000"]);
  await finish(s);
});

Deno.test("a step the target refuses is reported in words as a no-signal stop", async () => {
  const s = await startGdb({ canStep: true });
  const message = "Cannot emulate this instruction: the fake says no";
  s.target.step = () =>
    Promise.resolve({
      kind: "stopped",
      thread: 1,
      signal: 5, // the session derives the signal from the reason
      reason: { type: "refused", message },
    });
  assert.equal(await refusal(s, "vCont;s:1"), message);
  assert.equal(
    await s.conn.ask("?"),
    `T00thread:1;reason:exception;description:${textToHex(message)};`,
  );
  await finish(s);
});

Deno.test("the attach reports SIGTRAP whatever the target's stop says (w mode held it before)", async () => {
  const target = new FakeTarget();
  target.stop = () =>
    Promise.resolve({ kind: "stopped", thread: 1, signal: 2, reason: { type: "interrupt" } });
  const conn = new MockConnection();
  const done = new Session(target, conn).run();
  assert.equal(await conn.ask("?"), "T05thread:1;");
  await finish({ conn, done });
});
