/**
 * Records what the real gdb and lldb send in ordinary sessions into tests/fuzz/recorded.json,
 * the seed traffic of the fuzzer's recorded-traffic mutations (fuzzer.ts, `recorded`).
 *
 * A TCP proxy sits between each client and a server on the fake target and decodes every
 * packet the client sends, in order. The clients run the commands a user types first: attach,
 * threads, registers, memory, a disassembly, a monitor command, continue and Ctrl-C, detach.
 * Run it again when a client's version changes:
 *
 *   scripts/deno run --allow-all tests/fuzz/record.ts
 *
 * @module
 */
import { PacketDecoder } from "../../rsp/framing.ts";
import { latin1 } from "../../rsp/hex.ts";
import { serve } from "../../rsp/server.ts";
import { runGdb } from "../helpers/gdb.ts";
import { runLldb } from "../helpers/lldb.ts";
import { FakeTarget } from "../rsp/fake_target.ts";

export const RECORDED = new URL("./recorded.json", import.meta.url);

/** The recorded sessions: for each client, the bodies of the packets it sent, in order. */
export interface Recorded {
  /** Client versions the traffic came from. */
  clients: string[];
  sessions: { client: string; packets: string[] }[];
}

/** Serves the fake target behind a proxy; returns the proxy's port and the bodies seen. */
function recordingProxy(): { port: number; packets: string[]; close(): Promise<void> } {
  const server = serve(new FakeTarget(), { hostname: "127.0.0.1", port: 0 });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const packets: string[] = [];
  const pumps: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
      const decoder = new PacketDecoder(1 << 20);
      const pump = async (from: Deno.Conn, to: Deno.Conn, tap: boolean) => {
        const buffer = new Uint8Array(0x10000);
        try {
          for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
            const chunk = buffer.subarray(0, n);
            if (tap) {
              for (const event of decoder.feed(chunk)) {
                if (event.kind === "packet") packets.push(latin1(event.body));
              }
            }
            for (let at = 0; at < n;) at += await to.write(chunk.subarray(at));
          }
        } catch {
          // one side went away
        } finally {
          for (const conn of [from, to]) {
            try {
              conn.close();
            } catch {
              // already closed
            }
          }
        }
      };
      pumps.push(pump(client, upstream, true), pump(upstream, client, false));
    }
  })();
  return {
    port: listener.addr.port,
    packets,
    async close() {
      listener.close();
      await accepting.catch(() => {});
      await Promise.all(pumps);
      await server.close();
    },
  };
}

async function version(program: string): Promise<string> {
  const output = await new Deno.Command(program, { args: ["--version"] }).output();
  return new TextDecoder().decode(output.stdout).split("\n")[0]!.trim();
}

if (import.meta.main) {
  const recorded: Recorded = {
    clients: [await version("gdb"), await version("lldb")],
    sessions: [],
  };
  const gdbScripts = [
    ["info threads", "info registers", "x/16xg 0x1000", "x/8i $pc", "thread 2", "bt"],
    ["monitor help", "p $rip", "x/s 0x1000", "info all-registers", "detach"],
  ];
  for (const commands of gdbScripts) {
    const proxy = recordingProxy();
    await runGdb([`target remote 127.0.0.1:${proxy.port}`, ...commands], { timeoutMs: 30_000 });
    await proxy.close();
    recorded.sessions.push({ client: "gdb", packets: proxy.packets });
  }
  const lldbScripts = [
    ["thread list", "register read", "memory read 0x1000 0x1040", "disassemble -c 8 -s 0x1000"],
    ["register read --all", "thread select 2", "process plugin packet monitor help", "detach"],
  ];
  for (const commands of lldbScripts) {
    const proxy = recordingProxy();
    await runLldb([`gdb-remote 127.0.0.1:${proxy.port}`, ...commands], { timeoutMs: 30_000 });
    await proxy.close();
    recorded.sessions.push({ client: "lldb", packets: proxy.packets });
  }
  await Deno.writeTextFile(RECORDED, JSON.stringify(recorded, null, 1) + "\n");
  console.log(
    recorded.sessions.map((s) => `${s.client}: ${s.packets.length} packets`).join(", "),
  );
}
