/** The log line: one line per record, escaped, and a template filled only from its own properties. */
import assert from "node:assert/strict";
import { escapeControls, formatRecord, type LogRecord, renderMessage } from "../../log/mod.ts";

const record = (template: string, properties: Record<string, unknown> = {}): LogRecord => ({
  category: ["bhyve-gdbstub", "rsp"],
  level: "info",
  template,
  properties,
  timestamp: Date.UTC(2026, 11, 1, 13, 0, 0),
});

Deno.test("escapeControls: newlines, escapes, C1 and bidi controls become visible text", () => {
  assert.equal(escapeControls("a\nb\r\tc"), "a\\nb\\r\\tc");
  assert.equal(escapeControls("\x1b[31mred"), "\\e[31mred");
  assert.equal(escapeControls("\x00\x07\x7f\x9b"), "\\x00\\x07\\x7f\\x9b");
  assert.equal(escapeControls("\u2028\u202e"), "\\u{2028}\\u{202e}");
  assert.equal(escapeControls("plain text, ünïcode, {braces}"), "plain text, ünïcode, {braces}");
});

Deno.test("formatRecord: one line, with timestamp, level and category", () => {
  assert.equal(
    formatRecord(record("{peer} attached", { peer: "127.0.0.1:5000" })),
    "2026-12-01 13:00:00.000Z [INF] bhyve-gdbstub·rsp: 127.0.0.1:5000 attached",
  );
});

Deno.test("renderMessage: only the record's own properties fill a placeholder, once", () => {
  assert.equal(
    renderMessage(record("{constructor} {toString} {missing}")),
    "{constructor} {toString} {missing}",
  );
  // An inserted value is not read again as a template.
  assert.equal(renderMessage(record("got {a}", { a: "{b}", b: "no" })), "got {b}");
  assert.equal(renderMessage(record("{e}", { e: new RangeError("bad") })), "RangeError: bad");
  assert.equal(renderMessage(record("{n} {list}", { n: 3, list: [1, 2] })), "3 [ 1, 2 ]");
});

Deno.test("formatRecord: client text in a property or in the template cannot forge a line", () => {
  const forged = "Z0,0,1;\n2026-12-01 13:00:00.000 +00:00 [FTL] bhyve-gdbstub: FORGED\x1b[2J";
  for (
    const line of [
      formatRecord(record("got {packet}", { packet: forged })),
      formatRecord(record(`got ${forged}`)),
    ]
  ) {
    assert.ok(![..."\n\r\x1b"].some((c) => line.includes(c)), line);
    assert.match(
      line,
      /got Z0,0,1;\\n2026-12-01 13:00:00\.000 \+00:00 \[FTL\] bhyve-gdbstub: FORGED\\e\[2J$/,
    );
  }
});
