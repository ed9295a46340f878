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
import { VmTarget, type VmTargetOptions } from "./target.ts";
import type { Vmmapi } from "./vmmapi.ts";
import { type BootHoldOptions, holdAtBoot } from "./boot_hold.ts";

export { VmTarget, type VmTargetOptions } from "./target.ts";
export * from "./vmmapi.ts";
export { REGISTERS, targetDescription } from "./registers.ts";
export { walk, type WalkResult } from "./page_walk.ts";
export {
  type BootHold,
  type BootHoldOptions,
  type BootHoldOutcome,
  holdAtBoot,
  waitForVm,
} from "./boot_hold.ts";

/** Opens VM `name` and wraps it as a DebugTarget (not yet stopped). Throws VmmError. */
export function openTarget(api: Vmmapi, name: string, options: VmTargetOptions = {}): VmTarget {
  return new VmTarget(api.open(name, { writable: options.allowWrite ?? false }), options);
}

/** Options for {@link waitAndHold}. */
export type WaitOptions = BootHoldOptions;

/**
 * `w` mode: waits for VM `name`, then holds its boot vCPU as early as possible and the rest
 * with it (see {@link holdAtBoot}, which also says whether the guest had run). Resolves with
 * the target held.
 */
export async function waitAndHold(
  api: Vmmapi,
  name: string,
  options: WaitOptions = {},
): Promise<VmTarget> {
  return (await holdAtBoot(api, name, options)).target;
}
