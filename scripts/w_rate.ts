/**
 * `w` mode's success rate: how often the boot vCPU is held at its first instruction, over many
 * starts of the test VM in a FreeBSD version mode (default 14), through the same code main.ts
 * runs for `-G w…` (vmm/boot_hold.ts).
 *
 *   deno task w-rate [--starts 50] [--vmm-version 14]
 *
 * Each start: begin waiting for a VM that does not exist yet, start it, and record what the
 * hold reports; the VM is stopped before the next. Prints the tally and the rate.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadVmmapi } from "../ffi/mod.ts";
import { type BootHoldOutcome, holdAtBoot } from "../vmm/mod.ts";
import { LIBVMMAPI, TestVm } from "../tests/helpers/testvm.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: { starts: { type: "string" }, "vmm-version": { type: "string" } },
});
const starts = Number(args.starts ?? 50);
const version = Number(args["vmm-version"] ?? 14) as 13 | 14 | 15;
const dir = await Deno.makeTempDir({ prefix: "w-rate-" });
Deno.env.set("TESTVM_DIR", dir);
const api = loadVmmapi({ path: LIBVMMAPI[version === 13 ? "0103" : "0200"] });
const tally: Record<BootHoldOutcome, number> = {
  "first-instruction": 0,
  "after-run": 0,
  running: 0,
};
const started = performance.now();
try {
  for (let i = 0; i < starts; i++) {
    const name = `wrate-${Deno.pid}-${i}`;
    const holding = holdAtBoot(api, name, { heldPollMs: 50 });
    await new Promise((r) => setTimeout(r, 20));
    const vm = await TestVm.start({ name, dir, cpus: 2, vmmVersion: version });
    try {
      const hold = await holding;
      tally[hold.outcome]++;
      console.log(`${String(i + 1).padStart(3)}: ${hold.message}`);
      await hold.target.close();
    } finally {
      await vm.stop();
    }
  }
} finally {
  api.close();
  await Deno.remove(dir, { recursive: true });
}
const rate = (100 * tally["first-instruction"]) / starts;
console.log(
  `\nFreeBSD ${version} mode, ${starts} starts in ${
    ((performance.now() - started) / 1000).toFixed(0)
  } s: ` +
    `held at the first instruction ${tally["first-instruction"]}, after the guest ran ` +
    `${tally["after-run"]}, already running ${tally.running}: ${rate.toFixed(1)}% at the first ` +
    `instruction (load average ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")})`,
);
