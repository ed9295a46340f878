/**
 * Drives the real gdb in batch mode with a list of commands, for end-to-end tests.
 *
 * @example
 * ```ts
 * const { output } = await runGdb([`target remote 127.0.0.1:${port}`, "info threads"]);
 * ```
 *
 * @module
 */
import { type ClientOptions, type ClientResult, runClient } from "./client.ts";

export type { ClientOptions, ClientResult };

export interface GdbOptions extends ClientOptions {
  /** The gdb executable (default: $GDB or "gdb"). */
  gdb?: string;
  /** Commands run before the script (default: the x86-64 architecture, no pagination). */
  preamble?: string[];
}

/** Runs `gdb -nx -batch` with each command as an `-ex`; returns what gdb printed. */
export function runGdb(commands: string[], options: GdbOptions = {}): Promise<ClientResult> {
  const preamble = options.preamble ??
    ["set pagination off", "set confirm off", "set architecture i386:x86-64"];
  const args = ["-nx", "-batch", ...[...preamble, ...commands].flatMap((c) => ["-ex", c])];
  const gdb = options.gdb ?? Deno.env.get("GDB") ?? "gdb";
  // One pipe for stdout and stderr: gdb flushes stdout before it prints an error, so the
  // output keeps gdb's own order (two pipes would interleave at random).
  return runClient("sh", ["-c", 'exec "$0" "$@" 2>&1', gdb, ...args], options);
}

/** gdb commands in named sections, each introduced by `echo ==NAME`, for {@link sectionsOf}. */
export function sectioned(sections: Record<string, string[]>): string[] {
  return Object.entries(sections).flatMap(([name, commands]) => [
    `echo ==${name}\\n`,
    ...commands,
  ]);
}

/** Splits gdb's output at the `==NAME` markers {@link sectioned} put there. */
export function sectionsOf(output: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const part of output.split(/^==/m).slice(1)) {
    const newline = part.indexOf("\n");
    result[part.slice(0, newline)] = part.slice(newline + 1);
  }
  return result;
}
