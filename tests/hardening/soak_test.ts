/**
 * A short soak on every push (`deno task soak -- --minutes N` for a long one): one debugger
 * reading registers, memory and threads, continuing and interrupting for about 20 s, with a
 * reconnect every few seconds. No RSS growth beyond a bound, no leaked file descriptors or
 * mappings in the server, every vCPU running at the end.
 */
import assert from "node:assert/strict";
import { BOUNDS, soak } from "../../scripts/soak.ts";
import { testvmBuilt } from "../helpers/testvm.ts";

Deno.test({
  name: "soak: 20 s of reads, continue and Ctrl-C leak nothing and leave the VM running",
  ignore: !testvmBuilt(),
  async fn() {
    const lines: string[] = [];
    const result = await soak({ durationMs: 20_000, sessionMs: 4000, log: (l) => lines.push(l) });
    console.log(
      `${result.cycles} cycles, ${result.packets} packets, ${result.sessions} sessions; ` +
        `RSS ${result.warm.rssKiB} KiB warm, ${result.firstHalfPeak.rssKiB} early peak, ` +
        `${result.end.rssKiB} end; fds ${result.warm.fds} -> ${result.end.fds}; maps ` +
        `${result.warm.maps} warm, ${result.firstHalfPeak.maps} early peak, ${result.end.maps} end`,
    );
    assert.deepEqual(result.problems, [], lines.join("\n"));
    assert.ok(result.allRunning);
    assert.ok(result.sessions >= 3 && result.interrupts >= 20, lines.join("\n"));
    assert.ok(result.end.fds - result.warm.fds <= BOUNDS.fdGrowth);
  },
});
