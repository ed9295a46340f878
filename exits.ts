/**
 * Every way the process can end, short of SIGKILL, releases the guest first.
 *
 * - Signals whose default action ends the process: the first starts an orderly shutdown (the
 *   session detaches, the VM is closed); a second one, while that shutdown is under way, takes
 *   the last resort below at once. SIGPIPE is not among them: Deno ignores it (a write to a
 *   closed socket fails with an error instead), so it never ends the process. Nor is SIGPROF:
 *   V8's sampling profiler sends it to the process all the time while it runs.
 * - An uncaught error or an unhandled promise rejection: the last resort, a synchronous
 *   release of whatever the server holds, then one line on stderr and exit status 1.
 *
 * @module
 */

/**
 * Signals that end a process by default, on Linux and FreeBSD; those the platform or Deno does
 * not let a program catch (SIGKILL, SIGSTOP, SIGSEGV, SIGILL, SIGFPE…) are skipped.
 */
const CANDIDATES = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGUSR1",
  "SIGUSR2",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
  "SIGEMT",
  "SIGLOST",
] as const;

/** What to do on each way out. */
export interface ExitHandlers {
  /** A terminating signal: start an orderly shutdown. */
  signal(name: Deno.Signal): void;
  /** Releases what the server holds, synchronously; returns what happened, in words. */
  lastResort(): string;
}

/**
 * Installs the handlers for as long as the returned function is not called; returns the
 * signals it listens for as well.
 */
export function guardExits(handlers: ExitHandlers): { signals: Deno.Signal[]; remove(): void } {
  const signals: Deno.Signal[] = [];
  let shuttingDown = false;
  const listeners = new Map<Deno.Signal, () => void>();
  for (const name of CANDIDATES) {
    const signal = name as Deno.Signal;
    const listener = () => {
      if (!shuttingDown) {
        shuttingDown = true;
        handlers.signal(signal);
        return;
      }
      // A second signal: the orderly shutdown is taking too long for the user.
      console.error(`bhyve-gdbstub: ${name} again: ${handlers.lastResort()}; exiting now`);
      Deno.exit(1);
    };
    try {
      Deno.addSignalListener(signal, listener);
    } catch {
      continue; // not a signal here, or one Deno does not let a program catch
    }
    listeners.set(signal, listener);
    signals.push(signal);
  }
  const crash = (what: string, error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    const released = handlers.lastResort();
    console.error(`bhyve-gdbstub: ${what}: ${oneLine(reason)}; ${released}; exiting`);
    Deno.exit(1);
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    crash("internal error", event.error ?? event.message);
  };
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    crash("internal error (unhandled rejection)", event.reason);
  };
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  return {
    signals,
    remove() {
      for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
      globalThis.removeEventListener("error", onError);
      globalThis.removeEventListener("unhandledrejection", onRejection);
    },
  };
}

function oneLine(text: string): string {
  return text.replace(/[^\x20-\x7e]+/g, " ").slice(0, 300);
}
