/**
 * Runs a debugger client (gdb, lldb) as a child process with a script, collecting stdout and
 * stderr in arrival order, with a timeout that kills it and an optional Ctrl-C (SIGINT) sent
 * once its output matches a pattern (how a user interrupts a `continue`).
 *
 * @module
 */

/** What a client run produced. */
export interface ClientResult {
  /** stdout and stderr, interleaved as they arrived. */
  output: string;
  /** Exit code (undefined if killed by a signal). */
  code: number | undefined;
  /** The timeout fired and the client was killed. */
  timedOut: boolean;
}

export interface ClientOptions {
  /** Kill the client after this many ms (default 30000). */
  timeoutMs?: number;
  /**
   * Send SIGINT (the user's Ctrl-C) once the output matches. Note gdb block-buffers its
   * stdout into a pipe, so prefer {@link ClientOptions.interruptOn} for gdb.
   */
  interruptWhen?: RegExp;
  /** Send SIGINT once this settles, e.g. when the test's target saw the resume. */
  interruptOn?: Promise<unknown>;
  /** Delay before the SIGINT, in ms (default 200). */
  interruptDelayMs?: number;
}

/** Runs `program` with `args` and returns its output; never throws for a failing client. */
export async function runClient(
  program: string,
  args: string[],
  options: ClientOptions = {},
): Promise<ClientResult> {
  const child = new Deno.Command(program, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let timedOut = false;
  let interrupted = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }, options.timeoutMs ?? 30000);
  const interrupt = () => {
    if (interrupted) return;
    interrupted = true;
    setTimeout(() => {
      try {
        child.kill("SIGINT");
      } catch {
        // already exited
      }
    }, options.interruptDelayMs ?? 200);
  };
  options.interruptOn?.then(interrupt, interrupt);
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      if (options.interruptWhen?.test(output)) interrupt();
    }
  };
  const [status] = await Promise.all([child.status, collect(child.stdout), collect(child.stderr)]);
  clearTimeout(timer);
  return { output, code: status.signal === null ? status.code : undefined, timedOut };
}
