/**
 * End-to-end: bytes a client sends cannot forge a line in the server's log, put a terminal
 * escape on its stderr, or be expanded as a logging template (issue 11, item 3).
 */
import assert from "node:assert/strict";
import { Stub } from "../helpers/stub.ts";
import { TestVm } from "../helpers/testvm.ts";

const FORGED = "\n2026-12-01 13:00:00.000 +00:00 [FTL] bhyve-gdbstub: FORGED\x1b[2J{constructor}";

/** A packet as a client would send it: `}` escaped (as `}]`), so the server sees `body`. */
function packet(body: string): Uint8Array {
  const wire = body.replaceAll("}", "}]");
  let sum = 0;
  for (const c of wire) sum = (sum + c.charCodeAt(0)) & 0xff;
  return new TextEncoder().encode(`$${wire}#${sum.toString(16).padStart(2, "0")}`);
}

for (const level of ["info", "debug"]) {
  Deno.test(`log at ${level}: a forged line, an ANSI escape and {constructor} stay one escaped line`, async () => {
    await using vm = await TestVm.start({ cpus: 1, mem: "64M" });
    await using stub = await Stub.start({ vm: vm.name, dir: vm.dir, args: ["--log-level", level] });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: stub.port });
    try {
      // A breakpoint is refused and logged with its packet at warning level (info shows it).
      await conn.write(packet(`Z0,0,1;${FORGED}`));
      assert.ok(await stub.waitForStderr(/FORGED/), stub.stderr);
      await conn.write(packet("D"));
      assert.ok(await stub.waitForStderr(/detached/), stub.stderr);
    } finally {
      conn.close();
    }
    await stub.stop();
    const lines = stub.stderr.split("\n");
    const forged = lines.filter((line) => line.includes("FORGED"));
    assert.ok(forged.length >= 1, stub.stderr);
    for (const line of forged) {
      // Each record that carries the text is one line that shows the newline and the escape.
      assert.match(line, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z \[(WRN|DBG)\] /, line);
      assert.match(
        line,
        /Z0,0,1;\\n2026-12-01 13:00:00\.000 \+00:00 \[FTL\] bhyve-gdbstub: FORGED/,
      );
      assert.match(line, /\{constructor\}/, "not expanded as a template");
    }
    assert.equal(
      lines.filter((line) => line.startsWith("2026-12-01 13:00:00.000 +00:00")).length,
      0,
    );
    assert.ok(!stub.stderr.includes("\x1b"), "no terminal escape reaches stderr");
    assert.doesNotMatch(stub.stderr, /Function|Object\]/);
    // One record for the refusal; at debug level also the packet trace (`<-`).
    assert.equal(forged.length, level === "debug" ? 2 : 1, forged.join("\n"));
  });
}
