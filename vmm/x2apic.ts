/**
 * Whether a vCPU's local APIC can be read as memory.
 *
 * vmm's vm_readwrite_kernemu_device reaches the local APIC through lapic_mmio_read, and
 * vlapic_read answers a memory-mapped access with 0 and no error when the local APIC is in
 * x2APIC mode (its registers are MSRs then). A separate process cannot read the guest's
 * IA32_APIC_BASE, but it can tell: vm_get_x2apic_state says whether bhyve lets the guest use
 * x2APIC mode at all (bhyve -x), and the version register (offset 0x30) is never 0 in xAPIC
 * mode (it holds the version and the LVT count), so a 0 there means x2APIC mode.
 *
 * @module
 */
import type { VmHandle } from "./vmmapi.ts";

/** What the user is told instead of zeros. */
export const X2APIC_NOTE = "the local APIC is in x2APIC mode: not memory-mapped";

/** The local APIC's version register (guest-physical). */
const LAPIC_VERSION_GPA = 0xfee0_0030n;

/** vm_get_x2apic_state per VM and vCPU: bhyve sets it once, before the vCPU runs. */
const allowedCache = new WeakMap<VmHandle, Map<number, boolean>>();

function allowed(vm: VmHandle, vcpu: number): boolean {
  let perVcpu = allowedCache.get(vm);
  if (perVcpu === undefined) allowedCache.set(vm, perVcpu = new Map());
  let value = perVcpu.get(vcpu);
  if (value === undefined) perVcpu.set(vcpu, value = vm.x2apicAllowed?.(vcpu) === true);
  return value;
}

/**
 * Whether `vcpu`'s local APIC is in x2APIC mode (so kernemu reads return zeros). Costs one
 * kernemu read where bhyve allows x2APIC mode; callers that already read a non-zero value
 * from the local APIC know the answer is no and need not ask.
 */
export function inX2apicMode(vm: VmHandle, vcpu: number): boolean {
  if (!allowed(vm, vcpu)) return false;
  return vm.readKernemu(vcpu, LAPIC_VERSION_GPA, 4) === 0n;
}
