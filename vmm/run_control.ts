/**
 * Suspend/resume bookkeeping that respects bhyve's own use of the debug set (vmm-facts.md §4).
 *
 * bhyve keeps its not-yet-started APs in the same kernel debug set that a debugger suspends
 * vCPUs into, and resumes an AP itself when the guest sends it a SIPI. So this class:
 * snapshots vm_debug_cpus before suspending, suspends only active vCPUs not already in the set
 * (remembering them as its own), never calls vm_resume_all_cpus, and on release resumes only
 * its own. While the VM is held, {@link RunControl.poll} notices a vCPU bhyve released or a
 * vCPU newly activated and holds it too; on release such a vCPU runs, as bhyve meant, while
 * one still in bhyve's hands stays in the set.
 *
 * bhyve also takes running APs back: an INIT IPI makes it vm_suspend_cpu the AP (14 and 15,
 * and 13-stable: amd64/vmexit.c vmexit_ipi) until the SIPI resets and resumes it. Such an AP,
 * found in the debug set at the next hold after this debugger let it run, is bhyve's (never
 * resumed by this debugger), and was parked by bhyve only just: {@link takeFreshlyParked}
 * names it so the stop waits for it to park like a vCPU this debugger suspended. What no
 * separate process can tell: an INIT that lands on an AP this debugger already holds (bhyve
 * emulating it after the stop, or a vCPU let run alone sending it) sets a bit already set, so
 * that AP is resumed as this debugger's.
 *
 * Pure bookkeeping over a {@link VmHandle}: no timers here (the target drives them).
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import { isGone, type VmHandle, VmmError } from "./vmmapi.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** What the debugger sees of one vCPU. */
export type VcpuHold = "held by debugger" | "held by bhyve" | "running" | "inactive";

/** The vCPUs that changed hands during a poll (their state may have changed: drop caches). */
export interface PollResult {
  /** Suspended by this poll: released by bhyve, newly active, or resumed by someone else. */
  suspended: number[];
  /** Newly found in bhyve's hands (activated straight into the debug set). */
  adopted: number[];
}

/** The hold on one VM. */
export class RunControl {
  #vm: VmHandle;
  #held = false;
  #mine = new Set<number>();
  #bhyves = new Set<number>();
  /** Ours, released but not resumed (vm_resume_cpu failed): retried until they run. */
  #stranded = new Set<number>();
  #record: (vcpus: number[]) => void;
  /** Ours, let run while the rest stays held (a per-thread resume): the poll leaves them be. */
  #free = new Set<number>();
  /** vCPUs this debugger let run since the last hold (resumed or freed). */
  #ran = new Set<number>();
  /** Of those, the ones bhyve parked meanwhile (an INIT), not yet taken by the target. */
  #freshlyParked = new Set<number>();

  /**
   * `record` is told which vCPUs are ours before each suspend and after each resume (see
   * hold_record.ts), so a server killed outright leaves a list of them behind.
   */
  constructor(vm: VmHandle, record: (vcpus: number[]) => void = () => {}) {
    this.#vm = vm;
    this.#record = record;
  }

  /** Records the vCPUs that are ours now, plus `more` about to be. */
  #note(more: Iterable<number> = []): void {
    this.#record([...this.#mine, ...this.#stranded, ...more]);
  }

  /**
   * Takes `vcpus` (left by an earlier server killed while it held them: hold_record.ts) as
   * stranded vCPUs of ours, where they are still in the debug set; returns those taken. Call
   * before the first {@link hold}; {@link retryStranded} then resumes them.
   */
  adopt(vcpus: readonly number[]): number[] {
    const debug = new Set(this.#vm.debugCpus());
    const taken = vcpus.filter((vcpu) => debug.has(vcpu) && !this.#held);
    for (const vcpu of taken) this.#stranded.add(vcpu);
    this.#note();
    return taken;
  }

  /** Whether the VM is held (between {@link hold} and {@link release}). */
  get held(): boolean {
    return this.#held;
  }

  /** vCPUs let run while the VM is otherwise held ({@link release} with a list). */
  get free(): ReadonlySet<number> {
    return this.#free;
  }

  /** vCPUs this debugger suspended and will resume. */
  get mine(): ReadonlySet<number> {
    return this.#mine;
  }

  /** vCPUs that were already in the debug set (bhyve's); never resumed by this debugger. */
  get bhyves(): ReadonlySet<number> {
    return this.#bhyves;
  }

  /**
   * vCPUs this debugger suspended whose resume failed at release: still parked because of
   * us. {@link retryStranded} tries again; a later {@link hold} takes them back as its own.
   */
  get stranded(): ReadonlySet<number> {
    return this.#stranded;
  }

  /**
   * Takes `vcpu` as this debugger's before the next {@link hold}: it is in the debug set
   * because this process suspended it outside a hold (`w` mode catching the boot vCPU), so
   * the hold must count it as ours, to resume, and not as bhyve's.
   */
  claim(vcpu: number): void {
    if (this.#held) this.#mine.add(vcpu);
    else this.#stranded.add(vcpu);
  }

  /**
   * The vCPUs found in bhyve's hands that this debugger had let run (bhyve parked them since,
   * at an INIT): they may not have parked yet. Each is named once.
   */
  takeFreshlyParked(): number[] {
    const taken = [...this.#freshlyParked];
    this.#freshlyParked.clear();
    return taken;
  }

  /** How `vcpu` stands now, as far as this debugger knows. */
  state(vcpu: number, active: readonly number[]): VcpuHold {
    if (this.#free.has(vcpu)) return "running";
    if (this.#mine.has(vcpu)) return "held by debugger";
    if (this.#bhyves.has(vcpu)) return "held by bhyve";
    return active.includes(vcpu) ? "running" : "inactive";
  }

  /**
   * Suspends every active vCPU not already in the debug set; returns the ones suspended.
   * Holding an already-held VM just polls.
   */
  hold(): number[] {
    if (this.#held) {
      // Take back what a per-thread resume let run.
      this.#free.clear();
      const suspended = this.poll().suspended;
      this.#ran.clear();
      return suspended;
    }
    const debug = new Set(this.#vm.debugCpus());
    const active = this.#vm.activeCpus();
    this.#held = true;
    // Our own stranded vCPUs are in the debug set because of us, not bhyve: still ours.
    for (const vcpu of this.#stranded) {
      if (debug.has(vcpu)) this.#mine.add(vcpu);
      debug.delete(vcpu);
    }
    this.#stranded.clear();
    this.#bhyves = new Set([...debug].filter((vcpu) => !this.#mine.has(vcpu)));
    for (const vcpu of this.#bhyves) if (this.#ran.has(vcpu)) this.#freshlyParked.add(vcpu);
    this.#ran.clear();
    const suspended: number[] = [];
    const wanted = active.filter((vcpu) => !debug.has(vcpu));
    this.#note(wanted); // one write for the whole batch, before the first suspend
    for (const vcpu of wanted) {
      if (this.#suspend(vcpu, true)) suspended.push(vcpu);
    }
    this.#note();
    log.debug("held VM {name}: suspended {mine}, bhyve holds {bhyves}", {
      name: this.#vm.name,
      mine: [...this.#mine],
      bhyves: [...this.#bhyves],
    });
    return suspended;
  }

  /** While held: holds whatever bhyve released or activated since the last look. */
  poll(): PollResult {
    const result: PollResult = { suspended: [], adopted: [] };
    if (!this.#held) return result;
    const debug = new Set(this.#vm.debugCpus());
    const active = this.#vm.activeCpus();
    for (const vcpu of [...this.#bhyves]) {
      if (!debug.has(vcpu)) {
        // bhyve started this AP: it is meant to run, so it is ours to resume from now on.
        this.#bhyves.delete(vcpu);
        if (this.#suspend(vcpu)) {
          result.suspended.push(vcpu);
          debug.add(vcpu);
        }
      }
    }
    for (const vcpu of active) {
      if (this.#bhyves.has(vcpu) || this.#free.has(vcpu)) continue;
      if (this.#mine.has(vcpu)) {
        if (!debug.has(vcpu) && this.#suspend(vcpu)) result.suspended.push(vcpu);
      } else if (debug.has(vcpu)) {
        this.#bhyves.add(vcpu);
        if (this.#ran.has(vcpu)) this.#freshlyParked.add(vcpu);
        result.adopted.push(vcpu);
      } else if (this.#suspend(vcpu)) {
        result.suspended.push(vcpu);
      }
    }
    if (result.suspended.length > 0 || result.adopted.length > 0) {
      log.debug("while held: suspended {suspended}, bhyve holds new {adopted}", {
        suspended: result.suspended,
        adopted: result.adopted,
      });
    }
    return result;
  }

  /**
   * Looks once more (so an AP bhyve released meanwhile runs too), then resumes exactly the
   * vCPUs this debugger suspended. bhyve's stay in the debug set.
   *
   * With `only`, resumes just those (of ours) and keeps the VM held otherwise: the poll leaves
   * them running, and the next {@link hold} suspends them again.
   */
  release(only?: readonly number[]): number[] {
    if (!this.#held) return [];
    if (only !== undefined) return this.#releaseSome(only);
    try {
      this.poll();
    } catch (error) {
      // A failed look must never keep what we already hold parked: resume it regardless.
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      log.warn("release: cannot look for new vCPUs: {error}", { error: error.message });
    }
    const resumed: number[] = [];
    for (const vcpu of this.#mine) {
      if (this.#resume(vcpu) || this.#resume(vcpu)) resumed.push(vcpu);
      else this.#stranded.add(vcpu);
    }
    for (const vcpu of [...resumed, ...this.#free]) this.#ran.add(vcpu);
    log.debug("released VM {name}: resumed {resumed}, bhyve keeps {bhyves}", {
      name: this.#vm.name,
      resumed,
      bhyves: [...this.#bhyves],
    });
    this.#mine.clear();
    this.#bhyves.clear();
    this.#free.clear();
    this.#held = false;
    this.#note();
    return resumed;
  }

  #releaseSome(only: readonly number[]): number[] {
    const resumed: number[] = [];
    for (const vcpu of only) {
      if (!this.#mine.has(vcpu)) continue; // bhyve's stays bhyve's
      if (this.#resume(vcpu) || this.#resume(vcpu)) {
        this.#mine.delete(vcpu);
        this.#free.add(vcpu);
        this.#ran.add(vcpu);
        resumed.push(vcpu);
      }
    }
    this.#note();
    log.debug("released vCPUs {resumed} of VM {name}; the others stay held", {
      resumed,
      name: this.#vm.name,
    });
    return resumed;
  }

  /**
   * Tries again to resume the stranded vCPUs; returns those that now run. One no longer in
   * the debug set (someone resumed it) is forgotten.
   */
  retryStranded(): number[] {
    const resumed: number[] = [];
    if (this.#held || this.#stranded.size === 0) return resumed;
    let debug: Set<number>;
    try {
      debug = new Set(this.#vm.debugCpus());
    } catch (error) {
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      return resumed;
    }
    for (const vcpu of [...this.#stranded]) {
      if (!debug.has(vcpu)) {
        this.#stranded.delete(vcpu);
        resumed.push(vcpu);
      } else if (this.#resume(vcpu, true)) {
        this.#stranded.delete(vcpu);
        resumed.push(vcpu);
      }
    }
    if (resumed.length > 0) log.info("resumed vCPUs {resumed} on a retry", { resumed });
    this.#note();
    return resumed;
  }

  /** Forgets everything without a call (the VM is gone). */
  abandon(): void {
    this.#free.clear();
    this.#ran.clear();
    this.#freshlyParked.clear();
    this.#mine.clear();
    this.#bhyves.clear();
    this.#stranded.clear();
    this.#held = false;
    this.#note();
  }

  #resume(vcpu: number, retrying = false): boolean {
    try {
      this.#vm.resumeCpu(vcpu);
      return true;
    } catch (error) {
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      const message = "cannot resume vCPU {vcpu}: {error}";
      if (retrying) log.debug(message, { vcpu, error: error.message });
      else log.warn(message, { vcpu, error: error.message });
      return false;
    }
  }

  /** Suspends `vcpu` as ours, recording it first unless the caller already has (`noted`). */
  #suspend(vcpu: number, noted = false): boolean {
    if (!noted) this.#note([vcpu]);
    try {
      this.#vm.suspendCpu(vcpu);
      this.#mine.add(vcpu);
      return true;
    } catch (error) {
      this.#note();
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      // EINVAL: the vCPU went inactive between the two looks; the next poll sees it.
      log.debug("cannot suspend vCPU {vcpu}: {error}", { vcpu, error: error.message });
      return false;
    }
  }
}
