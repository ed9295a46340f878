/**
 * The server's own cost per packet, without sockets: a {@link Session} over the real test VM,
 * fed through an in-memory connection that hands it the next packet as soon as the last reply
 * is written. What this measures is the protocol layer plus the vmm layer plus libvmmapi; the
 * gap to the raw-client figures of `main.ts` is the TCP round trip and the client.
 *
 *   deno run -A scripts/bench/server_cost.ts [--mib N]
 *
 * (A sampling profiler cannot be used against the test VM: its SIGPROF interrupts the test VM
 * library's socket calls, which take EINTR for the VM vanishing.)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadVmmapi } from "../../ffi/mod.ts";
import { framePacket } from "../../rsp/framing.ts";
import { type Connection, Session } from "../../rsp/session.ts";
import { LIBVMMAPI, TestVm } from "../../tests/helpers/testvm.ts";
import { DMAP_VBASE } from "../../tests/testvm/layout.ts";
import { VmTarget } from "../../vmm/mod.ts";

/** Hands the session queued packets one read at a time; counts the replies it writes. */
class PingPong implements Connection {
  #queue: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #pending = 0;
  #done: (() => void) | undefined;

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) await new Promise<void>((r) => (this.#wake = r));
    const packet = this.#queue.shift()!;
    buffer.set(packet);
    return packet.length;
  }

  write(data: Uint8Array): Promise<number> {
    // Every reply ends `#xx`; a lone `+` ack does not.
    if (data.length >= 4 && data[data.length - 3] === 0x23 && --this.#pending === 0) {
      this.#done?.();
    }
    return Promise.resolve(data.length);
  }

  close(): void {}

  /** Queues `bodies` and resolves when each has its reply. */
  exchange(bodies: string[]): Promise<void> {
    this.#pending = bodies.length;
    const done = new Promise<void>((r) => (this.#done = r));
    for (const body of bodies) this.#queue.push(framePacket(body));
    this.#wake?.();
    return done;
  }
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string", default: "64" } },
});
const size = Number(flags.mib) << 20;

const vm = await TestVm.start({ cpus: 8, mem: "256M" });
vm.useDirHere();
const api = loadVmmapi({ path: LIBVMMAPI["0200"] });
const target = new VmTarget(api.open(vm.name));
const conn = new PingPong();
const session = new Session(target, conn);
const running = session.run();
try {
  await conn.exchange(["qSupported:xmlRegisters=i386", "QStartNoAckMode", "?"]);
  const time = async (label: string, bodies: string[], bytes = 0) => {
    await conn.exchange(bodies.slice(0, 8)); // warm up the JIT
    const t0 = performance.now();
    await conn.exchange(bodies);
    const ms = performance.now() - t0;
    const rate = bytes > 0 ? `, ${(bytes / (1 << 20) / (ms / 1000)).toFixed(0)} MiB/s` : "";
    console.log(`${label}: ${(ms * 1000 / bodies.length).toFixed(1)} µs per packet${rate}`);
  };
  await time("g (cached)", Array(5000).fill("g"));
  await time("qfThreadInfo", Array(2000).fill("qfThreadInfo"));
  for (const [kind, chunk] of [["m", 0x20000], ["x", 0x3fff0]] as const) {
    const bodies: string[] = [];
    for (let at = 0; at < size; at += chunk) {
      const address = (DMAP_VBASE + BigInt(at)).toString(16);
      bodies.push(`${kind}${address},${Math.min(chunk, size - at).toString(16)}`);
    }
    await time(`${kind} ${chunk.toString(16)} bytes`, bodies, size);
  }
} finally {
  session.close();
  await running;
  target.vm.close();
  api.close();
  await vm.stop();
}
