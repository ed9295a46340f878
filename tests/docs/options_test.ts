/**
 * `--help`, README.md and the manual page list the same options. Each list is read from its
 * document (nothing is hard-coded here), so an option added to one and not the others fails
 * with the option's name and where it is missing.
 */
import assert from "node:assert/strict";
import { RUN_PERMISSIONS } from "../../cli.ts";

const ROOT = new URL("../../", import.meta.url);

/**
 * Options defined in a help-style text: the lines of every block headed `Options:` (or
 * `... options:`) that start, indented, with a dash. `-G, --gdb [w][ADDR:]PORT` gives -G and --gdb.
 */
export function helpOptions(text: string): Set<string> {
  const found = new Set<string>();
  let inBlock = false;
  for (const line of text.split("\n")) {
    if (/^(\S.*\s)?options:\s*$/i.test(line.trim()) && !/^\s/.test(line)) {
      inBlock = true;
      continue;
    }
    if (line.trim() === "```" || (line !== "" && !/^\s/.test(line))) inBlock = false;
    if (!inBlock) continue;
    const head = /^\s+(-[A-Za-z0-9],?\s+)?(--?[A-Za-z][\w-]*)[^\n]*?(?=\s{2,}|$)/.exec(line);
    if (head === null) continue;
    for (const flag of head[0].matchAll(/(?<![\w[-])--?[A-Za-z][\w-]*/g)) found.add(flag[0]);
  }
  return found;
}

/** Options the manual page defines: every `.It Fl ...` item (`.It Fl G , Fl -gdb` gives both). */
export function manualOptions(mdoc: string): Set<string> {
  const found = new Set<string>();
  for (const line of mdoc.split("\n")) {
    if (!line.startsWith(".It Fl ")) continue;
    for (const flag of line.matchAll(/\bFl (-?[A-Za-z][\w-]*)/g)) found.add(`-${flag[1]}`);
  }
  return found;
}

/** One line per option a source lacks, naming the sources that have it. */
function disagreements(sources: Record<string, Set<string>>): string[] {
  const all = new Set(Object.values(sources).flatMap((s) => [...s]));
  const lines: string[] = [];
  for (const option of [...all].sort()) {
    const missing = Object.keys(sources).filter((name) => !sources[name]!.has(option));
    if (missing.length === 0) continue;
    const present = Object.keys(sources).filter((name) => sources[name]!.has(option));
    lines.push(`${option}: in ${present.join(" and ")}, missing from ${missing.join(" and ")}`);
  }
  return lines;
}

Deno.test("--help, README.md and man/bhyve-gdbstub.8 list the same options", async () => {
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUN_PERMISSIONS, new URL("main.ts", ROOT).pathname, "--help"],
    stdout: "piped",
  }).output();
  assert.equal(run.code, 0);
  const help = new TextDecoder().decode(run.stdout);
  assert.doesNotMatch(
    help,
    /\/boot\/kernel\/kernel(?!\.debug)/,
    "--help suggests the stripped kernel",
  );
  const sources = {
    "--help": helpOptions(help),
    "README.md": helpOptions(await Deno.readTextFile(new URL("README.md", ROOT))),
    "man/bhyve-gdbstub.8": manualOptions(
      await Deno.readTextFile(new URL("man/bhyve-gdbstub.8", ROOT)),
    ),
  };
  for (const [name, options] of Object.entries(sources)) {
    assert.ok(
      options.has("--vm") && options.has("-G"),
      `${name}: no options found (parser out of date?)`,
    );
  }
  const problems = disagreements(sources);
  assert.deepEqual(problems, [], `the option lists disagree:\n  ${problems.join("\n  ")}`);
});

Deno.test("the option parsers read each document's form", () => {
  const help = "Usage:\n  x --vm NAME\n\nOptions:\n  --vm NAME   the VM [--not-this]\n" +
    "  -G, --gdb [w][ADDR:]PORT\n                 more text --nor-this\n  -h, --help  help\n\n" +
    "Examples:\n  x --example\n";
  assert.deepEqual([...helpOptions(help)].sort(), ["--gdb", "--help", "--vm", "-G", "-h"]);
  const readme = "text --readme-text\n\n```\nOptions:\n  --vm NAME  x\n```\n  --after x\n";
  assert.deepEqual([...helpOptions(readme)], ["--vm"]);
  const man = ".It Fl -vm Ar name\n.It Fl G , Fl -gdb Oo Cm w Oc\n.Fl -not-an-item\n.It Cm help\n";
  assert.deepEqual([...manualOptions(man)].sort(), ["--gdb", "--vm", "-G"]);
});
