/**
 * `w` mode: hold a VM's boot vCPU as early as a process outside bhyve can, and say honestly
 * whether the guest had run before the hold.
 *
 * On FreeBSD 14 and 15, bhyve activates every vCPU straight into the debug set, loops each
 * thread through VM_RUN -> debug exit -> usleep(1000), and only after the rest of its set-up
 * calls vm_resume_cpu on the boot vCPU (BSP). Between that resume and the thread's next
 * VM_RUN (up to the rest of one 1 ms sleep) the BSP is out of the debug set but has not run:
 * watching the debug set without pause and suspending the BSP the moment bhyve lets go holds
 * it at its first instruction. On 13.x bhyve never puts the BSP in the debug set, so it has
 * run before anyone can hold it. docs/bhyve-facts.md, "Start-up", has the sources.
 *
 * The verdict comes from registers: RIP (and the CS base) read while bhyve still held the BSP,
 * against the same once this process holds it and it has parked.
 *
 * @module
 */
import { getLogger } from "../log/mod.ts";
import { VmTarget, type VmTargetOptions } from "./target.ts";
import { sleep, yieldTurn } from "./sleep.ts";
import { type VmHandle, type Vmmapi, VmmError, VmReg } from "./vmmapi.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** The boot vCPU. */
const BSP = 0;

/** Options for {@link holdAtBoot}. */
export interface BootHoldOptions extends VmTargetOptions {
  /** Cancels the wait. */
  signal?: AbortSignal;
  /** How often to look for the VM's device node and for its active vCPUs (ms); default 1. */
  intervalMs?: number;
  /**
   * How long to watch the debug set without pause, once the BSP is active and held by bhyve,
   * for bhyve to let it go (ms); default 10000. After that the watch goes on every
   * `intervalMs`, and the hold is likely to come after the guest ran.
   */
  watchMs?: number;
}

/** Where the boot vCPU was held. */
export type BootHoldOutcome =
  /** bhyve had not let the BSP run yet: it is at the instruction it boots from. */
  | "first-instruction"
  /** The guest had run: RIP differs from what it was while bhyve held it. */
  | "after-run"
  /** The BSP was running when it appeared (13.x, or the VM had started earlier). */
  | "running";

/** The result of {@link holdAtBoot}: the target, held, and what the user is told. */
export interface BootHold {
  target: VmTarget;
  outcome: BootHoldOutcome;
  /** One line for the user. */
  message: string;
  /** The BSP's linear RIP (CS base + RIP) while bhyve held it, if it did. */
  startRip?: bigint;
  /** The BSP's linear RIP once held by this process and parked. */
  heldRip: bigint;
}

/** The BSP's code address: CS base + RIP, and the RIP alone for messages. */
interface Place {
  linear: bigint;
  rip: bigint;
}

function place(vm: VmHandle): Place {
  const rip = vm.getRegister(BSP, VmReg.RIP);
  const csBase = vm.getSegDesc(BSP, VmReg.CS).base;
  return { linear: (csBase + rip) & 0xffff_ffff_ffff_ffffn, rip };
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/**
 * Waits for VM `name` to appear, opens it once, and holds its boot vCPU as early as possible
 * (then every other vCPU, as an attach does). Throws VmmError if vm_open fails (EACCES or
 * EPERM: not root).
 */
export async function holdAtBoot(
  api: Vmmapi,
  name: string,
  options: BootHoldOptions = {},
): Promise<BootHold> {
  const interval = options.intervalMs ?? 1;
  await waitForNode(api, name, interval, options.signal);
  const vm = await openOnce(api, name, interval, options);
  const target = new VmTarget(vm, options);
  try {
    while (!vm.activeCpus().includes(BSP)) {
      if (target.gone !== undefined) break;
      await sleep(interval, options.signal);
    }
    let start: Place | undefined;
    if (inBhyvesHands(vm, api)) {
      // bhyve holds it (14 and later): remember where it starts, then watch for the release.
      start = place(vm);
      await watchRelease(vm, options.watchMs ?? 10_000, interval, options.signal);
    } else {
      vm.suspendCpu(BSP);
    }
    target.control.claim(BSP);
    target.parking.suspended([BSP]);
    await target.stop();
    const held = place(vm);
    return { target, ...verdict(start, held), heldRip: held.linear };
  } catch (error) {
    await target.close().catch(() => {});
    throw error;
  }
}

/**
 * Whether bhyve holds the BSP in the debug set. bhyve 14 and later activate it and suspend it
 * back to back (fbsdrun_addcpu), so a BSP seen active but not yet suspended gets a few
 * milliseconds to appear there before it counts as running; 13.x's bhyve (API 0103) never puts
 * it there.
 */
function inBhyvesHands(vm: VmHandle, api: Vmmapi): boolean {
  if (vm.debugCpus().includes(BSP)) return true;
  if (api.generation === "0103") return false;
  const until = performance.now() + ACTIVATE_TO_SUSPEND_MS;
  while (performance.now() < until) if (vm.debugCpus().includes(BSP)) return true;
  return false;
}

/** How long bhyve may take from vm_activate_cpu to vm_suspend_cpu on the BSP (generous). */
const ACTIVATE_TO_SUSPEND_MS = 5;

function verdict(
  start: Place | undefined,
  held: Place,
): { outcome: BootHoldOutcome; message: string; startRip?: bigint } {
  if (start === undefined) {
    return {
      outcome: "running",
      message: `vCPU 0 was already running when this process first saw it (bhyve on ` +
        "FreeBSD 13.x starts it outside the debug set; on 14 and later bhyve had released it " +
        `before the watch began): held after the guest ran, at RIP ${hex(held.rip)}`,
    };
  }
  if (start.linear === held.linear) {
    return {
      outcome: "first-instruction",
      message: `held at the first instruction: vCPU 0 at RIP ${hex(held.rip)}, where bhyve ` +
        "had it before letting it run",
      startRip: start.linear,
    };
  }
  return {
    outcome: "after-run",
    message: `held after the guest ran (RIP moved from ${hex(start.rip)} to ${hex(held.rip)})`,
    startRip: start.linear,
  };
}

/**
 * Watches the debug set without pause until bhyve resumes the BSP, then suspends it at once;
 * gives the event loop a turn (microseconds: signals, aborts) every 20 ms, and after `watchMs`
 * slows down to one look per `interval`.
 */
async function watchRelease(
  vm: VmHandle,
  watchMs: number,
  interval: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const began = performance.now();
  let turn = began;
  for (;;) {
    if (!vm.debugCpus().includes(BSP)) {
      vm.suspendCpu(BSP);
      return;
    }
    const now = performance.now();
    if (now - began > watchMs) {
      await sleep(interval, signal);
    } else if (now - turn > 20) {
      turn = now;
      await yieldTurn(signal);
    }
  }
}

/** Waits until the VM's device node exists (cheap: a stat, never vm_open). */
async function waitForNode(
  api: Vmmapi,
  name: string,
  interval: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const path = api.devicePath?.(name);
  if (path === undefined) return;
  let logged = false;
  for (;;) {
    signal?.throwIfAborted();
    try {
      Deno.statSync(path);
      return;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (!logged) log.debug("waiting for {path}", { path });
    logged = true;
    await sleep(interval, signal);
  }
}

/**
 * vm_open once the node exists. Only without a node path (a library that cannot say where
 * its VMs live) is vm_open itself polled.
 */
function openOnce(
  api: Vmmapi,
  name: string,
  interval: number,
  options: BootHoldOptions,
): Promise<VmHandle> {
  const writable = options.allowWrite ?? false;
  if (api.devicePath !== undefined) return Promise.resolve(api.open(name, { writable }));
  return waitForVm(api, name, {
    signal: options.signal,
    intervalMs: Math.max(interval, 20),
    writable,
  });
}

/**
 * Polls vm_open until VM `name` exists; other errors than ENOENT are thrown. Never use it
 * where the library can name the device node: on FreeBSD 15, vm_open may load vmm.ko and
 * opens /dev/vmmctl first.
 */
export async function waitForVm(
  api: Vmmapi,
  name: string,
  options: { signal?: AbortSignal | undefined; intervalMs?: number; writable?: boolean } = {},
): Promise<VmHandle> {
  const interval = options.intervalMs ?? 20;
  let logged = false;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      return api.open(name, { writable: options.writable ?? false });
    } catch (error) {
      if (!(error instanceof VmmError) || error.code !== "ENOENT") throw error;
      if (!logged) log.debug("waiting for VM {name} to appear", { name });
      logged = true;
    }
    await sleep(interval, options.signal);
  }
}
