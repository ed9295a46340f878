/**
 * Accept failures under a connection storm (EMFILE: the server's descriptors run out) are said
 * once per run of failures, on one line without a stack, and cost the server nothing once the
 * storm is over: the next debugger attaches.
 */
import assert from "node:assert/strict";
import { RawClient } from "./tcp_client.ts";

const SERVER = new URL("./storm_server.ts", import.meta.url).pathname;

Deno.test("EMFILE in a storm: one line per run of failures, no stack, the next debugger attaches", async () => {
  const child = new Deno.Command("sh", {
    args: ["-c", 'ulimit -n 48 && exec "$0" run --allow-all "$1"', Deno.execPath(), SERVER],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const port = Number((await reader.read()).value);
    reader.releaseLock();
    const storm: Deno.TcpConn[] = [];
    for (let i = 0; i < 80; i++) storm.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const conn of storm) conn.close();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const client = await RawClient.connect(port);
    assert.equal(await client.ask("?"), "T05thread:1;");
    assert.equal(await client.ask("D"), "OK");
    client.close();
    const failures = stderr.split("\n").filter((line) => line.includes("accept failed"));
    assert.ok(failures.length >= 1, `the storm never exhausted the descriptors:\n${stderr}`);
    // A run of failures ends only with an accept that works: if every failure (one per 10 ms
    // for as long as the descriptors stay exhausted) had its line, there would be far more.
    const accepted = stderr.split("\n").filter((line) =>
      /left before its first packet|dropping the oldest|attached/.test(line)
    ).length;
    assert.ok(failures.length <= accepted + 1, `${failures.length} lines for ${accepted} accepts`);
    for (const line of failures) {
      assert.match(line, /\[WRN\] .*accept failed: "Error: Too many open files/);
    }
    assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
    assert.doesNotMatch(stderr, /\[ERR\]/);
  } finally {
    child.kill();
    await child.status;
    await stderrDone;
    await child.stdout.cancel().catch(() => {});
  }
});
