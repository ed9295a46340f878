/**
 * The real main() with one fault added for exits_test.ts: on SIGWINCH (which never ends a
 * process, so main.ts does not listen for it) it throws from a callback, or leaves a promise
 * rejected with nobody to catch it (BHYVE_GDBSTUB_FAULT=rejection): the two ways a bug would
 * end the process.
 */
import { main } from "../../main.ts";

Deno.addSignalListener("SIGWINCH", () => {
  if (Deno.env.get("BHYVE_GDBSTUB_FAULT") === "rejection") {
    void Promise.reject(new Error("injected rejection"));
  } else {
    setTimeout(() => {
      throw new Error("injected error");
    }, 0);
  }
});
Deno.exit(await main(Deno.args));
