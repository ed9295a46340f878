/**
 * bhyve-gdbstub: a GDB remote-protocol server for a running bhyve VM.
 *
 * This file parses the command line, sets up logging and wires the layers together
 * (rsp/ ← vmm/ ← ffi/); see ../shared/docs/architecture.md.
 *
 * @module
 */
import { configure, defaultTextFormatter, getLogger, type LogRecord } from "@logtape/logtape";
import { HELP, type Options, parseCommandLine, UsageError, VERSION } from "./cli.ts";

const log = getLogger(["bhyve-gdbstub"]);

/** Runs the program and returns its exit status. */
export async function main(args: string[]): Promise<number> {
  let command;
  try {
    command = parseCommandLine(args, Deno.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bhyve-gdbstub: ${error.message}`);
    return 2;
  }
  switch (command.kind) {
    case "help":
      console.log(HELP);
      return 0;
    case "version":
      console.log(`bhyve-gdbstub ${VERSION}`);
      return 0;
    case "run":
      await setUpLogging(command.options);
      return await run(command.options);
  }
}

async function setUpLogging(options: Options): Promise<void> {
  await configure({
    // Everything goes to stderr, synchronously, so the last lines before an exit are kept.
    sinks: { stderr: (record: LogRecord) => console.error(defaultTextFormatter(record).trimEnd()) },
    loggers: [
      { category: ["bhyve-gdbstub"], lowestLevel: options.logLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

function run(options: Options): Promise<number> {
  log.error("serving {vm} is not wired yet", { vm: options.vm });
  return Promise.resolve(1);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
