/**
 * The server's logging: levels, one line per record on stderr, every line escaped
 * (log/record.ts says how). Modules take a logger with `getLogger(category)`; main.ts decides
 * the lowest level and where records go with `configure`. Until then nothing is logged, so
 * tests that run the server in-process stay quiet.
 *
 * @example
 * ```ts
 * const log = getLogger(["bhyve-gdbstub", "rsp"]);
 * log.info("{peer} attached", { peer });
 * ```
 *
 * @module
 */
import { formatRecord, type Level, LEVELS, type LogRecord } from "./record.ts";

export { escapeControls } from "./escape.ts";
export { formatRecord, type Level, LEVELS, type LogRecord, renderMessage } from "./record.ts";

export type Sink = (record: LogRecord) => void;
type Properties = Record<string, unknown>;

interface Config {
  lowest: number;
  sink: Sink;
}

let config: Config | undefined;

/** Sends records at `lowestLevel` and above to `sink` (stderr, one line each, by default). */
export function configure(options: { lowestLevel: Level; sink?: Sink }): void {
  config = { lowest: LEVELS.indexOf(options.lowestLevel), sink: options.sink ?? stderrSink };
}

/** Logs nothing again (the state before `configure`). */
export function reset(): void {
  config = undefined;
}

/** Writes the record's line to stderr synchronously, so the last lines before an exit are kept. */
export function stderrSink(record: LogRecord): void {
  console.error(formatRecord(record));
}

export class Logger {
  constructor(readonly category: readonly string[]) {}

  isEnabledFor(level: Level): boolean {
    return config !== undefined && LEVELS.indexOf(level) >= config.lowest;
  }

  trace(template: string, properties?: Properties): void {
    this.#log("trace", template, properties);
  }
  debug(template: string, properties?: Properties): void {
    this.#log("debug", template, properties);
  }
  info(template: string, properties?: Properties): void {
    this.#log("info", template, properties);
  }
  warn(template: string, properties?: Properties): void {
    this.#log("warning", template, properties);
  }
  error(template: string, properties?: Properties): void {
    this.#log("error", template, properties);
  }
  fatal(template: string, properties?: Properties): void {
    this.#log("fatal", template, properties);
  }

  #log(level: Level, template: string, properties: Properties = {}): void {
    if (config === undefined || !this.isEnabledFor(level)) return;
    config.sink({ category: this.category, level, template, properties, timestamp: Date.now() });
  }
}

/** The logger for a category, such as `["bhyve-gdbstub", "vmm"]`. */
export function getLogger(category: readonly string[]): Logger {
  return new Logger(category);
}
