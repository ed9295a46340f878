/**
 * vmm/: the VM model a debugger needs, implementing rsp/'s DebugTarget over the abstract
 * {@link Vmmapi} (ffi/ provides the real one).
 *
 * @example
 * import { loadVmmapi } from "../ffi/mod.ts";
 * import { openTarget } from "./mod.ts";
 * const api = loadVmmapi({ path: options.vmmapi });
 * const target = openTarget(api, "freebsd14");
 * // … serve target with rsp/ …
 * await target.close();
 * api.close();
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { VmTarget, type VmTargetOptions } from "./target.ts";
import { type VmHandle, type Vmmapi, VmmError } from "./vmmapi.ts";

export { VmTarget, type VmTargetOptions } from "./target.ts";
export * from "./vmmapi.ts";
export { REGISTERS, targetDescription } from "./registers.ts";
export { walk, type WalkResult } from "./page_walk.ts";

const log = getLogger(["bhyve-gdbstub", "vmm"]);

/** Opens VM `name` and wraps it as a DebugTarget (not yet stopped). Throws VmmError. */
export function openTarget(api: Vmmapi, name: string, options: VmTargetOptions = {}): VmTarget {
  return new VmTarget(api.open(name, { writable: options.allowWrite ?? false }), options);
}

/** Options for {@link waitForVm} and {@link waitAndHold}. */
export interface WaitOptions extends VmTargetOptions {
  /** Cancels the wait. */
  signal?: AbortSignal;
  /** How often to try vm_open, and to look for active vCPUs (ms); default 20. */
  intervalMs?: number;
}

/** Polls vm_open until VM `name` exists; other errors than ENOENT are thrown. */
export async function waitForVm(
  api: Vmmapi,
  name: string,
  options: WaitOptions = {},
): Promise<VmHandle> {
  const interval = options.intervalMs ?? 20;
  let logged = false;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      return api.open(name, { writable: options.allowWrite ?? false });
    } catch (error) {
      if (!(error instanceof VmmError) || error.code !== "ENOENT") throw error;
      if (!logged) log.debug("waiting for VM {name} to appear", { name });
      logged = true;
    }
    await sleep(interval, options.signal);
  }
}

/**
 * `w` mode: waits for VM `name`, then holds its vCPUs as soon as any is active (bhyve starts
 * the boot vCPU itself, so this is the earliest stop a separate process can make). Resolves
 * with the target held; the caller prints its note and serves the debugger, whose attach then
 * finds the VM already stopped.
 */
export async function waitAndHold(
  api: Vmmapi,
  name: string,
  options: WaitOptions = {},
): Promise<VmTarget> {
  const interval = options.intervalMs ?? 20;
  const target = new VmTarget(await waitForVm(api, name, options), options);
  try {
    await target.stop();
    while (target.control.mine.size === 0 && target.control.bhyves.size === 0) {
      if (target.gone !== undefined) break;
      await sleep(interval, options.signal);
      target.control.poll();
    }
    return target;
  } catch (error) {
    await target.close().catch(() => {});
    throw error;
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
