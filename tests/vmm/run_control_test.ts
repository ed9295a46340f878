import assert from "node:assert/strict";
import { RunControl } from "../../vmm/run_control.ts";
import { FakeVm } from "./fake_vmm.ts";

Deno.test("hold suspends only active vCPUs not already in the debug set", () => {
  // vCPU 0 runs; vCPUs 1 and 2 are APs bhyve keeps parked until the guest starts them.
  const vm = new FakeVm({ active: [0, 1, 2], debug: [1, 2] });
  const rc = new RunControl(vm);
  assert.deepEqual(rc.hold(), [0]);
  assert.deepEqual([...rc.mine], [0]);
  assert.deepEqual([...rc.bhyves], [1, 2]);
  assert.deepEqual(rc.release(), [0]);
  assert.deepEqual([...vm.debug].sort(), [1, 2]); // bhyve's APs stay in the set
  assert.ok(!vm.calls.some((c) => c === "vm_resume_cpu 1" || c === "vm_resume_cpu 2"));
});

Deno.test("an AP bhyve releases while held is held too, and runs after release", () => {
  const vm = new FakeVm({ active: [0, 1, 2], debug: [1, 2] });
  const rc = new RunControl(vm);
  rc.hold();
  vm.debug.delete(1); // the guest sent vCPU 1 a SIPI: bhyve resumed it
  assert.deepEqual(rc.poll(), { suspended: [1], adopted: [] });
  assert.ok(vm.debug.has(1));
  assert.deepEqual(rc.release().sort(), [0, 1]);
  assert.deepEqual([...vm.debug], [2]); // vCPU 2 is still bhyve's
});

Deno.test("release looks once more, so a release between polls is not lost", () => {
  const vm = new FakeVm({ active: [0, 1], debug: [1] });
  const rc = new RunControl(vm);
  rc.hold();
  vm.debug.delete(1);
  assert.deepEqual(rc.release().sort(), [0, 1]);
  assert.deepEqual([...vm.debug], []);
});

Deno.test("a vCPU activated while held is suspended; one activated parked is bhyve's", () => {
  const vm = new FakeVm({ active: [0], debug: [] });
  const rc = new RunControl(vm);
  rc.hold();
  vm.active.add(1); // started running
  vm.active.add(2);
  vm.debug.add(2); // bhyve activated it straight into the debug set
  assert.deepEqual(rc.poll(), { suspended: [1], adopted: [2] });
  assert.equal(rc.state(2, [0, 1, 2]), "held by bhyve");
  assert.equal(rc.state(1, [0, 1, 2]), "held by debugger");
  rc.release();
  assert.deepEqual([...vm.debug], [2]);
});

Deno.test("a vCPU someone else resumed while held is suspended again, and only once resumed", () => {
  const vm = new FakeVm({ active: [0, 1] });
  const rc = new RunControl(vm);
  rc.hold();
  vm.debug.delete(0);
  assert.deepEqual(rc.poll().suspended, [0]);
  assert.deepEqual(rc.poll().suspended, []);
  rc.release();
  assert.equal(vm.calls.filter((c) => c === "vm_resume_cpu 0").length, 1);
});

Deno.test("hold twice is one hold; release when not held does nothing", () => {
  const vm = new FakeVm({ active: [0, 1] });
  const rc = new RunControl(vm);
  assert.deepEqual(rc.release(), []);
  rc.hold();
  assert.deepEqual(rc.hold(), []);
  assert.deepEqual(rc.release().sort(), [0, 1]);
  assert.ok(!rc.held);
  assert.ok(!vm.calls.includes("vm_resume_all_cpus"));
});

Deno.test("the VM vanishing surfaces as a VmmError, and abandon forgets the hold", () => {
  const vm = new FakeVm({ active: [0] });
  const rc = new RunControl(vm);
  rc.hold();
  vm.gone = true;
  assert.throws(() => rc.poll(), { name: "VmmError", code: "ENXIO" });
  rc.abandon();
  assert.ok(!rc.held);
  assert.deepEqual(rc.release(), []);
});

Deno.test("an AP bhyve parks at an INIT while the guest runs is bhyve's, named once as fresh", () => {
  const vm = new FakeVm({ active: [0, 1, 2], debug: [2] });
  const rc = new RunControl(vm);
  rc.hold();
  assert.deepEqual(rc.takeFreshlyParked(), [], "bhyve's never-started AP is not fresh");
  rc.release();
  vm.debug.add(1); // the guest INITs vCPU 1: bhyve's vm_suspend_cpu
  assert.deepEqual(rc.hold(), [0]);
  assert.equal(rc.state(1, [0, 1, 2]), "held by bhyve");
  assert.deepEqual(rc.takeFreshlyParked(), [1]);
  assert.deepEqual(rc.takeFreshlyParked(), []);
  assert.deepEqual(rc.release(), [0], "continue leaves it parked");
  assert.deepEqual(rc.hold(), [0]);
  assert.deepEqual(rc.takeFreshlyParked(), [], "parked since the last hold: not fresh again");
  rc.release();
  vm.debug.delete(1); // the SIPI: bhyve resumes it
  assert.deepEqual(rc.hold().sort(), [0, 1], "an ordinary vCPU again");
  assert.deepEqual(rc.release().sort(), [0, 1]);
});

Deno.test("a vCPU let run alone that bhyve parks is found fresh at the next hold", () => {
  const vm = new FakeVm({ active: [0, 1] });
  const rc = new RunControl(vm);
  rc.hold();
  assert.deepEqual(rc.release([1]), [1]); // vCPU 1 runs alone
  vm.debug.add(1); // and is INITed
  assert.deepEqual(rc.hold(), []);
  assert.equal(rc.state(1, [0, 1]), "held by bhyve");
  assert.deepEqual(rc.takeFreshlyParked(), [1]);
  assert.deepEqual(rc.release(), [0]);
  assert.deepEqual([...vm.debug], [1]);
});
