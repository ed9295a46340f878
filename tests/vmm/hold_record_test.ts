/**
 * The hold record (vmm/hold_record.ts): written before each suspend and after each resume, read
 * back by the next server or by `release`, which resume only the vCPUs it lists (bhyve's parked
 * APs are never in it). Against the fake VM; exits_test.ts does the same with the real server.
 */
import assert from "node:assert/strict";
import { HoldRecord, holdRecordPath, parseHoldRecord } from "../../vmm/hold_record.ts";
import { releaseRecorded } from "../../vmm/release.ts";
import { RunControl } from "../../vmm/run_control.ts";
import { VmTarget } from "../../vmm/target.ts";
import type { Vmmapi } from "../../vmm/vmmapi.ts";
import { FakeVm } from "./fake_vmm.ts";

async function withDir(f: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the record lists a vCPU before it is suspended, and drops it after its resume", () =>
  withDir((dir) => {
    const record = new HoldRecord(holdRecordPath("fake", dir));
    const vm = new FakeVm({ active: [0, 1, 2], debug: [2] });
    const seen: string[] = [];
    const suspend = vm.suspendCpu.bind(vm);
    vm.suspendCpu = (vcpu) => {
      seen.push(`${vcpu}: ${JSON.stringify(record.read()?.vcpus)}`);
      suspend(vcpu);
    };
    const rc = new RunControl(vm, (vcpus) => record.write(vcpus));
    rc.hold();
    assert.deepEqual(seen, ["0: [0,1]", "1: [0,1]"], "recorded before the first suspend");
    assert.deepEqual(record.read(), { pid: Deno.pid, vcpus: [0, 1] });
    rc.release();
    assert.deepEqual(record.read(), { pid: Deno.pid, vcpus: [] });
    assert.equal(parseHoldRecord("{not json"), undefined);
    assert.equal(parseHoldRecord('{"pid":1,"vcpus":[-1]}'), undefined);
  }));

Deno.test("a new target resumes what the record lists, never bhyve's parked AP", () =>
  withDir(async (dir) => {
    const path = holdRecordPath("fake", dir);
    // A server killed while it held vCPUs 0 and 1; vCPU 2 is an AP bhyve keeps parked.
    await Deno.writeTextFile(path, '{"pid":1,"vcpus":[0,1]}\n');
    const vm = new FakeVm({ active: [0, 1, 2], debug: [0, 1, 2] });
    const target = new VmTarget(vm, { record: new HoldRecord(path) });
    assert.deepEqual([...vm.debug], [2]);
    assert.ok(!vm.calls.includes("vm_resume_cpu 2"));
    assert.deepEqual(parseHoldRecord(await Deno.readTextFile(path))?.vcpus, []);
    await target.stop();
    assert.deepEqual(parseHoldRecord(await Deno.readTextFile(path))?.vcpus, [0, 1]);
    await target.close();
    assert.deepEqual(parseHoldRecord(await Deno.readTextFile(path))?.vcpus, []);
  }));

Deno.test("release: resumes the recorded vCPUs, says what bhyve holds, and is idempotent", () =>
  withDir(async (dir) => {
    await Deno.writeTextFile(holdRecordPath("fake", dir), '{"pid":1,"vcpus":[0,1,3]}\n');
    // vCPU 3 was resumed by someone since: it is just forgotten.
    const vm = new FakeVm({ active: [0, 1, 2, 3], debug: [0, 1, 2] });
    const api: Vmmapi = { generation: "0200", path: "fake", open: () => vm, close() {} };
    assert.deepEqual(await releaseRecorded(api, "fake", dir), {
      ok: true,
      message: "resumed vCPUs 0, 1 of VM fake; bhyve itself holds vCPUs 2",
    });
    assert.deepEqual([...vm.debug], [2]);
    assert.deepEqual(await releaseRecorded(api, "fake", dir), {
      ok: true,
      message: "no vCPUs of VM fake are recorded as held by a bhyve-gdbstub; " +
        "bhyve itself holds vCPUs 2",
    });
    assert.deepEqual([...vm.debug], [2]);
  }));

Deno.test("a record that is a symlink is not believed", () =>
  withDir(async (dir) => {
    const elsewhere = `${dir}/planted`;
    await Deno.writeTextFile(elsewhere, '{"pid":1,"vcpus":[2]}\n');
    await Deno.symlink(elsewhere, holdRecordPath("fake", dir));
    const vm = new FakeVm({ active: [0, 1, 2], debug: [2] });
    new VmTarget(vm, { record: new HoldRecord(holdRecordPath("fake", dir)) });
    assert.deepEqual([...vm.debug], [2], "bhyve's AP stays parked");
  }));

Deno.test("after the first write the record is rewritten in place, longer or shorter, and reads back exactly", () =>
  withDir((dir) => {
    const path = holdRecordPath("inplace", dir);
    const record = new HoldRecord(path);
    try {
      record.write([0, 1, 2, 3, 10, 11]);
      const inode = Deno.statSync(path).ino;
      for (const vcpus of [[1], [], [5, 6, 7, 8, 9, 100, 127], [2]]) {
        record.write(vcpus);
        // A fresh reader, as the next server or `release` would be.
        assert.deepEqual(new HoldRecord(path).read(), { pid: Deno.pid, vcpus });
        assert.equal(Deno.statSync(path).ino, inode, "no rename after the first write");
      }
      assert.deepEqual(Deno.readDirSync(dir).map((e) => e.name).toArray(), [
        "bhyve-gdbstub.inplace.held",
      ]);
    } finally {
      record.close();
    }
  }));
