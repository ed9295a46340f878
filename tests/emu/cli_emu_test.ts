/** The emulation options: --unicorn / BHYVE_GDBSTUB_UNICORN and --emu-budget. */
import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../../cli.ts";

const base = ["--vm", "v", "-G", "1234"];
const env = (vars: Record<string, string>) => ({ get: (name: string) => vars[name] });

Deno.test("--unicorn PATH, else BHYVE_GDBSTUB_UNICORN", () => {
  const explicit = parseCommandLine(
    [...base, "--unicorn", "/x/libunicorn.so.2"],
    env({
      BHYVE_GDBSTUB_UNICORN: "/y/libunicorn.so.2",
    }),
  );
  assert.equal(explicit.kind === "run" && explicit.options.unicorn, "/x/libunicorn.so.2");
  const fromEnv = parseCommandLine(base, env({ BHYVE_GDBSTUB_UNICORN: "/y/libunicorn.so.2" }));
  assert.equal(fromEnv.kind === "run" && fromEnv.options.unicorn, "/y/libunicorn.so.2");
  const none = parseCommandLine(base);
  assert.equal(none.kind === "run" && none.options.unicorn, undefined);
});

Deno.test("--emu-budget N[:MS], positive integers, else a usage error", () => {
  const both = parseCommandLine([...base, "--emu-budget", "5000:250"]);
  assert.deepEqual(both.kind === "run" && both.options.emuBudget, {
    instructions: 5000,
    milliseconds: 250,
  });
  const count = parseCommandLine([...base, "--emu-budget", "7"]);
  assert.deepEqual(count.kind === "run" && count.options.emuBudget, { instructions: 7 });
  for (const bad of ["0", "-3", "1:0", "x", "1:2:3"]) {
    assert.throws(() => parseCommandLine([...base, "--emu-budget", bad]), UsageError, bad);
  }
});
