/**
 * One line per library that would not load, for the "Tried:" lists of the loaders.
 *
 * @module
 */

/** `  PATH: why`, without the "Could not open library: " prefix Deno repeats. */
export function triedLine(path: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return `  ${path}: ${message.replace(/^(Could not open library: )+/, "")}`;
}
