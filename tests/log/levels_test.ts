/** Levels: nothing is logged before `configure`; below the lowest level nothing reaches the sink. */
import assert from "node:assert/strict";
import { configure, getLogger, type LogRecord, reset } from "../../log/mod.ts";

Deno.test("configure: the lowest level, the sink, and reset", () => {
  const log = getLogger(["bhyve-gdbstub", "test"]);
  const seen: LogRecord[] = [];
  try {
    log.error("before configure");
    assert.equal(log.isEnabledFor("fatal"), false);
    configure({ lowestLevel: "info", sink: (record) => seen.push(record) });
    log.debug("hidden {x}", { x: 1 });
    log.info("shown {x}", { x: 2 });
    log.warn("warned");
    assert.equal(log.isEnabledFor("debug"), false);
    assert.equal(log.isEnabledFor("info"), true);
    assert.deepEqual(seen.map((r) => [r.level, r.template]), [
      ["info", "shown {x}"],
      ["warning", "warned"],
    ]);
    assert.deepEqual(seen[0]!.category, ["bhyve-gdbstub", "test"]);
    assert.deepEqual(seen[0]!.properties, { x: 2 });
    reset();
    log.fatal("after reset");
    assert.equal(seen.length, 2);
  } finally {
    reset();
  }
});
