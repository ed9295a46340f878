import assert from "node:assert/strict";
import { PacketDecoder, PacketWriter } from "../../rsp/framing.ts";
import { latin1, toHex } from "../../rsp/hex.ts";

function decode(frame: Uint8Array): string {
  const [event] = new PacketDecoder(1 << 20).feed(frame);
  assert.ok(event?.kind === "packet" && event.checksumOk);
  return event.kind === "packet" ? latin1(event.body) : "";
}

Deno.test("writer: run-length hex squeezes runs and decodes to the plain hex", () => {
  const zeros = new Uint8Array(64);
  const frame = new PacketWriter(8).begin().hexRunLength(zeros).finish(false);
  assert.equal(latin1(frame).split("#")[0], "$0*~0*:"); // 98 zeros, then 30
  assert.equal(decode(frame), "0".repeat(128));
});

Deno.test("writer: run-length counts never use # or $", () => {
  for (let n = 1; n <= 200; n++) {
    const bytes = new Uint8Array(n).fill(0x11);
    const frame = new PacketWriter(8).begin().text("m").hexRunLength(bytes).finish(false);
    const body = latin1(frame).slice(1, -3);
    assert.doesNotMatch(body, /\*[#$]/);
    assert.equal(decode(frame), "m" + "1".repeat(2 * n));
  }
});

Deno.test("writer: run-length hex and block-copied binary round-trip any content", () => {
  const kinds = [
    (i: number) => (i * 7919) & 0xff,
    () => 0,
    (i: number) => (i % 300 < 3 ? 0x23 : i % 1500 < 700 ? 0 : 0x7d),
  ];
  for (const kind of kinds) {
    for (const n of [0, 1, 4, 1023, 1024, 1025, 5000]) {
      const data = Uint8Array.from({ length: n }, (_, i) => kind(i));
      const hex = new PacketWriter(8).begin().hexRunLength(data).finish(false);
      assert.equal(decode(hex), toHex(data));
      const binary = new PacketWriter(8).begin().binary(data).finish(false);
      assert.deepEqual(Uint8Array.from(decode(binary), (c) => c.charCodeAt(0)), data);
    }
  }
});
