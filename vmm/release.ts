/**
 * `bhyve-gdbstub release --vm NAME`: resumes the vCPUs an earlier bhyve-gdbstub recorded as
 * held (hold_record.ts) and left parked, without serving a debugger. For a server killed with
 * SIGKILL when no new server is wanted; starting a new server does the same on its own.
 *
 * @module
 */
import { HoldRecord, holdRecordPath } from "./hold_record.ts";
import { lockDirectory, lockVm } from "./lock.ts";
import { RunControl } from "./run_control.ts";
import { getLogger } from "../log/mod.ts";
import type { Vmmapi } from "./vmmapi.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** What `release` did, in words for the user, and whether everything recorded runs now. */
export interface ReleaseResult {
  ok: boolean;
  message: string;
}

/**
 * Takes the VM's lock (so no live server is running on it), then resumes the recorded vCPUs
 * that are still parked. vCPUs in the debug set that the record does not list are bhyve's
 * own (APs not yet started) and stay where they are. Throws VmLockError or VmmError.
 */
export async function releaseRecorded(
  api: Vmmapi,
  name: string,
  dir: string = lockDirectory(),
): Promise<ReleaseResult> {
  using _lock = await lockVm(name, { dir });
  const record = new HoldRecord(holdRecordPath(name, dir));
  const vm = api.open(name);
  try {
    const control = new RunControl(vm, (vcpus) => record.write(vcpus));
    let before;
    try {
      before = record.read();
    } catch (error) {
      return { ok: false, message: `cannot use the hold record: ${(error as Error).message}` };
    }
    const resumed = recoverHold(control, record);
    const left = [...control.stranded];
    const bhyves = vm.debugCpus().filter((vcpu) => !left.includes(vcpu));
    const parts: string[] = [];
    if (before === undefined || before.vcpus.length === 0) {
      parts.push(`no vCPUs of VM ${name} are recorded as held by a bhyve-gdbstub`);
    } else if (resumed.length > 0) {
      parts.push(`resumed vCPUs ${resumed.join(", ")} of VM ${name}`);
    } else if (left.length === 0) {
      parts.push(`the vCPUs recorded (${before.vcpus.join(", ")}) already run`);
    }
    if (left.length > 0) {
      parts.push(`vCPUs ${left.join(", ")} could not be resumed (vm_resume_cpu failed)`);
    }
    if (bhyves.length > 0) parts.push(`bhyve itself holds vCPUs ${bhyves.join(", ")}`);
    return { ok: left.length === 0, message: parts.join("; ") };
  } finally {
    record.close();
    vm.close();
  }
}

/**
 * Takes the vCPUs `record` lists (a server killed while holding them) as `control`'s own
 * and resumes them; returns those resumed. Those that will not resume stay stranded.
 */
export function recoverHold(control: RunControl, record: HoldRecord): number[] {
  let left;
  try {
    left = record.read();
  } catch (error) {
    log.warn("cannot read {path}: {error}", { path: record.path, error: String(error) });
    return [];
  }
  if (left === undefined || left.vcpus.length === 0) {
    control.adopt([]); // a fresh, empty record
    return [];
  }
  const taken = control.adopt(left.vcpus);
  const resumed = control.retryStranded();
  log.debug("{path}: process {pid} left {vcpus}; still parked {taken}; resumed {resumed}", {
    path: record.path,
    pid: left.pid,
    vcpus: left.vcpus,
    taken,
    resumed,
  });
  return resumed.filter((vcpu) => taken.includes(vcpu));
}
