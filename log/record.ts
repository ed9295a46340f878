/**
 * A log record and its one-line text form.
 *
 * A message is a template written in the code, such as `"{peer} attached"`; `{name}` is replaced
 * by the record's own property `name` and nothing else (no inherited names such as
 * `{constructor}`, no second pass over what was inserted). The finished line is escaped as a
 * whole, so neither a property nor a template built with client text can break it.
 *
 * @module
 */
import { escapeControls } from "./escape.ts";

export const LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;
export type Level = typeof LEVELS[number];

export interface LogRecord {
  /** Who logged it, such as `["bhyve-gdbstub", "rsp"]`. */
  category: readonly string[];
  level: Level;
  /** The template as written in the code. */
  template: string;
  properties: Readonly<Record<string, unknown>>;
  /** Milliseconds since the epoch. */
  timestamp: number;
}

/** The record's message: the template with its placeholders filled, not yet escaped. */
export function renderMessage(record: LogRecord): string {
  const { template, properties } = record;
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name: string) => {
    return Object.hasOwn(properties, name) ? renderValue(properties[name]) : whole;
  });
}

function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  return Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity, depth: 4 });
}

const ABBREVIATIONS: Record<Level, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

/**
 * The record as one line, without a newline.
 *
 * @example
 * formatRecord(record); // "2026-12-01 13:00:00.000Z [INF] bhyve-gdbstub·rsp: 127.0.0.1:5000 attached"
 */
export function formatRecord(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString().replace("T", " ");
  const line = `${time} [${ABBREVIATIONS[record.level]}] ${record.category.join("·")}: ` +
    renderMessage(record);
  return escapeControls(line);
}
