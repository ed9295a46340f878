/**
 * A timer that an AbortSignal cancels (the waits of `w` mode), and a turn of the event loop
 * short enough to take inside a watch without pause.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** Resolves after `ms`; rejects with the signal's reason if it aborts first. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
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

/**
 * Gives the event loop one turn (signal listeners, aborts) and comes back at once: a few
 * microseconds, where `setTimeout(0)` takes about 2 ms in Deno (measured), long enough for
 * bhyve's release of the boot vCPU to slip past a watch.
 */
export function yieldTurn(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    setImmediate(() => signal?.aborted ? reject(signal.reason) : resolve());
  });
}
