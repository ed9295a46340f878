/**
 * A server on the fake target for accept_storm_test.ts, run in its own process so that its
 * file-descriptor limit can be made small (`ulimit -n`): prints its port, logs to stderr.
 */
import { configure } from "../../log/mod.ts";
import { serve } from "../../rsp/server.ts";
import { FakeTarget } from "./fake_target.ts";

configure({ lowestLevel: "debug" });
const server = serve(new FakeTarget(), { hostname: "127.0.0.1", port: 0 });
console.log(server.addr.port);
await server.finished;
