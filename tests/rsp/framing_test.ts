import assert from "node:assert/strict";
import { type FrameEvent, framePacket, PacketDecoder, PacketWriter } from "../../rsp/framing.ts";
import { latin1 } from "../../rsp/hex.ts";

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b: Uint8Array) => latin1(b);

function packets(events: FrameEvent[]): string[] {
  return events.map((e) => e.kind === "packet" ? text(e.body) : e.kind);
}

Deno.test("framePacket computes the checksum over the body bytes", () => {
  assert.equal(text(framePacket("OK")), "$OK#9a");
  assert.equal(text(framePacket("")), "$#00");
  assert.equal(text(framePacket("g")), "$g#67");
});

Deno.test("decoder: packets, acks, nacks and Ctrl-C between packets", () => {
  const decoder = new PacketDecoder(4096);
  const events = decoder.feed(bytes("+$g#67-\x03$?#3f"));
  assert.deepEqual(packets(events), ["ack", "g", "nack", "interrupt", "?"]);
  assert.ok(events.every((e) => e.kind !== "packet" || e.checksumOk));
});

Deno.test("decoder: any split of the stream gives the same events", () => {
  const stream = bytes("+$qSupported:a+;b+#00$m1000,4#8e\x03");
  const whole = packets(new PacketDecoder(4096).feed(stream));
  for (let cut = 1; cut < stream.length; cut++) {
    const decoder = new PacketDecoder(4096);
    const events = [
      ...decoder.feed(stream.subarray(0, cut)),
      ...decoder.feed(stream.subarray(cut)),
    ];
    assert.deepEqual(packets(events), whole, `cut at ${cut}`);
  }
  const byteByByte = new PacketDecoder(4096);
  assert.deepEqual(
    packets([...stream].flatMap((b) => byteByByte.feed(new Uint8Array([b])))),
    whole,
  );
});

Deno.test("decoder: a bad checksum is reported, not thrown", () => {
  const [event] = new PacketDecoder(64).feed(bytes("$g#00"));
  assert.equal(event?.kind, "packet");
  assert.equal(event?.kind === "packet" && event.checksumOk, false);
  const [bad] = new PacketDecoder(64).feed(bytes("$g#zz"));
  assert.equal(bad?.kind === "packet" && bad.checksumOk, false);
});

Deno.test("decoder: } escapes and * run-length encoding are undone", () => {
  // "X0,3:" then 0x23 0x24 0x7d escaped; checksum covers the raw bytes.
  const raw = "X0,3:}\x03}\x04}]";
  const framed = `$${raw}#${(sum(raw) & 0xff).toString(16).padStart(2, "0")}`;
  const [event] = new PacketDecoder(64).feed(bytes(framed));
  assert.equal(event?.kind === "packet" && text(event.body), "X0,3:#$}");
  // "0* " is '0' followed by 32-29 = 3 more '0's.
  const rle = `$0* #${(sum("0* ") & 0xff).toString(16)}`;
  const [expanded] = new PacketDecoder(64).feed(bytes(rle));
  assert.equal(expanded?.kind === "packet" && text(expanded.body), "0000");
});

Deno.test("decoder: Ctrl-C inside a packet is data (binary X payloads carry 0x03)", () => {
  const raw = "X0,1:\x03";
  const events = new PacketDecoder(64).feed(bytes(`$${raw}#${hex2(sum(raw))}\x03`));
  assert.deepEqual(packets(events), [raw, "interrupt"]);
});

Deno.test("decoder: garbage between packets is skipped; a new $ restarts a packet", () => {
  const events = new PacketDecoder(64).feed(bytes("junk\n$abc$g#67"));
  assert.deepEqual(packets(events), ["g"]);
});

Deno.test("decoder: an oversize packet is dropped without buffering it", () => {
  const decoder = new PacketDecoder(8);
  const long = "m".repeat(100);
  const events = decoder.feed(bytes(`$${long}#${hex2(sum(long))}$g#67`));
  assert.equal(events[0]?.kind, "oversize");
  assert.equal(events[0]?.kind === "oversize" && events[0].length, 100);
  assert.deepEqual(packets(events.slice(1)), ["g"]);
  // Run-length expansion past the limit is caught too.
  const bomb = new PacketDecoder(8).feed(bytes(`$0*~*~#${hex2(sum("0*~*~"))}`));
  assert.equal(bomb[0]?.kind, "oversize");
});

Deno.test("writer: hex, text and escaped binary with one checksum", () => {
  const writer = new PacketWriter(4);
  writer.begin().text("b").binary(bytes("a#$}*z"));
  assert.equal(
    text(writer.finish(false)),
    `$b` + "a}\x03}\x04}]}\nz" + `#${hex2(sum("ba}\x03}\x04}]}\nz"))}`,
  );
  writer.begin().hex(new Uint8Array([0, 0xab, 0xff]));
  assert.equal(text(writer.finish(true)), "+$00abff#" + hex2(sum("00abff")));
});

Deno.test("writer: what it escapes, the decoder restores", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const framed = new PacketWriter(16).begin().binary(all).finish(false);
  const [event] = new PacketDecoder(1024).feed(framed);
  assert.ok(event?.kind === "packet" && event.checksumOk);
  assert.deepEqual(event.kind === "packet" && event.body, all);
});

function sum(s: string): number {
  let total = 0;
  for (const c of s) total += c.charCodeAt(0);
  return total;
}

function hex2(n: number): string {
  return (n & 0xff).toString(16).padStart(2, "0");
}
