/**
 * `w` mode's logic against a fake VM that plays bhyve's start-up: where the boot vCPU is held
 * and what the user is told. The same against the test VM's version modes is in
 * tests/e2e/boot_hold_e2e_test.ts.
 */
import assert from "node:assert/strict";
import { holdAtBoot } from "../../vmm/boot_hold.ts";
import { ParkTracker } from "../../vmm/parking.ts";
import { VmTarget } from "../../vmm/target.ts";
import { type Vmmapi, VmReg } from "../../vmm/vmmapi.ts";
import { FakeVm } from "./fake_vmm.ts";

const fast = { heldPollMs: 5, runningPollMs: 5, intervalMs: 1 };
const ENTRY = 0x10_0000n;

/** An api whose VM's device node appears after `appearMs` (a file in a temp dir). */
function apiFor(vm: FakeVm, dir: string, appearMs: number): Vmmapi & { opens: number } {
  const node = `${dir}/${vm.name}`;
  setTimeout(() => Deno.writeTextFileSync(node, ""), appearMs);
  const api = {
    generation: "0200" as const,
    path: "fake",
    opens: 0,
    devicePath: (name: string) => `${dir}/${name}`,
    open() {
      api.opens++;
      // vm_open would fail before the node exists: it must not be called in a loop.
      Deno.statSync(node);
      return vm;
    },
    close() {},
  };
  return api;
}

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "boot-hold-" });
  try {
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** bhyve 14/15: every vCPU starts in the debug set; main resumes the BSP after set-up. */
function bhyve14(): FakeVm {
  const vm = new FakeVm({ active: [], debug: [] });
  vm.setReg(0, VmReg.RIP, ENTRY);
  return vm;
}

function activateAll(vm: FakeVm, cpus: number, bspInDebugSet: boolean): void {
  for (let cpu = 0; cpu < cpus; cpu++) {
    vm.active.add(cpu);
    if (cpu !== 0 || bspInDebugSet) vm.debug.add(cpu);
  }
}

Deno.test("14/15: the BSP is caught as bhyve lets it go: held at the first instruction", async () => {
  await withDir(async (dir) => {
    const vm = bhyve14();
    const api = apiFor(vm, dir, 10);
    setTimeout(() => activateAll(vm, 2, true), 20);
    setTimeout(() => vm.debug.delete(0), 60); // main(): vm_resume_cpu(bsp)
    const hold = await holdAtBoot(api, vm.name, fast);
    try {
      assert.equal(api.opens, 1, "vm_open once, after the node appeared");
      assert.equal(hold.outcome, "first-instruction");
      assert.match(hold.message, /^held at the first instruction: vCPU 0 at RIP 0x100000/);
      assert.equal(hold.startRip, ENTRY);
      assert.ok(vm.debug.has(0) && hold.target.control.mine.has(0), "the BSP is ours");
      assert.ok(hold.target.control.bhyves.has(1), "the AP stays bhyve's");
    } finally {
      await hold.target.close();
    }
    assert.deepEqual([...vm.debug], [1], "closing resumes the BSP only");
  });
});

Deno.test("14/15: a BSP that ran before the hold is reported with where it went", async () => {
  await withDir(async (dir) => {
    const vm = bhyve14();
    const api = apiFor(vm, dir, 0);
    setTimeout(() => activateAll(vm, 1, true), 5);
    setTimeout(() => {
      vm.debug.delete(0);
      vm.setReg(0, VmReg.RIP, ENTRY + 0x42n); // the guest ran before the suspend landed
    }, 40);
    const hold = await holdAtBoot(api, vm.name, fast);
    try {
      assert.equal(hold.outcome, "after-run");
      assert.equal(hold.message, "held after the guest ran (RIP moved from 0x100000 to 0x100042)");
    } finally {
      await hold.target.close();
    }
  });
});

Deno.test("14/15: a BSP seen between bhyve's activate and suspend is still bhyve's", async () => {
  await withDir(async (dir) => {
    /** bhyve's vm_suspend_cpu lands a moment after vm_activate_cpu. */
    class LateSuspend extends FakeVm {
      looks = 0;
      override debugCpus(): number[] {
        if (this.active.has(0) && ++this.looks === 3) this.debug.add(0);
        return super.debugCpus();
      }
    }
    const vm = new LateSuspend({ active: [], debug: [] });
    vm.setReg(0, VmReg.RIP, ENTRY);
    const api = apiFor(vm, dir, 0);
    setTimeout(() => vm.active.add(0), 5);
    setTimeout(() => vm.debug.delete(0), 60);
    const hold = await holdAtBoot(api, vm.name, fast);
    try {
      assert.equal(hold.outcome, "first-instruction");
    } finally {
      await hold.target.close();
    }
  });
});

Deno.test("13.x: the BSP never enters the debug set, so it is held after it ran", async () => {
  await withDir(async (dir) => {
    const vm = bhyve14();
    const api = apiFor(vm, dir, 0);
    setTimeout(() => activateAll(vm, 2, false), 5);
    const hold = await holdAtBoot(api, vm.name, fast);
    try {
      assert.equal(hold.outcome, "running");
      assert.match(hold.message, /already running .* FreeBSD 13\.x/);
      assert.ok(hold.target.control.mine.has(0));
    } finally {
      await hold.target.close();
    }
  });
});

Deno.test("an abort ends the wait for a VM that never appears", async () => {
  await withDir(async (dir) => {
    const vm = bhyve14();
    const api = apiFor(vm, dir, 60_000);
    const controller = new AbortController();
    const waiting = holdAtBoot(api, "never", { ...fast, signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(waiting);
    assert.equal(api.opens, 0);
  });
});

/** A fake whose VMEXIT_USERSPACE counter moves only when a test says bhyve's thread looped. */
class CountingVm extends FakeVm {
  exits = new Map<number, bigint>();
  userspaceExits(vcpu: number): bigint {
    return this.exits.get(vcpu) ?? 0n;
  }
  loop(vcpu: number): void {
    this.exits.set(vcpu, this.userspaceExits(vcpu) + 1n);
  }
}

Deno.test("a suspended vCPU counts as parked only after two returns of VM_RUN", () => {
  const vm = new CountingVm({ active: [0, 1] });
  const parking = new ParkTracker(vm);
  parking.suspended([0, 1]);
  assert.deepEqual(parking.pending, [0, 1]);
  vm.loop(0); // may be the exit bhyve is still emulating
  assert.equal(parking.parked(0), false);
  vm.loop(0); // a VM_RUN that began after the suspend: a debug exit
  assert.equal(parking.parked(0), true);
  assert.equal(parking.parked(1), false);
  assert.deepEqual(parking.pending, [1]);
});

Deno.test("a stop waits for a vCPU whose exit is still being emulated, then reads it", async () => {
  const vm = new CountingVm({ active: [0] });
  vm.setReg(0, VmReg.RIP, 0x1000n); // at the `in`, not yet advanced
  const target = new VmTarget(vm, { heldPollMs: 5, runningPollMs: 5, parkTimeoutMs: 2000 });
  setTimeout(() => {
    vm.setReg(0, VmReg.RIP, 0x1002n); // bhyve finished; the next VM_RUN applies it
    vm.loop(0);
    vm.loop(0);
  }, 30);
  await target.stop();
  const rip = target.readRegisters(1)[16]!;
  assert.equal(new DataView(rip.buffer, rip.byteOffset).getBigUint64(0, true), 0x1002n);
  await target.close();
});
