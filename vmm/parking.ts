/**
 * Knowing when a suspended vCPU has parked, so that its registers are the ones it resumes with.
 *
 * vm_suspend_cpu only puts a vCPU in the debug set. If bhyve's thread is still emulating the
 * vCPU's last exit in userspace (an `in` from a slow device, say), the kernel has not yet
 * applied the result: RIP still points at the instruction and, for an `in`, RAX is not yet
 * what bhyve set. vmm applies both at the start of the thread's next VM_RUN, which then
 * returns at once with a debug exit (docs/bhyve-facts.md, "Pending exits").
 *
 * A separate process sees that through vmm's VMEXIT_USERSPACE counter, which grows by one
 * each time VM_RUN returns to bhyve's thread. Two returns after the suspend mean that a whole
 * VM_RUN began after it, saw the debug set and parked: the first return may belong to a
 * VM_RUN that entered the guest before the suspend (its exit then still pending), the second
 * cannot. Without the counter, the tool waits a bounded time and says it could not tell.
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import { yieldTurn } from "./sleep.ts";
import { isGone, type VmHandle, VmmError } from "./vmmapi.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** How many VM_RUN returns after the suspend prove the vCPU parked. */
const RETURNS_TO_PARK = 2n;

/** For how long {@link ParkTracker.settle} looks again without a timer (ms). */
const QUICK_LOOK_MS = 5;

/** Tracks the vCPUs suspended since the last hold until each has parked. */
export class ParkTracker {
  #vm: VmHandle;
  /** vCPU -> the counter right after it was suspended (null: no counter on this host). */
  #pending = new Map<number, bigint | null>();

  constructor(vm: VmHandle) {
    this.#vm = vm;
  }

  /** Remembers where `vcpus`' counters stood right after they were suspended. */
  suspended(vcpus: readonly number[]): void {
    // A VmHandle without the counter at all (a test double) knows no pending exits.
    if (this.#vm.userspaceExits === undefined) return;
    for (const vcpu of vcpus) this.#pending.set(vcpu, this.#count(vcpu) ?? null);
  }

  /** Forgets everything (the VM runs again, or is gone). */
  clear(): void {
    this.#pending.clear();
  }

  /** vCPUs suspended but not yet known to have parked. */
  get pending(): number[] {
    return [...this.#pending.keys()];
  }

  /** Whether `vcpu` has parked since it was suspended (true if it was never pending). */
  parked(vcpu: number): boolean {
    if (!this.#pending.has(vcpu)) return true;
    const base = this.#pending.get(vcpu);
    if (base === null || base === undefined) return false;
    const now = this.#count(vcpu);
    if (now === undefined || now - base < RETURNS_TO_PARK) return false;
    this.#pending.delete(vcpu);
    return true;
  }

  /**
   * Waits until every pending vCPU has parked, or `timeoutMs` passed (then the rest stay
   * pending and their snapshots are not cached). Resolves with those still pending.
   */
  async settle(timeoutMs: number, intervalMs = 1): Promise<number[]> {
    const started = performance.now();
    const deadline = started + timeoutMs;
    for (;;) {
      const left = this.pending.filter((vcpu) => !this.parked(vcpu));
      const countable = left.filter((vcpu) => this.#pending.get(vcpu) !== null);
      if (countable.length === 0) {
        // Without the counter nothing tells when they park: one bhyve loop (1 ms) is the
        // least it takes; give it a few, then treat them as parked.
        if (left.length > 0) {
          await delay(Math.min(timeoutMs, 5));
          for (const vcpu of left) this.#pending.delete(vcpu);
        }
        return [];
      }
      if (performance.now() >= deadline) {
        log.warn(
          "vCPUs {vcpus} have not parked after {ms} ms (bhyve is still emulating their last " +
            "exit): their registers are read again until they have",
          { vcpus: countable, ms: timeoutMs },
        );
        return countable;
      }
      // bhyve parks a vCPU within two of its 1 ms sleeps: for the first few ms look again
      // without a timer (one costs 2.1 ms in Deno here, measured), then once per interval.
      if (performance.now() - started < QUICK_LOOK_MS) await yieldTurn(undefined);
      else await delay(intervalMs);
    }
  }

  #count(vcpu: number): bigint | undefined {
    try {
      return this.#vm.userspaceExits?.(vcpu);
    } catch (error) {
      if (isGone(error) || !(error instanceof VmmError)) throw error;
      log.debug("vCPU {vcpu}: no exit counter: {error}", { vcpu, error: error.message });
      return undefined;
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
