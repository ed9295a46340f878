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

/** A step of an interactive lldb session: a command, or something to await before the next. */
export type LldbStep = string | (() => Promise<unknown>);

/**
 * Runs lldb interactively (commands on stdin, each once the previous one has finished),
 * where `process continue` returns at once and `process interrupt` works, unlike in batch mode.
 */
export async function runLldbSession(
  steps: LldbStep[],
  options: { lldb?: string; file?: string; timeoutMs?: number } = {},
): Promise<ClientResult> {
  const child = new Deno.Command(options.lldb ?? Deno.env.get("LLDB") ?? "lldb", {
    args: ["-x", ...(options.file === undefined ? [] : [options.file])],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 30_000);
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) output += text;
  };
  const collected = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const writer = child.stdin.getWriter();
  const send = (line: string) => writer.write(new TextEncoder().encode(`${line}\n`));
  // lldb runs stdin's commands in order; `version` after each one marks when it has finished.
  const marks = () => output.split("lldb version").length - 1;
  try {
    for (const step of steps) {
      if (typeof step === "function") {
        await step();
        continue;
      }
      const before = marks();
      await send(step);
      await send("version");
      while (marks() <= before && !timedOut) await new Promise((r) => setTimeout(r, 10));
    }
    await send("quit");
    await writer.close();
  } catch {
    // lldb went away; its output says why
  }
  const status = await child.status;
  await collected;
  clearTimeout(timer);
  return { output, code: status.signal === null ? status.code : undefined, timedOut };
}
