/**
 * `deno task compile`: one executable, `bhyve-gdbstub`, from main.ts.
 *
 * `deno compile` needs the denort runtime for the target. It normally downloads it; where that
 * cannot be done (no network, or a platform Deno does not publish, like FreeBSD), point
 * DENORT_BIN at a denort binary (FreeBSD: from the deno package or port).
 */
import { RUN_PERMISSIONS } from "../cli.ts";

const output = Deno.args[0] ?? "bhyve-gdbstub";
const denort = Deno.env.get("DENORT_BIN");
const permissions = RUN_PERMISSIONS;
const { code, stderr } = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    ...permissions,
    "--output",
    output,
    new URL("../main.ts", import.meta.url).pathname,
  ],
  stdout: "inherit",
  stderr: "piped",
}).output();
await Deno.stderr.write(stderr);
if (code !== 0) {
  console.error(
    denort
      ? `compile: deno compile failed with DENORT_BIN=${denort} (is it a denort of Deno ${Deno.version.deno}?)`
      : "compile: deno compile failed; it needs the denort runtime, which it downloads. Without " +
        "network access, set DENORT_BIN to a denort binary of the same Deno version, or run the " +
        "program with `deno task start --vm NAME -G PORT`.",
  );
  Deno.exit(code);
}
console.log(`compile: wrote ${output}`);
