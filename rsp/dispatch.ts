/**
 * The one table from packet prefixes to handlers. A packet matches the longest prefix; an
 * `exact` entry matches only the whole body. An unmatched packet gets the empty reply
 * (the protocol's "unsupported"), which the session logs.
 *
 * @module
 */
import type { Handler } from "./context.ts";
import * as data from "./handlers/data.ts";
import * as lldb from "./handlers/lldb.ts";
import * as query from "./handlers/query.ts";
import * as run from "./handlers/run.ts";

interface Entry {
  prefix: string;
  handler: Handler;
  exact?: boolean;
}

const TABLE: readonly Entry[] = [
  // Handshake and queries.
  { prefix: "qSupported", handler: query.supported },
  { prefix: "QStartNoAckMode", handler: query.startNoAck, exact: true },
  { prefix: "qXfer:features:", handler: query.xferFeatures },
  { prefix: "qfThreadInfo", handler: query.threadInfo, exact: true },
  { prefix: "qsThreadInfo", handler: query.threadInfo, exact: true },
  { prefix: "qC", handler: query.currentThread, exact: true },
  { prefix: "qThreadExtraInfo,", handler: query.threadExtraInfo },
  { prefix: "qAttached", handler: query.fixed("1") },
  // gdb reads "no relocation" from an empty qOffsets reply; Text=0 would say the same.
  { prefix: "qOffsets", handler: query.fixed(""), exact: true },
  { prefix: "qTStatus", handler: query.fixed(""), exact: true },
  { prefix: "qSymbol", handler: query.fixed("OK") },
  { prefix: "qRcmd,", handler: query.monitor },
  { prefix: "vMustReplyEmpty", handler: query.fixed(""), exact: true },
  { prefix: "?", handler: query.haltReason, exact: true },
  { prefix: "H", handler: query.setThread },
  { prefix: "T", handler: query.threadAlive },
  // lldb's extensions.
  { prefix: "QThreadSuffixSupported", handler: query.fixed("OK"), exact: true },
  { prefix: "QListThreadsInStopReply", handler: lldb.listThreadsInStopReply, exact: true },
  { prefix: "QEnableErrorStrings", handler: lldb.enableErrorStrings, exact: true },
  { prefix: "qHostInfo", handler: lldb.hostInfo, exact: true },
  { prefix: "qThreadStopInfo", handler: lldb.threadStopInfo },
  // Registers and memory.
  { prefix: "g", handler: data.readAllRegisters },
  { prefix: "p", handler: data.readOneRegister },
  { prefix: "G", handler: data.writeAllRegisters },
  { prefix: "P", handler: data.writeOneRegister },
  { prefix: "m", handler: data.readMemory },
  { prefix: "x", handler: data.readMemory },
  { prefix: "M", handler: data.writeMemory },
  { prefix: "X", handler: data.writeMemory },
  // Run control.
  { prefix: "c", handler: run.resumeLetter },
  { prefix: "C", handler: run.resumeLetter },
  { prefix: "s", handler: run.resumeLetter },
  { prefix: "S", handler: run.resumeLetter },
  { prefix: "vCont?", handler: run.vContQuery, exact: true },
  { prefix: "vCont;", handler: run.vCont },
  { prefix: "Z", handler: run.breakpoint },
  { prefix: "z", handler: run.breakpoint },
  { prefix: "D", handler: run.detach },
  { prefix: "k", handler: run.kill, exact: true },
];

const BY_LENGTH = [...TABLE].sort((a, b) => b.prefix.length - a.prefix.length);

/** The handler for `body` and the arguments after its prefix; undefined if unsupported. */
export function lookup(body: string): { handler: Handler; args: string } | undefined {
  for (const entry of BY_LENGTH) {
    if (entry.exact ? body === entry.prefix : body.startsWith(entry.prefix)) {
      return { handler: entry.handler, args: body.slice(entry.prefix.length) };
    }
  }
  return undefined;
}
