/**
 * A few QMP commands to QEMU over its unix socket, in order; each must succeed.
 *
 * @module
 */

/** One QMP command. */
export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

/** Sends `qmp_capabilities`, then each command, waiting for each reply; returns the replies. */
export async function qmp(socket: string, commands: QmpCommand[]): Promise<unknown[]> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const reader = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const next = async (): Promise<Record<string, unknown>> => {
    for (;;) {
      const newline = buffer.indexOf("\n");
      if (newline >= 0) {
        const message = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (!("event" in message)) return message;
        continue;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("QMP closed the connection");
      buffer += value;
    }
  };
  try {
    await next(); // greeting
    const replies = [];
    for (const command of [{ execute: "qmp_capabilities" }, ...commands]) {
      await conn.write(new TextEncoder().encode(`${JSON.stringify(command)}\n`));
      const reply = await next();
      if ("error" in reply) {
        throw new Error(`QMP ${command.execute}: ${JSON.stringify(reply.error)}`);
      }
      replies.push(reply.return);
    }
    return replies.slice(1);
  } finally {
    reader.releaseLock();
    conn.close();
  }
}
