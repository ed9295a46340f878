import assert from "node:assert/strict";
import { parseCommandLine, parseDuration, parseListenSpec, UsageError } from "../cli.ts";

const noEnv = { get: () => undefined };

Deno.test("-G accepts a port, an address, IPv6 in brackets and the w prefix", () => {
  assert.deepEqual(parseListenSpec("1234"), { wait: false, hostname: "127.0.0.1", port: 1234 });
  assert.deepEqual(parseListenSpec("w1234"), { wait: true, hostname: "127.0.0.1", port: 1234 });
  assert.deepEqual(parseListenSpec("0.0.0.0:99"), { wait: false, hostname: "0.0.0.0", port: 99 });
  assert.deepEqual(parseListenSpec("w[::1]:65535"), { wait: true, hostname: "::1", port: 65535 });
  assert.deepEqual(parseListenSpec("localhost:1"), { wait: false, hostname: "localhost", port: 1 });
});

Deno.test("a full command line parses into options", () => {
  const command = parseCommandLine(
    ["--vm", "guest0", "-G", "w4444", "--log-level", "debug", "--vmmapi", "/x/libvmmapi.so.6"],
    noEnv,
  );
  assert.deepEqual(command, {
    kind: "run",
    options: {
      vm: "guest0",
      listen: { wait: true, hostname: "127.0.0.1", port: 4444 },
      logLevel: "debug",
      vmmapi: "/x/libvmmapi.so.6",
    },
  });
});

Deno.test("BHYVE_GDBSTUB_VMMAPI names the library when --vmmapi does not", () => {
  const env = { get: (name: string) => name === "BHYVE_GDBSTUB_VMMAPI" ? "/e/lib.so" : undefined };
  const command = parseCommandLine(["--vm", "a", "-G", "1"], env);
  assert.equal(command.kind === "run" && command.options.vmmapi, "/e/lib.so");
  const explicit = parseCommandLine(["--vm", "a", "-G", "1", "--vmmapi", "/o.so"], env);
  assert.equal(explicit.kind === "run" && explicit.options.vmmapi, "/o.so");
});

Deno.test("--help and --version win over everything else", () => {
  assert.deepEqual(parseCommandLine(["--help"], noEnv), { kind: "help" });
  assert.deepEqual(parseCommandLine(["-V"], noEnv), { kind: "version" });
});

const bad: [string[], RegExp][] = [
  [["-G", "1234"], /--vm NAME is required/],
  [["--vm", "", "-G", "1234"], /--vm NAME is required/],
  [["--vm", "a/b", "-G", "1234"], /cannot contain '\/'/],
  [["--vm", "a"], /-G \[w\]\[ADDR:\]PORT is required/],
  [["--vm", "a", "-G", "0"], /port 0 is out of range/],
  [["--vm", "a", "-G", "65536"], /port 65536 is out of range/],
  [["--vm", "a", "-G", "w"], /a port is required after 'w'/],
  [["--vm", "a", "-G", "12ab"], /'12ab' is not a port number/],
  [["--vm", "a", "-G", "host:"], /'' is not a port number/],
  [["--vm", "a", "-G", ":80"], /empty address before ':'/],
  [["--vm", "a", "-G", "::1:80"], /IPv6 address in brackets/],
  [["--vm", "a", "-G", "[]:80"], /empty address in brackets/],
  [["--vm", "a", "-G", "1", "--log-level", "loud"], /--log-level loud: expected one of/],
  [["--vm", "a", "-G", "1", "--frobnicate"], /unknown option --frobnicate/],
  [["--vm"], /option --vm needs a value/],
  [["--vm", "a", "-G", "1", "extra"], /unexpected argument 'extra'/],
];

for (const [args, message] of bad) {
  Deno.test(`bad arguments: ${JSON.stringify(args)}`, () => {
    assert.throws(() => parseCommandLine(args, noEnv), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.message, message);
      assert.ok(!error.message.includes("\n"), "one line");
      return true;
    });
  });
}

Deno.test("the program prints one line and exits 2 for each bad argument", async () => {
  for (const [args, message] of bad) {
    const { code, stderr, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", new URL("../main.ts", import.meta.url).pathname, ...args],
      env: { BHYVE_GDBSTUB_VMMAPI: "" },
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 2, `${JSON.stringify(args)}: ${text}`);
    assert.match(text, message);
    assert.equal(text.trimEnd().split("\n").length, 1, `one line: ${text}`);
    assert.equal(stdout.length, 0);
  }
});

Deno.test("--help reads like a finished tool's", async () => {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("../main.ts", import.meta.url).pathname, "--help"],
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0);
  for (const part of ["Usage:", "Examples:", "--vm NAME", "-G", "single-step", "breakpoints"]) {
    assert.ok(text.includes(part), `help mentions ${part}`);
  }
});

Deno.test("release subcommand, --max-hold and --stall-timeout", () => {
  assert.deepEqual(parseCommandLine(["release", "--vm", "web"]), {
    kind: "release",
    options: { vm: "web" },
  });
  assert.throws(() => parseCommandLine(["release"]), /release: --vm NAME is required/);
  assert.throws(
    () => parseCommandLine(["release", "--vm", "a", "-G", "1"]),
    /release: unknown option/,
  );
  const run = parseCommandLine([
    "--vm",
    "a",
    "-G",
    "1",
    "--max-hold",
    "90s",
    "--stall-timeout",
    "500ms",
  ]);
  assert.equal(run.kind, "run");
  if (run.kind === "run") {
    assert.equal(run.options.maxHoldMs, 90_000);
    assert.equal(run.options.stallTimeoutMs, 500);
  }
  assert.equal(parseDuration("--max-hold", "2m"), 120_000);
  assert.equal(parseDuration("--max-hold", "1.5"), 1500);
  assert.throws(() => parseDuration("--max-hold", "soon"), /--max-hold soon: expected a duration/);
  assert.throws(() => parseDuration("--max-hold", "0s"), /expected a duration/);
});

Deno.test("--allow-write is off unless given", () => {
  const off = parseCommandLine(["--vm", "a", "-G", "1"], noEnv);
  assert.ok(off.kind === "run" && off.options.allowWrite === undefined);
  const on = parseCommandLine(["--vm", "a", "-G", "1", "--allow-write"], noEnv);
  assert.ok(on.kind === "run" && on.options.allowWrite === true);
});

Deno.test("the server, dump and release read --vmmapi, BHYVE_GDBSTUB_VMMAPI and --log-level alike", () => {
  const env = (value: string) => ({
    get: (name: string) => name === "BHYVE_GDBSTUB_VMMAPI" ? value : undefined,
  });
  const server = ["--vm", "a", "-G", "1"];
  const dump = ["dump", "--vm", "a", "-o", "f"];
  const release = ["release", "--vm", "a"];
  for (const args of [server, dump, release]) {
    const vmmapiOf = (command: ReturnType<typeof parseCommandLine>) =>
      "options" in command ? command.options.vmmapi : "no options";
    assert.equal(vmmapiOf(parseCommandLine(args, env("/e/lib.so"))), "/e/lib.so", args[0]);
    assert.equal(vmmapiOf(parseCommandLine([...args, "--vmmapi", "/o.so"], env("/e.so"))), "/o.so");
    assert.equal(vmmapiOf(parseCommandLine(args, env(""))), undefined, args[0]);
    if (args === release) continue; // release has no --log-level: it prints one line
    assert.throws(
      () => parseCommandLine([...args, "--log-level", "loud"]),
      /--log-level loud: expected one of trace, debug, info, warning, error/,
    );
    const quiet = parseCommandLine([...args, "--log-level", "error"]);
    assert.equal(
      "options" in quiet && "logLevel" in quiet.options && quiet.options.logLevel,
      "error",
    );
  }
});
