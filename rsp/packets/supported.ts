/**
 * qSupported: the client's features in, the server's features out. The reply is computed from
 * what the server and target can do, so it never advertises what is missing; in particular
 * swbreak/hwbreak only when the target honours breakpoints (by emulation: a separate process
 * cannot take breakpoint exits) and the client asked for them.
 *
 * @module
 */

/** The client's features: `name+` / `name-` as booleans, `name=value` as strings. */
export type ClientFeatures = Map<string, boolean | string>;

/** Parses what follows `qSupported` (`:f1;f2...` or nothing). */
export function parseSupported(args: string): ClientFeatures {
  const features: ClientFeatures = new Map();
  const list = args.startsWith(":") ? args.slice(1) : args;
  for (const item of list.split(";")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq >= 0) features.set(item.slice(0, eq), item.slice(eq + 1));
    else if (item.endsWith("+")) features.set(item.slice(0, -1), true);
    else if (item.endsWith("-")) features.set(item.slice(0, -1), false);
    else features.set(item, true);
  }
  return features;
}

export interface ServerFeatures {
  packetSize: number;
  /** Echo error-message+ only to a client that offered it (gdb 15 and later). */
  errorMessages: boolean;
  /** swbreak+/hwbreak+: stop replies say which kind of breakpoint was hit. */
  swbreak?: boolean;
  hwbreak?: boolean;
}

/** Formats the qSupported reply. */
export function formatSupported(server: ServerFeatures): string {
  const features = [
    `PacketSize=${server.packetSize.toString(16)}`,
    "qXfer:features:read+",
    "QStartNoAckMode+",
    "vContSupported+",
    "binary-upload+",
  ];
  if (server.errorMessages) features.push("error-message+");
  if (server.swbreak) features.push("swbreak+");
  if (server.hwbreak) features.push("hwbreak+");
  return features.join(";");
}
