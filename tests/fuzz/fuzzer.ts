/**
 * A seeded, repeatable fuzzer for the protocol layer: it drives a real {@link Session} over an
 * in-memory connection and checks, after every case, that the session answered or dropped what
 * it was sent without a handler blowing up, without leaving the loop, without writing a malformed
 * packet and without allocating in proportion to a length it was told.
 *
 * Cases are built from every packet family (valid bodies, then mutated: huge and overflowing
 * numbers, non-hex digits, threads that do not exist, truncation) and wrapped in hostile framing
 * (bad checksums, truncated frames, escapes at the end, run-length markers in odd places, Ctrl-C
 * and `$` inside packets, stray acks). `scripts/fuzz.ts` is the command line;
 * `tests/fuzz/fuzz_test.ts` runs a fixed seed on every push.
 *
 * @module
 */
import { configure, type LogRecord, renderMessage, reset } from "../../log/mod.ts";
import { PacketDecoder } from "../../rsp/framing.ts";
import { latin1 } from "../../rsp/hex.ts";
import { type Connection, Session } from "../../rsp/session.ts";
import type { DebugTarget } from "../../rsp/target.ts";

// ---- a small seeded PRNG (mulberry32): the same seed gives the same cases everywhere --------

export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

// ---- case generation -----------------------------------------------------------------------

/** Numbers that have broken parsers before: zero, edges of 32 and 64 bits, past 64 bits. */
const HOSTILE_NUMBERS = [
  "0",
  "1",
  "7fffffff",
  "80000000",
  "ffffffff",
  "100000000",
  "7fffffffffffffff",
  "8000000000000000",
  "fffffffffffff000",
  "ffffffffffffffff",
  "10000000000000000",
  "00000000000000000001",
  "-1",
  "-0",
  "0x10",
  "1e3",
  "g",
  "",
  " 1",
  "ffffffffffffffffffffffffffffffffffffffff",
];

const THREADS = [
  "1",
  "2",
  "0",
  "-1",
  "3",
  "ff",
  "ffffffff",
  "p1.1",
  "p1.-1",
  "p1",
  "p-1.2",
  "pz.1",
];

const hex = (rng: Rng, bytes: number) => {
  let s = "";
  for (let i = 0; i < bytes; i++) s += rng.int(256).toString(16).padStart(2, "0");
  return s;
};

const num = (rng: Rng, normal: () => string) =>
  rng.chance(0.35) ? rng.pick(HOSTILE_NUMBERS) : normal();

const MONITOR = [
  "help",
  "vcpus",
  "memmap",
  "lapic",
  "phys on",
  "phys off",
  "phys",
  "pagewalk",
  "frobnicate",
  "",
];

function monitorCommand(r: Rng): string {
  const command = r.pick(MONITOR);
  if (command !== "pagewalk" && !r.chance(0.2)) return command;
  return `${command} ${num(r, () => "ffffffff80100000")}${r.pick(["", " 1", " ffffffff", " x"])}`;
}

const textHex = (text: string) =>
  [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("");

/** One valid-looking body per packet family the server knows (and a few it does not). */
const FAMILIES: ((rng: Rng) => string)[] = [
  (r) =>
    `qSupported:${
      r.pick([
        "multiprocess+;swbreak+;vContSupported+;xmlRegisters=i386",
        "xmlRegisters=i386,arm;multiprocess+",
        "error-message+",
        "",
        "=;+;-;;a=b=c",
      ])
    }`,
  () => "QStartNoAckMode",
  (r) =>
    `qXfer:features:read:${r.pick(["target.xml", "i386.xml", "", "../etc/passwd"])}:${
      num(r, () => (r.int(0x2000)).toString(16))
    },${num(r, () => (r.int(0x1000)).toString(16))}`,
  (r) =>
    `qXfer:${
      r.pick([
        "features:write:target.xml:0:",
        "memory-map:read::0,fff",
        "features:read:target.xml:0",
      ])
    }`,
  () => "qfThreadInfo",
  () => "qsThreadInfo",
  () => "qC",
  (r) => `qThreadExtraInfo,${r.pick(THREADS)}`,
  () => "qAttached",
  (r) =>
    r.pick(["qAttached:1", "qOffsets", "qTStatus", "qSymbol::", "vMustReplyEmpty", "qHostInfo"]),
  (r) =>
    `qRcmd,${
      r.chance(0.2)
        ? r.pick(["", "zz", "706879732", hex(r, 1 + r.int(8))])
        : textHex(monitorCommand(r))
    }`,
  () => "?",
  (r) => `H${r.pick(["g", "c", "x", ""])}${r.pick(THREADS)}`,
  (r) => `T${r.pick(THREADS)}`,
  (r) => r.pick(["QThreadSuffixSupported", "QListThreadsInStopReply", "QEnableErrorStrings"]),
  (r) => `g${r.pick(["", `;thread:${r.pick(THREADS)};`, ";thread:", "x"])}`,
  (r) => `p${num(r, () => r.int(0x50).toString(16))}${r.pick(["", `;thread:${r.pick(THREADS)};`])}`,
  (r) => `G${hex(r, r.int(64))}`,
  (r) => `P${num(r, () => r.int(0x50).toString(16))}=${hex(r, 8)}`,
  (r) =>
    `${r.pick(["m", "x"])}${num(r, () => (0x1000 + r.int(0x3000)).toString(16))},${
      num(r, () => r.int(0x200).toString(16))
    }`,
  (r) =>
    `${r.pick(["m", "x"])}${
      r.pick([
        "ffffffffffffffff,1",
        "ffffffffffffffff,2",
        "0,ffffffffffffffff",
        "fffffffffffff000,2000",
        "1,ffffffffffffffff",
        "0,0",
        ",",
        "1000",
        "1000,",
        ",10",
      ])
    }`,
  (r) => `M${num(r, () => "1000")},${num(r, () => "2")}:${hex(r, 2)}`,
  (r) => `X${num(r, () => "1000")},${num(r, () => "2")}:${r.pick(["ab", "", "}\x03", "\x00\xff"])}`,
  (r) => r.pick(["c", "s", `c${num(r, () => "1000")}`, `s${num(r, () => "1000")}`]),
  (r) => `${r.pick(["C", "S"])}${num(r, () => "05")}${r.pick(["", `;${num(r, () => "1000")}`])}`,
  () => "vCont?",
  (r) =>
    `vCont${
      r.pick([
        ";c",
        ";t",
        ";s",
        ";c:1",
        `;s:${r.pick(THREADS)};c`,
        `;C05:${r.pick(THREADS)}`,
        ";t:-1",
        ";",
        "",
        ";r1000,2000",
        ";x",
        ";c:zz",
      ])
    }`,
  (r) =>
    `${r.pick(["Z", "z"])}${num(r, () => r.int(6).toString(16))},${num(r, () => "1000")},${
      num(r, () => "1")
    }${r.pick(["", ";X2,aa", ";cmds:1"])}`,
  (r) =>
    r.pick([
      "D",
      "D;1",
      "k",
      "vKill;1",
      "R00",
      "!",
      "A",
      "i",
      "I",
      "b9600",
      "B1000,S",
      "vAttach;1",
      "vRun;",
      "vFile:open:2f",
      "QNonStop:1",
      "qL1200000000000000000",
      "qP0000001f0000000000000001",
    ]),
];

/** The body of one packet: a family's body, sometimes mutated. */
export function packetBody(rng: Rng): string {
  let body = rng.pick(FAMILIES)(rng);
  if (rng.chance(0.3)) body = mutate(rng, body);
  return body;
}

const NASTY = ["$", "#", "}", "*", "\x03", "+", "-", "\x00", "\xff", ":", ";", ",", "=", "\n"];

function mutate(rng: Rng, body: string): string {
  const at = body.length === 0 ? 0 : rng.int(body.length + 1);
  switch (rng.int(7)) {
    case 0:
      return body.slice(0, at); // truncated
    case 1:
      return body.slice(0, at) + rng.pick(NASTY) + body.slice(at);
    case 2:
      return body.slice(0, at) + String.fromCharCode(rng.int(256)) + body.slice(at + 1);
    case 3:
      return body + body.slice(at);
    case 4:
      return body.slice(0, at) + rng.pick(HOSTILE_NUMBERS) + body.slice(at);
    case 5: {
      let s = "";
      for (let i = 0, n = rng.int(40); i < n; i++) s += String.fromCharCode(rng.int(256));
      return s;
    }
    default:
      return body.replace(/[0-9a-f]/, () => rng.pick(["g", "G", "-", " ", "\x00"]));
  }
}

/** Frames a body, correctly most of the time and in every hostile way some of the time. */
export function frame(rng: Rng, body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum += body.charCodeAt(i) & 0xff;
  const cs = (sum & 0xff).toString(16).padStart(2, "0");
  if (!rng.chance(0.3)) return `$${body}#${cs}`;
  switch (rng.int(11)) {
    case 0:
      return `$${body}#${((sum + 1 + rng.int(255)) & 0xff).toString(16).padStart(2, "0")}`;
    case 1:
      return `$${body}#${cs.slice(0, 1)}`; // truncated checksum
    case 2:
      return `$${body}`; // no end at all (the next `$` abandons it)
    case 3:
      return `$${body}}#${cs}`; // escape right before the end
    case 4:
      return `$${body}*#${cs}`; // run-length marker before the end
    case 5:
      return `$*${rng.pick([" ", "~", "#", "$", "}", "\xff", "\x1d"])}${body}#${cs}`; // leading repeat
    case 6: {
      // Run-length expansion far past PacketSize, without sending much.
      const count = 1 + rng.int(3000);
      return `$a${"*~".repeat(count)}#${cs}`;
    }
    case 7: {
      const at = rng.int(body.length + 1);
      return `$${body.slice(0, at)}\x03${body.slice(at)}#${cs}`; // Ctrl-C inside a packet
    }
    case 8:
      return `$${body}#${rng.pick(["zz", "g0", "\x03\x03", "#0", "$$"])}`;
    case 9:
      return `$${body}*${String.fromCharCode(rng.int(256))}#${cs}`; // repeat with any count
    default: {
      // A correct checksum over a body full of escapes, including one at the very end.
      const escaped =
        body.replace(/[#$}*]/g, (c) => `}${String.fromCharCode(c.charCodeAt(0) ^ 0x20)}`) + "}";
      let s = 0;
      for (let i = 0; i < escaped.length; i++) s += escaped.charCodeAt(i) & 0xff;
      return `$${escaped}#${(s & 0xff).toString(16).padStart(2, "0")}`;
    }
  }
}

/** Bytes for one case: one to four framed packets with acks, Ctrl-C and garbage between. */
export function caseBytes(rng: Rng): Uint8Array {
  let text = "";
  if (rng.chance(0.05)) {
    for (let i = 0, n = 1 + rng.int(200); i < n; i++) text += String.fromCharCode(rng.int(256));
  } else {
    for (let i = 0, n = 1 + rng.int(4); i < n; i++) {
      if (rng.chance(0.15)) {
        text += rng.pick(["+", "-", "\x03", "++", "\x03\x03", "garbage", "\r\n"]);
      }
      text += frame(rng, packetBody(rng));
    }
    if (rng.chance(0.1)) text += rng.pick(["$", "$m", "$g#", "$g#6", "}", "*"]);
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

/**
 * Bytes for one case from recorded traffic (record.ts): a run of consecutive packets one real
 * gdb or lldb sent, in their order, each mutated half of the time and framed as {@link frame}
 * does. Mutating a real conversation reaches the states a client really drives the session
 * into (no-ack mode, thread selected, binary reads enabled) before the damage arrives.
 */
export function recordedCaseBytes(rng: Rng, sessions: readonly (readonly string[])[]): Uint8Array {
  const packets = rng.pick(sessions);
  const start = rng.int(packets.length);
  const end = Math.min(packets.length, start + 1 + rng.int(8));
  let text = "";
  for (let i = start; i < end; i++) {
    const body = rng.chance(0.5) ? mutate(rng, packets[i]!) : packets[i]!;
    if (rng.chance(0.1)) text += rng.pick(["+", "-", "\x03"]);
    text += frame(rng, body);
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
}

// ---- the driver ----------------------------------------------------------------------------

/** A Connection the fuzzer feeds: it knows when the session has read everything it was given. */
export class FuzzConnection implements Connection {
  #incoming: Uint8Array[] = [];
  #readWaiter: (() => void) | undefined;
  #idleWaiter: (() => void) | undefined;
  #closed = false;
  #ended = false;
  #waitingForRead = false;
  readonly #decoder: PacketDecoder;
  readonly maxPacket: number;
  /** Problems found in what the session wrote. */
  readonly problems: string[] = [];
  writtenBytes = 0;
  packets = 0;

  constructor(maxPacket: number) {
    this.maxPacket = maxPacket;
    this.#decoder = new PacketDecoder(maxPacket * 2 + 16);
  }

  get closed(): boolean {
    return this.#closed;
  }

  push(bytes: Uint8Array): void {
    if (bytes.length > 0) this.#incoming.push(bytes);
    this.#readWaiter?.();
  }

  end(): void {
    this.#ended = true;
    this.#readWaiter?.();
  }

  /** Resolves once the session waits for more input with nothing queued (or is closed). */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    // A message is a macrotask: every promise the last read set off has settled before it
    // arrives (setTimeout(0) would do too, at a hundred times the cost).
    const channel = new MessageChannel();
    const macrotask = () =>
      new Promise((resolve) => {
        channel.port1.onmessage = resolve;
        channel.port2.postMessage(0);
      });
    try {
      for (let spins = 0;; spins++) {
        if (this.#closed) return true;
        if (this.#waitingForRead && this.#incoming.length === 0) {
          await macrotask();
          if (this.#waitingForRead && this.#incoming.length === 0) return true;
        }
        if (performance.now() > deadline) return false;
        if (spins < 20) {
          await macrotask();
          continue;
        }
        // Something slower is under way (a real VM's timers): wait without spinning.
        await new Promise<void>((resolve) => {
          this.#idleWaiter = resolve;
          setTimeout(resolve, 5);
        });
        this.#idleWaiter = undefined;
      }
    } finally {
      channel.port1.close();
      channel.port2.close();
    }
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#incoming.length === 0) {
      if (this.#closed) throw new Deno.errors.BadResource("closed");
      if (this.#ended) return null;
      this.#waitingForRead = true;
      this.#idleWaiter?.();
      await new Promise<void>((resolve) => this.#readWaiter = resolve);
      this.#readWaiter = undefined;
      this.#waitingForRead = false;
    }
    const chunk = this.#incoming[0]!;
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#incoming.shift();
    else this.#incoming[0] = chunk.subarray(n);
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    this.writtenBytes += data.length;
    for (const event of this.#decoder.feed(data)) {
      if (event.kind === "packet") {
        this.packets++;
        if (!event.checksumOk) this.problems.push("the session wrote a packet with a bad checksum");
        if (event.body.length > this.maxPacket) {
          this.problems.push(`the session wrote a ${event.body.length}-byte packet`);
        }
      } else if (event.kind === "oversize") {
        this.problems.push(`the session wrote an oversize packet (${event.length} bytes)`);
      }
    }
    return Promise.resolve(data.length);
  }

  close(): void {
    this.#closed = true;
    this.#readWaiter?.();
    this.#idleWaiter?.();
  }
}

export interface FuzzOptions {
  seed: number;
  cases: number;
  /** Makes the target for each new session (a fake, or the real VM). */
  target: () => DebugTarget | Promise<DebugTarget>;
  /** Called when a session ended, with its target (e.g. to check the VM runs again). */
  afterSession?: (target: DebugTarget) => void | Promise<void>;
  packetSize?: number;
  /** Cases per session before starting a fresh one (both ack modes get covered). */
  casesPerSession?: number;
  /** How long one case may take before it counts as a hang (ms). */
  caseTimeoutMs?: number;
  /** Allowed growth of the heap over the whole run (bytes). */
  heapBudget?: number;
  /** Progress, every so many cases. */
  onProgress?: (done: number, stats: FuzzStats) => void;
  /** Recorded client sessions (packet bodies): cases are mutations of them instead. */
  recorded?: readonly (readonly string[])[];
}

export interface FuzzFailure {
  case: number;
  /** The exact bytes of the case (latin1), to paste into a regression test. */
  bytes: string;
  problem: string;
}

export interface FuzzStats {
  cases: number;
  sessions: number;
  packetsAnswered: number;
  bytesIn: number;
  bytesOut: number;
  heapBefore: number;
  heapAfter: number;
  heapPeak: number;
  failures: FuzzFailure[];
}

interface Running {
  conn: FuzzConnection;
  done: Promise<void>;
  target: DebugTarget;
  /** Decodes the same bytes as the session, to know which packets it saw. */
  shadow: PacketDecoder;
  ended: boolean;
  cases: number;
}

/** Log records the fuzzer counts as bugs: a handler threw something unexpected, or the loop died. */
function isBug(record: LogRecord): boolean {
  const text = record.template;
  return (record.level === "error" && text.includes("unexpected failure")) ||
    (record.level === "warning" && text === "{peer}: {error}");
}

/** Runs `cases` seeded cases and returns what happened; failures carry their exact bytes. */
export async function fuzz(options: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(options.seed);
  const packetSize = options.packetSize ?? 0x1000;
  const perSession = options.casesPerSession ?? 150;
  const caseTimeout = options.caseTimeoutMs ?? 5000;
  const bugs: LogRecord[] = [];
  configure({ lowestLevel: "warning", sink: (record) => isBug(record) && bugs.push(record) });
  // Buffers live outside the JS heap: count both.
  const heap = () => {
    const usage = Deno.memoryUsage();
    return usage.heapUsed + usage.external;
  };
  const stats: FuzzStats = {
    cases: 0,
    sessions: 0,
    packetsAnswered: 0,
    bytesIn: 0,
    bytesOut: 0,
    heapBefore: 0,
    heapAfter: 0,
    heapPeak: 0,
    failures: [],
  };
  let current: Running | undefined;
  const endSession = async () => {
    if (current === undefined) return;
    const s = current;
    current = undefined;
    s.conn.end();
    await s.done;
    stats.packetsAnswered += s.conn.packets;
    stats.bytesOut += s.conn.writtenBytes;
    await options.afterSession?.(s.target);
  };
  try {
    // Warm up once (JIT, first allocations), so the heap baseline is fair.
    stats.heapBefore = heap();
    for (let n = 0; n < options.cases; n++) {
      if (current === undefined || current.ended || current.cases >= perSession) {
        await endSession();
        const target = await options.target();
        const conn = new FuzzConnection(packetSize);
        const session = new Session(target, conn, { packetSize, peer: "fuzzer" });
        const shadow = new PacketDecoder(packetSize);
        const s: Running = {
          conn,
          target,
          shadow,
          ended: false,
          cases: 0,
          done: Promise.resolve(),
        };
        s.done = session.run().then(() => void (s.ended = true));
        current = s;
        stats.sessions++;
      }
      const s = current;
      const bytes = options.recorded === undefined
        ? caseBytes(rng)
        : recordedCaseBytes(rng, options.recorded);
      const bugsBefore = bugs.length;
      const problemsBefore = s.conn.problems.length;
      stats.bytesIn += bytes.length;
      s.conn.push(bytes);
      s.cases++;
      const settled = await s.conn.idle(caseTimeout);
      const fail = (problem: string) =>
        stats.failures.push({ case: n, bytes: latin1(bytes), problem });
      if (!settled) fail(`no answer within ${caseTimeout} ms`);
      for (const record of bugs.slice(bugsBefore)) {
        fail(renderMessage(record));
      }
      for (const problem of s.conn.problems.slice(problemsBefore)) fail(problem);
      const mayClose = closes(s.shadow, bytes);
      if (s.conn.closed && !mayClose) fail("the session ended on a case that does not end it");
      if (s.conn.closed) s.ended = true;
      stats.cases++;
      const h = heap();
      if (h > stats.heapPeak) stats.heapPeak = h;
      if (options.onProgress !== undefined && (n + 1) % 10_000 === 0) {
        options.onProgress(n + 1, stats);
      }
      if (!settled) {
        // A hung session would hang the rest of the run: drop it.
        s.conn.close();
        s.ended = true;
      }
    }
    await endSession();
    (globalThis as { gc?: () => void }).gc?.();
    stats.heapAfter = heap();
    const budget = options.heapBudget ?? 64 << 20;
    if (stats.heapPeak - stats.heapBefore > budget) {
      stats.failures.push({
        case: -1,
        bytes: "",
        problem: `heap grew by ${((stats.heapPeak - stats.heapBefore) / 2 ** 20).toFixed(1)} MiB`,
      });
    }
    return stats;
  } finally {
    await endSession().catch(() => {});
    reset();
  }
}

/** Whether a case may legitimately end its session: a whole `D` or `k` packet was in it. */
function closes(shadow: PacketDecoder, bytes: Uint8Array): boolean {
  return shadow.feed(bytes).some((e) =>
    e.kind === "packet" && e.checksumOk && (e.body[0] === 0x44 || latin1(e.body) === "k")
  );
}
