/**
 * The dump subcommand's command line, `--dump-dir`, and what the program says when the dump
 * cannot even start (run as a separate process, as a user runs it).
 */
import assert from "node:assert/strict";
import { parseCommandLine, UsageError } from "../cli.ts";
import { LIBVMMAPI } from "./helpers/testvm.ts";

const noEnv = { get: () => undefined };
const MAIN = new URL("../main.ts", import.meta.url).pathname;

Deno.test("dump: a full command line parses into its options", () => {
  assert.deepEqual(
    parseCommandLine(["dump", "--vm", "web", "-o", "/tmp/web.core", "--paging", "--live"], noEnv),
    {
      kind: "dump",
      options: {
        vm: "web",
        output: "/tmp/web.core",
        paging: true,
        live: true,
        force: false,
        logLevel: "info",
      },
    },
  );
  const forced = parseCommandLine(["dump", "--vm", "a", "--output", "f", "--force"], noEnv);
  assert.ok(forced.kind === "dump" && forced.options.force && !forced.options.paging);
});

Deno.test("--dump-dir is an option of the server", () => {
  const command = parseCommandLine(["--vm", "a", "-G", "1234", "--dump-dir", "/var/crash"], noEnv);
  assert.ok(command.kind === "run");
  assert.equal(command.options.dumpDir, "/var/crash");
});

const bad: [string[], RegExp][] = [
  [["dump"], /dump: --vm NAME is required/],
  [["dump", "--vm", "a"], /dump: -o FILE is required/],
  [["dump", "--vm", "a/b", "-o", "f"], /a VM name cannot contain '\/'/],
  [["dump", "--vm", "a", "-o", "f", "-G", "1"], /dump: unknown option -G/],
  [["dump", "--vm", "a", "-o", "f", "extra"], /dump: unexpected argument 'extra'/],
  [["--vm", "a", "-G", "1", "--dump-dir", ""], /--dump-dir needs a directory/],
];

for (const [args, message] of bad) {
  Deno.test(`dump: bad arguments ${JSON.stringify(args)}: one line, exit status 2`, async () => {
    assert.throws(() => parseCommandLine(args, noEnv), (e: unknown) => e instanceof UsageError);
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, ...args],
      env: { BHYVE_GDBSTUB_VMMAPI: "" },
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 2, text);
    assert.match(text, message);
    assert.equal(text.trimEnd().split("\n").length, 1, text);
  });
}

Deno.test("dump of a VM that does not exist, and a server whose --dump-dir is not a directory: one line, exit status 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dump-cli-" });
  try {
    const env = { TESTVM_DIR: dir, BHYVE_GDBSTUB_LOCK_DIR: dir };
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", MAIN, ...args, "--vmmapi", LIBVMMAPI["0200"]],
        env,
      }).output();
      return { code: out.code, text: new TextDecoder().decode(out.stderr) };
    };
    const dump = await run("dump", "--vm", "nosuchvm", "-o", `${dir}/x.core`);
    assert.equal(dump.code, 1, dump.text);
    assert.match(dump.text, /^bhyve-gdbstub: no VM named 'nosuchvm'/);
    assert.equal(dump.text.trimEnd().split("\n").length, 1, dump.text);
    assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.endsWith("core")), []);

    const serve = await run("--vm", "nosuchvm", "-G", "1", "--dump-dir", `${dir}/missing`);
    assert.equal(serve.code, 1, serve.text);
    assert.match(serve.text, /--dump-dir .*missing: No such file or directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
