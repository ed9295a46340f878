/**
 * `--max-hold`: a bound on how long one debugger may keep the guest stopped, for production VMs
 * whose watchdogs would fire. The target is wrapped so that every stop starts the clock and
 * every resume or detach stops it; when the clock runs out, `onExpired` is called (the server
 * then releases the guest and tells the debugger).
 *
 * @module
 */
import type { DebugTarget } from "../target.ts";

/** A target whose holds are timed; `cancel` stops the clock for good. */
export interface TimedTarget {
  target: DebugTarget;
  cancel(): void;
}

/**
 * Wraps `target` (every member passes through, so capabilities other layers add keep working)
 * with a clock of `limitMs` on each hold.
 */
export function limitHold(
  target: DebugTarget,
  limitMs: number,
  onExpired: () => void,
): TimedTarget {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopClock = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const startClock = () => {
    if (timer === undefined) timer = setTimeout(onExpired, limitMs);
  };
  const timed = new Proxy(target, {
    get(object, key) {
      const value = Reflect.get(object, key, object);
      if (typeof value !== "function") return value;
      if (key === "stop") {
        return async (...args: unknown[]) => {
          const event = await value.apply(object, args);
          startClock();
          return event;
        };
      }
      if (key === "resume" || key === "detach") {
        return (...args: unknown[]) => {
          stopClock();
          return value.apply(object, args);
        };
      }
      return value.bind(object);
    },
  });
  return { target: timed, cancel: stopClock };
}
