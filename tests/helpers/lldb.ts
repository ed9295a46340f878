/**
 * Drives the real lldb in batch mode with a list of commands, for end-to-end tests.
 *
 * In batch mode lldb stops running commands after one fails or after the process stops for
 * an "exception" (e.g. a refused single-step), and kills the process on the way out: put
 * such commands last.
 *
 * @example
 * ```ts
 * const { output } = await runLldb([`gdb-remote 127.0.0.1:${port}`, "register read"]);
 * ```
 *
 * @module
 */
import { type ClientOptions, type ClientResult, runClient } from "./client.ts";

export type { ClientOptions, ClientResult };

export interface LldbOptions extends ClientOptions {
  /** The lldb executable (default: $LLDB or "lldb"). */
  lldb?: string;
}

/** Runs `lldb -x -b` with each command as an `-o`; returns what lldb printed. */
export function runLldb(commands: string[], options: LldbOptions = {}): Promise<ClientResult> {
  const args = ["-x", "-b", ...commands.flatMap((c) => ["-o", c])];
  return runClient(options.lldb ?? Deno.env.get("LLDB") ?? "lldb", args, options);
}
