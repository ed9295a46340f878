/**
 * Recording the libvmmapi calls the vmm layer makes (through a proxy of its VmHandle), for the
 * benchmark's cost floor and its scaling figures.
 *
 * @module
 */
import type { VmHandle } from "../../vmm/vmmapi.ts";

/** One recorded call. */
export type Call = { method: keyof VmHandle; args: unknown[] };

/** Wraps `vm` so that every call made while `recording` is on is logged. */
export function recorder(
  vm: VmHandle,
): { vm: VmHandle; calls: Call[]; recording: { on: boolean } } {
  const calls: Call[] = [];
  const recording = { on: false };
  const proxy = new Proxy(vm, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (recording.on) calls.push({ method: key as keyof VmHandle, args });
        return value.apply(target, args);
      };
    },
  });
  return { vm: proxy, calls, recording };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median over `repeat` runs of `f`, in µs. */
export function countCalls(calls: Call[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { method } of calls) counts[method] = (counts[method] ?? 0) + 1;
  return counts;
}
