import assert from "node:assert/strict";
import {
  encodeHexInto,
  fromHex,
  hexToText,
  latin1,
  parseHex64,
  parseHexInt,
  textToHex,
  toHex,
} from "../../rsp/hex.ts";

Deno.test("hex encodes bytes and returns the checksum contribution", () => {
  const out = new Uint8Array(6);
  const sum = encodeHexInto(new Uint8Array([0x00, 0x7f, 0xff]), out, 0);
  assert.equal(latin1(out), "007fff");
  assert.equal(sum, [..."007fff"].reduce((s, c) => s + c.charCodeAt(0), 0));
  assert.equal(toHex(new Uint8Array([1, 0xab])), "01ab");
});

Deno.test("hex decoding rejects odd lengths and non-hex", () => {
  assert.deepEqual(fromHex("01aB"), new Uint8Array([1, 0xab]));
  assert.equal(fromHex("0"), undefined);
  assert.equal(fromHex("zz"), undefined);
  assert.equal(fromHex("\u0130\u0130"), undefined);
  assert.equal(hexToText(textToHex("info vcpu")), "info vcpu");
});

Deno.test("64-bit hex numbers parse exactly; anything wider is malformed", () => {
  assert.equal(parseHex64("ffffffffffffffff"), 0xffffffffffffffffn);
  assert.equal(parseHex64("10000000000000000"), undefined);
  assert.equal(parseHex64(""), undefined);
  assert.equal(parseHex64("-1"), undefined);
  assert.equal(parseHexInt("1f"), 31);
  assert.equal(parseHexInt("x"), undefined);
});

Deno.test("latin1 keeps every byte value, even 0x80-0x9f", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const big = new Uint8Array(0x10001).fill(0x90);
  assert.equal(latin1(all).length, 256);
  assert.equal(latin1(all).charCodeAt(0x85), 0x85);
  assert.equal(latin1(big).length, 0x10001);
});
