import assert from "node:assert/strict";
import { registersByNumber, targetXml } from "../../rsp/target_xml.ts";
import { FakeTarget } from "./fake_target.ts";

Deno.test("target.xml has the architecture, features, types and every register", () => {
  const description = new FakeTarget().description();
  const xml = targetXml(description);
  assert.ok(xml.startsWith('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">'));
  assert.ok(xml.includes("<architecture>i386:x86-64</architecture>"));
  assert.ok(xml.includes('<feature name="org.gnu.gdb.i386.core">'));
  assert.ok(xml.includes('<flags id="i386_eflags" size="4">'));
  assert.ok(
    xml.includes('<reg name="rip" bitsize="64" regnum="16" type="code_ptr" group="general"/>'),
  );
  const all = registersByNumber(description);
  assert.equal((xml.match(/<reg /g) ?? []).length, all.length);
  assert.ok(xml.trimEnd().endsWith("</target>"));
});

Deno.test("target.xml escapes attribute values", () => {
  const xml = targetXml({
    architecture: "a<b",
    features: [{
      name: 'x"y',
      registers: [{ name: "r&", bitsize: 8, regnum: 0, type: "int8", inG: true }],
    }],
  });
  assert.ok(xml.includes("<architecture>a&lt;b</architecture>"));
  assert.ok(xml.includes('<feature name="x&quot;y">'));
  assert.ok(xml.includes('<reg name="r&amp;" bitsize="8" regnum="0" type="int8"/>'));
});

Deno.test("registers come out in regnum order whatever the feature order", () => {
  const regs = registersByNumber({
    architecture: "x",
    features: [
      { name: "b", registers: [{ name: "two", bitsize: 8, regnum: 2, type: "int8", inG: true }] },
      { name: "a", registers: [{ name: "one", bitsize: 8, regnum: 1, type: "int8", inG: true }] },
    ],
  });
  assert.deepEqual(regs.map((r) => r.name), ["one", "two"]);
});
