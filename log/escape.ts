/**
 * Making text safe for a log line: whatever a client sent, the line stays one line and the
 * terminal sees no escape sequence.
 *
 * @module
 */

/**
 * Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the bidi
 * controls that reorder what a terminal shows: each would let text forge or hide log lines.
 */
const UNSAFE = /[\p{Cc}\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e" };

/**
 * Replaces every unsafe character with a visible escape (`\n`, `\e`, `\x07`, `\u{202e}`).
 *
 * @example
 * escapeControls("a\nb\x1b[31m"); // "a\\nb\\e[31m"
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named !== undefined) return named;
    const code = c.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}
