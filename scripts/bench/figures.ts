/**
 * Each benchmark figure, measured against one server: through the raw RSP client (what the
 * server can do) and through gdb (what a user feels). Every function returns plain numbers;
 * nothing here judges them.
 *
 * @module
 */
import { binaryLength, expandedLength, RspClient } from "./rsp_client.ts";

/** A server to measure, as the figures see it. */
export interface Side {
  /** "ours" or "qemu". */
  name: string;
  /** Port of the 8-vCPU server (most figures). */
  port: number;
  /** Ports of the servers by vCPU count, for attach latency. */
  portsByCpus: Map<number, number>;
  /** Virtual address where guest RAM is readable for `size` bytes. */
  memStart: bigint;
  /** Whether the server answers `x` (binary) reads. */
  hasX: boolean;
}

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Wall clock in seconds with sub-millisecond resolution (to compare with gdb's time.time()). */
const wallSeconds = () => (performance.timeOrigin + performance.now()) / 1000;

/** Pause between sessions: a server detaches after the client leaves, before the next one. */
const BETWEEN_SESSIONS_MS = 150;

async function session<T>(port: number, body: (c: RspClient) => Promise<T>): Promise<T> {
  const client = await RspClient.connect(port);
  try {
    return await body(client);
  } finally {
    try {
      await client.request("D");
    } catch {
      // the server may have closed already
    }
    client.close();
    await sleep(BETWEEN_SESSIONS_MS);
  }
}

function isError(body: string): boolean {
  return /^E[0-9a-fA-F]{2}/.test(body) || body.startsWith("E.");
}

// ---- raw client -------------------------------------------------------------------------

/** Connect → first stop reply (`?`), in ms, with the VM running before. */
export function rawAttach(port: number): Promise<number> {
  return (async () => {
    const t0 = now();
    const client = await RspClient.connect(port);
    const reply = await client.request("?");
    const ms = now() - t0;
    if (!/^[TS]/.test(reply)) throw new Error(`attach: unexpected reply ${reply.slice(0, 40)}`);
    await client.request("D");
    client.close();
    await sleep(BETWEEN_SESSIONS_MS);
    return ms;
  })();
}

/** Reads [start, start + size) with `m` or `x`; returns MiB/s. */
export function rawMemory(side: Side, kind: "m" | "x", size: number): Promise<number> {
  return session(side.port, async (client) => {
    const packetSize = await client.handshake();
    await client.stopReason();
    // What one reply can carry: hex doubles the bytes; binary may escape some (rarely).
    const chunk = kind === "m" ? Math.floor((packetSize - 8) / 2) : packetSize - 8;
    const t0 = now();
    let done = 0;
    while (done < size) {
      const want = Math.min(chunk, size - done);
      const address = (side.memStart + BigInt(done)).toString(16);
      const body = await client.requestRaw(`${kind}${address},${want.toString(16)}`);
      let got: number;
      if (kind === "m") {
        if (body.length < 8 && isError(new TextDecoder().decode(body))) {
          throw new Error(`m read at 0x${address} failed`);
        }
        got = expandedLength(body) / 2;
      } else {
        if (body[0] !== 0x62 /* b */) throw new Error(`x read at 0x${address} failed`);
        got = binaryLength(body, true);
      }
      if (got === 0) throw new Error(`${kind} read at 0x${address} returned nothing`);
      done += got;
    }
    return size / (1 << 20) / ((now() - t0) / 1000);
  });
}

/** `g` round trips per second on one thread, repeated (the server may cache). */
export function rawRegistersCached(side: Side, count: number): Promise<number> {
  return session(side.port, async (client) => {
    await client.handshake();
    await client.stopReason();
    await client.request("g"); // the first read may fill a cache; measure the steady state
    const t0 = now();
    for (let i = 0; i < count; i++) {
      const reply = await client.request("g");
      if (isError(reply)) throw new Error(`g failed: ${reply}`);
    }
    return count / ((now() - t0) / 1000);
  });
}

async function threadIds(client: RspClient): Promise<string[]> {
  const ids: string[] = [];
  for (let reply = await client.request("qfThreadInfo"); reply.startsWith("m");) {
    ids.push(...reply.slice(1).split(","));
    reply = await client.request("qsThreadInfo");
  }
  return ids;
}

/** The first `g` of each thread right after attach (nothing cached yet), in µs each. */
export function rawRegistersFirst(side: Side): Promise<number[]> {
  return session(side.port, async (client) => {
    await client.handshake();
    await client.stopReason();
    const times: number[] = [];
    for (const id of await threadIds(client)) {
      await client.request(`Hg${id}`);
      const t0 = now();
      const reply = await client.request("g");
      times.push((now() - t0) * 1000);
      if (isError(reply)) throw new Error(`g on thread ${id} failed: ${reply}`);
    }
    return times;
  });
}

/** Ctrl-C byte → stop reply while the guest runs, in ms. */
export function rawInterrupt(side: Side, runMs: number): Promise<number> {
  return session(side.port, async (client) => {
    await client.handshake();
    await client.stopReason();
    await client.send("c");
    await sleep(runMs);
    const t0 = now();
    await client.interrupt();
    const reply = new TextDecoder().decode((await client.receive()).body);
    const ms = now() - t0;
    if (!/^[TS]/.test(reply)) throw new Error(`interrupt: unexpected reply ${reply.slice(0, 40)}`);
    return ms;
  });
}

/** A full thread listing as gdb does it (qfThreadInfo…l, qThreadExtraInfo each), in ms. */
export function rawThreads(side: Side, repeat: number): Promise<number[]> {
  return session(side.port, async (client) => {
    await client.handshake();
    await client.stopReason();
    const times: number[] = [];
    for (let i = 0; i < repeat; i++) {
      const t0 = now();
      for (const id of await threadIds(client)) await client.request(`qThreadExtraInfo,${id}`);
      times.push(now() - t0);
    }
    return times;
  });
}

/** CPU seconds `pid` used per wall second while a client sits attached and stopped. */
export function idleAttachedCpu(
  side: Side,
  pid: number,
  seconds: number,
  cpuSeconds: (pid: number) => number,
): Promise<{ stopped: number; running: number }> {
  return session(side.port, async (client) => {
    await client.handshake();
    await client.stopReason();
    await client.request("g");
    let c0 = cpuSeconds(pid);
    await sleep(seconds * 1000);
    const stopped = (cpuSeconds(pid) - c0) / seconds;
    // Waiting for a stop while the guest runs: for ours, the server alone; QEMU's process
    // runs the guest too, so its figure includes the guest.
    await client.send("c");
    await sleep(100);
    c0 = cpuSeconds(pid);
    await sleep(seconds * 1000);
    const running = (cpuSeconds(pid) - c0) / seconds;
    await client.interrupt();
    await client.receive();
    return { stopped, running };
  });
}

// ---- gdb ------------------------------------------------------------------------------

const GDB_PREAMBLE = [
  "set pagination off",
  "set confirm off",
  "set architecture i386:x86-64",
  "python import time",
];

/** Runs gdb in batch mode; returns each `BENCH name seconds` line it printed. */
async function gdb(commands: string[], timeoutMs = 300_000): Promise<Map<string, number>> {
  const args = ["-nx", "-batch", ...[...GDB_PREAMBLE, ...commands].flatMap((c) => ["-ex", c])];
  const child = new Deno.Command("gdb", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const found = new Map<string, number>();
  for (const m of text.matchAll(/^BENCH (\S+) ([0-9.e-]+)$/gm)) found.set(m[1]!, Number(m[2]));
  if (found.size === 0) throw new Error(`gdb printed no timings:\n${text.slice(-2000)}`);
  await sleep(BETWEEN_SESSIONS_MS);
  return found;
}

/** Times one gdb command: its wall time printed as `BENCH name seconds`. */
function timed(name: string, command: string): string[] {
  return [
    "python t0 = time.time()",
    command,
    `python print("BENCH ${name} %.6f" % (time.time() - t0))`,
  ];
}

/** gdb's `target remote` (attach) on a server with `cpus` vCPUs, in ms. */
export async function gdbAttach(port: number): Promise<number> {
  const found = await gdb([...timed("attach", `target remote 127.0.0.1:${port}`), "detach"]);
  return found.get("attach")! * 1000;
}

export interface GdbSessionFigures {
  attachMs: number;
  infoThreadsMs: number;
  infoRegistersAllMs: number;
  dumpMiBps: number;
}

/** One gdb session on the 8-vCPU server: attach, info threads, registers of all, dump. */
export async function gdbSession(side: Side, size: number): Promise<GdbSessionFigures> {
  const start = `0x${side.memStart.toString(16)}`;
  const end = `0x${(side.memStart + BigInt(size)).toString(16)}`;
  const found = await gdb([
    ...timed("attach", `target remote 127.0.0.1:${side.port}`),
    ...timed("threads", "info threads"),
    ...timed("registers", "thread apply all info registers"),
    ...timed("dump", `dump binary memory /dev/null ${start} ${end}`),
    "detach",
  ]);
  const get = (name: string) => {
    const value = found.get(name);
    if (value === undefined) throw new Error(`gdb did not time ${name}`);
    return value;
  };
  return {
    attachMs: get("attach") * 1000,
    infoThreadsMs: get("threads") * 1000,
    infoRegistersAllMs: get("registers") * 1000,
    dumpMiBps: size / (1 << 20) / get("dump"),
  };
}

/**
 * What a user feels on Ctrl-C: gdb runs `continue`; SIGINT to gdb (as the terminal sends)
 * → gdb sends the interrupt byte → stop reply → gdb has stopped (its stop event), in ms.
 */
export async function gdbInterrupt(side: Side, runMs: number): Promise<number> {
  const marks = await Deno.makeTempFile({ prefix: "bench-gdb-" });
  const script = await Deno.makeTempFile({ prefix: "bench-gdb-", suffix: ".py" });
  await Deno.writeTextFile(
    script,
    [
      "import gdb, time",
      "def on_stop(event):",
      `    with open(${JSON.stringify(marks)}, "a") as f:`,
      `        f.write("stop %.6f\\n" % time.time())`,
      "gdb.events.stop.connect(on_stop)",
      "",
    ].join("\n"),
  );
  const args = [
    "-nx",
    "-batch",
    ...[
      ...GDB_PREAMBLE,
      `target remote 127.0.0.1:${side.port}`,
      `source ${script}`,
      `python open(${JSON.stringify(marks)}, "a").write("continuing\\n")`,
      "continue",
      "detach",
    ].flatMap((c) => ["-ex", c]),
  ];
  const child = new Deno.Command("gdb", { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const output = child.output();
  try {
    const deadline = Date.now() + 60_000;
    while (!(await Deno.readTextFile(marks)).includes("continuing")) {
      if (Date.now() > deadline) throw new Error("gdb never reached continue");
      await sleep(10);
    }
    await sleep(runMs);
    const t0 = wallSeconds();
    child.kill("SIGINT");
    for (;;) {
      const stop = /^stop ([0-9.]+)$/m.exec(await Deno.readTextFile(marks));
      if (stop) return (Number(stop[1]) - t0) * 1000;
      if (Date.now() > deadline) throw new Error("gdb never stopped after SIGINT");
      await sleep(2);
    }
  } finally {
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 30_000);
    await output;
    clearTimeout(timer);
    await Deno.remove(marks).catch(() => {});
    await Deno.remove(script).catch(() => {});
    await sleep(BETWEEN_SESSIONS_MS);
  }
}
