/** Nothing one debugger sets reaches the next: detach puts the target back to its defaults. */
import assert from "node:assert/strict";
import { VmTarget } from "../../vmm/target.ts";
import { FakeVm } from "./fake_vmm.ts";

Deno.test("monitor phys on does not outlive the debugger that set it", async () => {
  const target = new VmTarget(new FakeVm({ active: [0] }));
  await target.stop();
  assert.match(await target.monitor("phys on", 1), /physical/i);
  assert.equal(target.physicalMode, true);
  await target.detach();
  assert.equal(target.physicalMode, false, "the next debugger reads virtual addresses");
  await target.close();
});
