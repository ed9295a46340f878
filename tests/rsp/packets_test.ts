import assert from "node:assert/strict";
import { describeBreakpoint, parseBreakpoint } from "../../rsp/packets/breakpoint.ts";
import { formatError } from "../../rsp/packets/error.ts";
import { clampRead, parseMemoryRead, parseMemoryWrite } from "../../rsp/packets/memory.ts";
import { parseReadAll, parseReadOne } from "../../rsp/packets/registers.ts";
import { formatVContActions, parseResume, parseVCont } from "../../rsp/packets/resume.ts";
import { formatStopReply, signalOf } from "../../rsp/packets/stop_reply.ts";
import { formatSupported, parseSupported } from "../../rsp/packets/supported.ts";
import { parseThreadId, splitThreadSuffix } from "../../rsp/packets/thread_id.ts";
import { parseXferRead, xferSlice } from "../../rsp/packets/xfer.ts";

Deno.test("thread ids: hex, 0, -1 and the multiprocess form", () => {
  assert.equal(parseThreadId("1f"), 31);
  assert.equal(parseThreadId("0"), 0);
  assert.equal(parseThreadId("-1"), -1);
  assert.equal(parseThreadId("p1.2"), 2);
  assert.equal(parseThreadId("p1"), -1);
  assert.equal(parseThreadId("zz"), undefined);
  assert.deepEqual(splitThreadSuffix("3d;thread:0002;"), { rest: "3d", thread: 2 });
  assert.deepEqual(splitThreadSuffix("3d"), { rest: "3d", thread: undefined });
  assert.equal(splitThreadSuffix("3d;thread:xyz;"), undefined);
});

Deno.test("memory: m/x arguments, M/X headers, clamping and overflow", () => {
  assert.deepEqual(parseMemoryRead("1000,10"), { address: 0x1000n, length: 0x10n });
  assert.equal(parseMemoryRead("1000"), "malformed");
  assert.equal(parseMemoryRead("1000,"), "malformed");
  assert.equal(parseMemoryRead("1,10000000000000000"), "malformed");
  assert.deepEqual(parseMemoryWrite("10,2:abcd"), { address: 0x10n, length: 2n });
  assert.equal(parseMemoryWrite("10,2"), "malformed");
  assert.equal(clampRead({ address: 0n, length: 0xffffffffn }, 4096), 4096);
  assert.equal(clampRead({ address: 0n, length: 16n }, 4096), 16);
  assert.equal(clampRead({ address: 0xffffffffffffff00n, length: 0x100n }, 4096), 0x100);
  assert.equal(clampRead({ address: 0xffffffffffffff00n, length: 0x101n }, 4096), "overflow");
});

Deno.test("registers: g and p with and without lldb's thread suffix", () => {
  assert.deepEqual(parseReadAll(""), { thread: undefined });
  assert.deepEqual(parseReadAll(";thread:2;"), { thread: 2 });
  assert.equal(parseReadAll("x"), "malformed");
  assert.deepEqual(parseReadOne("10"), { regnum: 16, thread: undefined });
  assert.deepEqual(parseReadOne("3d;thread:0001;"), { regnum: 61, thread: 1 });
  assert.equal(parseReadOne(""), "malformed");
});

Deno.test("breakpoints: Z/z type,addr,kind", () => {
  assert.deepEqual(parseBreakpoint("Z0,1000,1"), {
    insert: true,
    type: 0,
    address: 0x1000n,
    kind: 1,
    breakpoint: { kind: "sw", address: 0x1000n, length: 1 },
  });
  assert.deepEqual(parseBreakpoint("z2,ffff800000001000,8;X1,0"), {
    insert: false,
    type: 2,
    address: 0xffff800000001000n,
    kind: 8,
    breakpoint: { kind: "write", address: 0xffff800000001000n, length: 8 },
  });
  assert.equal(
    describeBreakpoint({ kind: "access", address: 0x10n, length: 4 }),
    "the access watchpoint on 4 bytes at 0x10",
  );
  assert.equal(parseBreakpoint("Z9,1,1"), "malformed");
  assert.equal(parseBreakpoint("Z0,1"), "malformed");
});

Deno.test("resume: c/C/s/S and vCont reduce to continue, step or stop", () => {
  assert.deepEqual(parseResume("c"), { kind: "continue" });
  assert.deepEqual(parseResume("c1000"), { kind: "continue", address: 0x1000n });
  assert.deepEqual(parseResume("C05"), { kind: "continue", signal: 5 });
  assert.deepEqual(parseResume("C00"), { kind: "continue" });
  assert.deepEqual(parseResume("S05;10"), { kind: "step", signal: 5, address: 0x10n });
  assert.deepEqual(parseResume("s"), { kind: "step" });
  assert.equal(parseResume("Cxx"), "malformed");
  assert.deepEqual(parseVCont(";c"), { kind: "continue" });
  assert.deepEqual(parseVCont(";s:1;c"), { kind: "step", thread: 1 });
  assert.deepEqual(parseVCont(";s"), { kind: "step" });
  assert.deepEqual(parseVCont(";c:2"), { kind: "continue", threads: [2] });
  assert.deepEqual(parseVCont(";c:2;c:3;t"), { kind: "continue", threads: [2, 3] });
  assert.deepEqual(parseVCont(";c:2;c"), { kind: "continue" });
  assert.deepEqual(parseVCont(";C02:p1.-1"), { kind: "continue", signal: 2 });
  assert.deepEqual(parseVCont(";t"), { kind: "stop" });
  assert.equal(parseVCont(";cc"), "malformed");
  assert.equal(parseVCont(";q"), "malformed");
  assert.equal(parseVCont("c"), "malformed");
  assert.deepEqual(parseVCont(";rffffffff801000c2,ffffffff801000c9:1;c"), {
    kind: "step",
    thread: 1,
    range: { start: 0xffffffff801000c2n, end: 0xffffffff801000c9n },
  });
  assert.equal(parseVCont(";r10,8:1"), "malformed"); // end before start
  assert.equal(parseVCont(";r10:1"), "malformed");
  assert.equal(parseVCont(";r10,20,30"), "malformed");
  assert.equal(parseVCont(";rxx,20"), "malformed");
  assert.equal(formatVContActions(false), "vCont;c;C;t");
  assert.equal(formatVContActions(false, true), "vCont;c;C;t");
  assert.equal(formatVContActions(true), "vCont;c;C;s;S;t");
  assert.equal(formatVContActions(true, true), "vCont;c;C;s;S;t;r");
});

Deno.test("qXfer: parsing and m/l slices", () => {
  const read = parseXferRead("features:read:target.xml:10,20");
  assert.deepEqual(read, { object: "features", annex: "target.xml", offset: 16n, length: 32n });
  assert.equal(parseXferRead("features:write:target.xml:0,1"), "malformed");
  const data = new TextEncoder().encode("0123456789");
  const slice = (offset: bigint, length: bigint, max = 100) =>
    xferSlice(data, { object: "", annex: "", offset, length }, max);
  assert.deepEqual(slice(0n, 4n).prefix, "m");
  assert.deepEqual(new TextDecoder().decode(slice(8n, 4n).chunk), "89");
  assert.deepEqual(slice(8n, 4n).prefix, "l");
  assert.deepEqual(slice(0n, 100n, 3).prefix, "m");
  assert.deepEqual(slice(99n, 1n), { prefix: "l", chunk: new Uint8Array() });
});

Deno.test("qSupported: client features in, computed features out", () => {
  const features = parseSupported(":multiprocess+;swbreak-;xmlRegisters=i386;error-message+");
  assert.equal(features.get("multiprocess"), true);
  assert.equal(features.get("swbreak"), false);
  assert.equal(features.get("xmlRegisters"), "i386");
  const reply = formatSupported({ packetSize: 0x40000, errorMessages: false });
  assert.equal(
    reply,
    "PacketSize=40000;qXfer:features:read+;QStartNoAckMode+;vContSupported+;binary-upload+",
  );
  assert.ok(!/swbreak|hwbreak/.test(reply));
  assert.ok(formatSupported({ packetSize: 1, errorMessages: true }).endsWith(";error-message+"));
});

Deno.test("stop replies: T with thread, threads list, description; W for exits", () => {
  const stop = { kind: "stopped", thread: 0x1a, signal: 5 } as const;
  assert.equal(formatStopReply(stop), "T05thread:1a;");
  assert.equal(formatStopReply(stop, { threads: [1, 2, 0x1a] }), "T05thread:1a;threads:1,2,1a;");
  assert.equal(
    formatStopReply(stop, { name: "vCPU 0; a:b" }),
    "T05thread:1a;hexname:7643505520303b20613a62;",
  );
  assert.equal(
    formatStopReply({ ...stop, signal: 2 }, { description: "no" }),
    "T02thread:1a;reason:exception;description:6e6f;",
  );
  assert.equal(formatStopReply({ kind: "exited", status: 0, message: "gone" }), "W00");
  assert.equal(
    formatStopReply({ ...stop, signal: 0, reason: { type: "refused", message: "no" } }),
    "T00thread:1a;reason:exception;description:6e6f;",
  );
  assert.equal(formatStopReply({ ...stop, reason: { type: "swbreak" } }), "T05thread:1a;swbreak:;");
  assert.equal(
    formatStopReply({ ...stop, reason: { type: "awatch", address: 0x10n } }),
    "T05thread:1a;awatch:10;",
  );
  assert.equal(signalOf({ type: "interrupt" }), 2);
  assert.equal(signalOf({ type: "refused", message: "" }), 0);
  assert.equal(signalOf({ type: "hwbreak" }), 5);
});

Deno.test("errors in the three dialects", () => {
  assert.equal(formatError(14, "not mapped", "code"), "E0e");
  assert.equal(formatError(14, "not mapped", "dot-text"), "E.not mapped");
  assert.equal(formatError(1, "a#b$c}d*e\n", "dot-text"), "E.abcde ");
  assert.equal(formatError(1, "hi", "lldb-hex"), "E01;6869");
  assert.equal(formatError(0, "zero", "code"), "E01");
  assert.equal(formatError(999, "big", "code"), "Eff");
});
