/**
 * Looks at a test VM's guest from the test process, through the real libvmmapi (the way a
 * second debugger-like process would): per-vCPU counters in guest RAM and the debug set, to
 * tell whether the guest runs.
 *
 * @module
 */
import { loadVmmapi } from "../../ffi/mod.ts";
import type { VmHandle, Vmmapi } from "../../vmm/vmmapi.ts";
import { PC_COUNTER, percpuPhys } from "../testvm/layout.ts";
import { LIBVMMAPI, type TestVm } from "./testvm.ts";

export class GuestProbe implements Disposable {
  readonly #api: Vmmapi;
  readonly #vm: VmHandle;
  readonly #word = new Uint8Array(8);

  private constructor(api: Vmmapi, vm: VmHandle) {
    this.#api = api;
    this.#vm = vm;
  }

  /**
   * Opens `vm` by name in this process (sets TESTVM_DIR here); `writable` maps guest RAM for
   * {@link setU32}.
   */
  static open(vm: TestVm, writable = false): GuestProbe {
    vm.useDirHere();
    const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
    return new GuestProbe(api, api.open(vm.name, { writable }));
  }

  /** vCPU `cpu`'s loop counter, straight from guest RAM. */
  counter(cpu: number): bigint {
    this.#vm.readRam(percpuPhys(cpu, PC_COUNTER), this.#word);
    return new DataView(this.#word.buffer).getBigUint64(0, true);
  }

  /** A u32 of guest RAM (the guest's knobs, tests/testvm/guest/README.md). */
  u32(gpa: bigint): number {
    const word = new Uint8Array(4);
    this.#vm.readRam(gpa, word);
    return new DataView(word.buffer).getUint32(0, true);
  }

  /** Writes a u32 of guest RAM, as a test harness turning one of the guest's knobs (writable). */
  setU32(gpa: bigint, value: number): void {
    const word = new Uint8Array(4);
    new DataView(word.buffer).setUint32(0, value, true);
    this.#vm.writeRam!(gpa, word);
  }

  /** Waits until the u32 at `gpa` reads `want`; false if it does not within `withinMs`. */
  async waitU32(gpa: bigint, want: number, withinMs = 20_000): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    while (this.u32(gpa) !== want) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return true;
  }

  /** vCPUs in the debug set (held by a debugger or by bhyve). */
  debugCpus(): number[] {
    return this.#vm.debugCpus();
  }

  /** Whether every one of `cpus` advances its counter within `withinMs`. */
  async running(cpus: number[], withinMs = 5000): Promise<boolean> {
    const before = cpus.map((cpu) => this.counter(cpu));
    const deadline = Date.now() + withinMs;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (cpus.every((cpu, i) => this.counter(cpu) > before[i]!)) return true;
    }
    return false;
  }

  /** Whether none of `cpus` advances its counter during `forMs`. */
  async stopped(cpus: number[], forMs = 300): Promise<boolean> {
    const before = cpus.map((cpu) => this.counter(cpu));
    await new Promise((resolve) => setTimeout(resolve, forMs));
    return cpus.every((cpu, i) => this.counter(cpu) === before[i]);
  }

  /** Whether every one of `cpus` is in the debug set (parked, not entering the guest). */
  held(cpus: number[]): boolean {
    const held = this.debugCpus();
    return cpus.every((cpu) => held.includes(cpu));
  }

  /** Waits until `held(cpus)` becomes `want`; false if it does not within `withinMs`. */
  async waitHeld(cpus: number[], want = true, withinMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + withinMs;
    while (this.held(cpus) !== want) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return true;
  }

  [Symbol.dispose](): void {
    this.#vm.close();
    this.#api.close();
  }
}
