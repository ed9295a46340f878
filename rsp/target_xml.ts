/**
 * target.xml, generated from the target's register table so `g`, `p` and the description
 * can never disagree. See https://sourceware.org/gdb/current/onlinedocs/gdb.html/Target-Descriptions.html
 *
 * @module
 */
import type { RegisterInfo, TargetDescription } from "./target.ts";

function attr(value: string | number): string {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
}

function regXml(reg: RegisterInfo): string {
  const group = reg.group === undefined ? "" : ` group="${attr(reg.group)}"`;
  return `<reg name="${attr(reg.name)}" bitsize="${reg.bitsize}" regnum="${reg.regnum}"` +
    ` type="${attr(reg.type)}"${group}/>`;
}

/**
 * The whole target.xml for `description`.
 *
 * @example
 * ```ts
 * targetXml({ architecture: "i386:x86-64", features: [] });
 * // '<?xml version="1.0"?>...<architecture>i386:x86-64</architecture></target>'
 * ```
 */
export function targetXml(description: TargetDescription): string {
  const lines = [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    `<architecture>${attr(description.architecture)}</architecture>`,
  ];
  for (const feature of description.features) {
    lines.push(`<feature name="${attr(feature.name)}">`);
    if (feature.typesXml !== undefined) lines.push(feature.typesXml);
    for (const reg of feature.registers) lines.push(regXml(reg));
    lines.push("</feature>");
  }
  lines.push("</target>");
  return lines.join("\n") + "\n";
}

/** Every register of `description` in regnum order. */
export function registersByNumber(description: TargetDescription): RegisterInfo[] {
  return description.features.flatMap((f) => f.registers).sort((a, b) => a.regnum - b.regnum);
}
