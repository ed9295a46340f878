/**
 * A long session against the real main.ts and the test VM: register reads, memory reads,
 * thread listing, continue and interrupt, over and over, with a reconnect now and then. The
 * server's resident set, file descriptors and memory mappings are sampled from /proc all along,
 * and every vCPU must run when it is over.
 *
 * V8 sizes its heap in steps for minutes before it settles, so growth is judged as the end
 * against the highest value seen over the first 60% of the run: a plateau passes, a leak (steady
 * growth) does not. The server's heap is capped too, so a leak kills it outright. File
 * descriptors must come back exactly to what they were after the warm-up.
 *
 *   deno task soak --minutes 10
 *
 * tests/hardening/soak_test.ts runs a short one (about 20 s) on every push.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { TestVm } from "../tests/helpers/testvm.ts";
import { RawClient } from "../tests/rsp/tcp_client.ts";
import { Observer, Server, sleep } from "../tests/hardening/harness.ts";
import * as L from "../tests/testvm/layout.ts";

export interface SoakOptions {
  /** How long to run (ms). */
  durationMs: number;
  cpus?: number;
  /** Reconnect after this many ms of a session (default a fifth of the run, at most 60 s). */
  sessionMs?: number;
  log?: (line: string) => void;
  /** DENO_V8_FLAGS for the server (default {@link DEFAULT_V8_FLAGS}; "" for none). */
  serverV8Flags?: string;
}

/** The server's heap cap during a soak. */
export const DEFAULT_V8_FLAGS = "--max-old-space-size=64";

export interface Sample {
  fds: number;
  maps: number;
  rssKiB: number;
  threads: number;
}

export interface SoakResult {
  cycles: number;
  packets: number;
  sessions: number;
  interrupts: number;
  /** After the warm-up, and at the end (the debugger detached). */
  warm: Sample;
  /** The highest of each measure over the first 60% of the run (after the warm-up). */
  firstHalfPeak: Sample;
  end: Sample;
  /** Largest RSS seen. */
  peakRssKiB: number;
  /** Every vCPU out of the debug set and counting at the end. */
  allRunning: boolean;
  /** Problems found (empty when the soak passed). */
  problems: string[];
}

/** Bounds a soak must stay within (chosen well above the noise seen on the dev box). */
export const BOUNDS = {
  /** RSS growth from the peak of the first 60% to the end. */
  rssGrowthKiB: 24 * 1024,
  /** File descriptors: none may leak. */
  fdGrowth: 0,
  /** Mappings: V8 maps and unmaps heap pages as it goes; a leak grows without bound. */
  mapsGrowth: 64,
};

/** Runs the soak; never throws for a failed check (see `problems`). */
export async function soak(options: SoakOptions): Promise<SoakResult> {
  const cpus = options.cpus ?? 2;
  const log = options.log ?? (() => {});
  const sessionMs = options.sessionMs ?? Math.min(60_000, Math.max(3000, options.durationMs / 5));
  await using vm = await TestVm.start({ cpus, mem: "64M" });
  using observer = new Observer(vm);
  await observer.allRunning(cpus);
  // The server's heap is capped: a leak then kills it within minutes (and fails the soak),
  // while garbage V8 merely has not collected yet cannot pass for growth.
  const v8Flags = options.serverV8Flags ?? Deno.env.get("SOAK_SERVER_V8_FLAGS") ?? DEFAULT_V8_FLAGS;
  await using server = await Server.start(vm, v8Flags ? { env: { DENO_V8_FLAGS: v8Flags } } : {});
  const result: SoakResult = {
    cycles: 0,
    packets: 0,
    sessions: 0,
    interrupts: 0,
    warm: server.resources(),
    firstHalfPeak: { fds: 0, maps: 0, rssKiB: 0, threads: 0 },
    end: server.resources(),
    peakRssKiB: 0,
    allRunning: false,
    problems: [],
  };
  const problem = (text: string) => {
    result.problems.push(text);
    log(`PROBLEM: ${text}`);
  };
  const started = performance.now();
  const warmUntil = started + Math.min(10_000, options.durationMs / 5);
  let warmed = false;
  const layoutVa = (L.KERNEL_VBASE + L.LAYOUT_PHYS).toString(16);
  const kernelVa = (L.KERNEL_VBASE + L.KERNEL_PHYS).toString(16);

  while (performance.now() - started < options.durationMs) {
    const client = await RawClient.connect(server.port);
    result.sessions++;
    const ask = async (body: string, expect: RegExp) => {
      const answer = await client.ask(body);
      result.packets++;
      if (answer === undefined || !expect.test(answer)) {
        throw new Error(`${body} -> ${answer?.slice(0, 80)}`);
      }
      return answer;
    };
    try {
      await ask(
        "qSupported:multiprocess+;swbreak+;vContSupported+;xmlRegisters=i386",
        /PacketSize/,
      );
      await ask("QStartNoAckMode", /^OK$/);
      await ask("?", /^T05thread:1;$/);
      const sessionStart = performance.now();
      while (
        performance.now() - sessionStart < sessionMs &&
        performance.now() - started < options.durationMs
      ) {
        await ask("qfThreadInfo", /^m1(,\d+)*$/);
        await ask("qsThreadInfo", /^l$/);
        for (let t = 1; t <= cpus; t++) {
          await ask(`Hg${t}`, /^OK$/);
          await ask("g", /^[0-9a-fx]{500,}$/);
          await ask(`qThreadExtraInfo,${t}`, /^[0-9a-f]+$/);
        }
        await ask("p10", /^[0-9a-f]{16}$/);
        await ask(`m${layoutVa},40`, /^54455354564d3031/); // "TESTVM01"
        await ask(`x${kernelVa},1000`, /^b/s);
        await ask("m0,ffffffffffffffff", /^[0-9a-f]*$|^E/);
        await client.send("vCont;c");
        result.packets++;
        await sleep(20 + (result.cycles % 5) * 10);
        await client.write("\x03");
        const stop = await client.reply();
        if (stop === undefined || !/^T02thread:/.test(stop)) {
          throw new Error(`Ctrl-C -> ${stop}`);
        }
        result.interrupts++;
        result.cycles++;
        const now = server.resources();
        if (now.rssKiB > result.peakRssKiB) result.peakRssKiB = now.rssKiB;
        if (warmed && performance.now() - started < options.durationMs * 0.6) {
          const peak = result.firstHalfPeak;
          for (const key of ["fds", "maps", "rssKiB", "threads"] as const) {
            peak[key] = Math.max(peak[key], now[key]);
          }
        }
      }
      await ask("D", /^OK$/);
    } catch (error) {
      problem(`session ${result.sessions}: ${(error as Error).message}`);
    } finally {
      client.close();
    }
    log(
      `${((performance.now() - started) / 1000).toFixed(0)} s: ${result.cycles} cycles, ` +
        `${result.packets} packets, ${result.sessions} sessions, ${
          JSON.stringify(server.resources())
        }`,
    );
    if (result.problems.length > 0) break;
    if (!warmed && performance.now() > warmUntil) {
      // Between sessions, so the sample holds no connection of ours.
      await sleep(300);
      warmed = true;
      result.warm = server.resources();
      log(`warm: ${JSON.stringify(result.warm)}`);
    }
  }
  // Let the last detach and the closed socket settle before the final sample.
  await sleep(500);
  const died = await server.exited(0);
  if (died !== undefined) {
    problem(
      `the server died (${JSON.stringify(died)}): ${
        server.stderr.trim().split("\n").slice(-3).join(" / ")
      }`,
    );
    return result;
  }
  result.end = server.resources();
  try {
    await observer.allRunning(cpus, 10_000);
    result.allRunning = true;
  } catch (error) {
    problem(`not every vCPU runs at the end: ${(error as Error).message}`);
  }
  if (!warmed) problem("the soak ended before its warm-up");
  const base = result.firstHalfPeak.rssKiB > 0 ? result.firstHalfPeak : result.warm;
  const grew = {
    rss: result.end.rssKiB - base.rssKiB,
    fds: result.end.fds - result.warm.fds,
    maps: result.end.maps - base.maps,
  };
  if (grew.rss > BOUNDS.rssGrowthKiB) problem(`RSS grew by ${grew.rss} KiB`);
  if (grew.fds > BOUNDS.fdGrowth) problem(`${grew.fds} file descriptors leaked`);
  if (grew.maps > BOUNDS.mapsGrowth) problem(`${grew.maps} more memory mappings`);
  const noteworthy = server.stderr.split("\n").filter((l) => /WRN|ERR|FTL/.test(l));
  if (noteworthy.length > 0) log(`server warnings:\n${noteworthy.join("\n")}`);
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "5" },
      cpus: { type: "string", default: "2" },
    },
  });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) {
    console.error("soak: --minutes takes a positive number (fractions allowed)");
    Deno.exit(2);
  }
  const result = await soak({
    durationMs: minutes * 60_000,
    cpus: Number(values.cpus),
    log: (line) => console.error(line),
  });
  console.log(
    `soak ${minutes} min: ${result.cycles} cycles, ${result.packets} packets, ` +
      `${result.interrupts} interrupts, ${result.sessions} sessions; server ` +
      `RSS ${result.warm.rssKiB} KiB after warm-up, ${result.firstHalfPeak.rssKiB} early peak, ` +
      `${result.end.rssKiB} at the end (peak ${result.peakRssKiB}); fds ` +
      `${result.warm.fds} -> ${result.end.fds}; maps ${result.warm.maps} after warm-up, ` +
      `${result.firstHalfPeak.maps} early peak, ${result.end.maps} at the end; ` +
      `every vCPU running: ${result.allRunning}`,
  );
  for (const problem of result.problems) console.log(`FAIL: ${problem}`);
  Deno.exit(result.problems.length === 0 ? 0 : 1);
}
