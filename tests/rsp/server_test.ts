import assert from "node:assert/strict";
import { ListenError, serve } from "../../rsp/server.ts";
import { FakeTarget } from "./fake_target.ts";
import { RawClient } from "./tcp_client.ts";

const until = async (check: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};

Deno.test("a port in use is a ListenError with a one-line message", async () => {
  const first = serve(new FakeTarget(), { hostname: "127.0.0.1", port: 0 });
  const port = first.addr.port;
  assert.throws(
    () => serve(new FakeTarget(), { hostname: "127.0.0.1", port }),
    (error: unknown) =>
      error instanceof ListenError &&
      error.message === `Cannot listen on 127.0.0.1:${port}: the address is already in use` &&
      error.cause instanceof Deno.errors.AddrInUse,
  );
  await first.close();
});

Deno.test("one debugger at a time: a second one is told why and closed", async () => {
  const target = new FakeTarget();
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  const first = await RawClient.connect(server.addr.port);
  assert.equal(await first.ask("?"), "T05thread:1;");
  assert.ok(server.busy);
  const second = await RawClient.connect(server.addr.port);
  assert.equal(
    await second.ask("qSupported"),
    "E.The VM is already being debugged by another debugger",
  );
  assert.equal(await second.reply(), undefined);
  second.close();
  assert.equal(await first.ask("qC"), "QC1");
  assert.equal(await first.ask("D"), "OK");
  await until(() => !server.busy);
  const third = await RawClient.connect(server.addr.port);
  assert.equal(await third.ask("?"), "T05thread:1;");
  third.close();
  first.close();
  await until(() => !server.busy);
  assert.deepEqual(target.calls, ["stop", "detach", "stop", "detach"]);
  await server.close();
});

Deno.test("a dropped connection detaches; closing the server ends the session", async () => {
  const target = new FakeTarget();
  const server = serve(target, { hostname: "127.0.0.1", port: 0 });
  const client = await RawClient.connect(server.addr.port);
  await client.send("c");
  await until(() => target.running);
  client.close();
  await until(() => target.calls.includes("detach"));
  const again = await RawClient.connect(server.addr.port);
  assert.equal(await again.ask("?"), "T05thread:1;");
  await server.close();
  assert.equal(target.calls.at(-1), "detach");
  assert.equal(await again.reply(), undefined);
  again.close();
});

Deno.test("IPv6 loopback works", async () => {
  const server = serve(new FakeTarget(), { hostname: "::1", port: 0 });
  const client = await RawClient.connect(server.addr.port, "::1");
  assert.equal(await client.ask("qAttached"), "1");
  client.close();
  await server.close();
});

Deno.test("a target factory failure is told to the debugger", async () => {
  const server = serve(() => {
    throw new Error("No VM named guest9");
  }, { hostname: "127.0.0.1", port: 0 });
  const client = await RawClient.connect(server.addr.port);
  assert.equal(await client.ask("qSupported"), "E.No VM named guest9");
  client.close();
  await until(() => !server.busy);
  await server.close();
});

Deno.test("an abort signal closes the server", async () => {
  const controller = new AbortController();
  const server = serve(new FakeTarget(), {
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  });
  controller.abort();
  await server.finished;
});
