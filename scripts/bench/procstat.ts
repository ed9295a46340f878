/**
 * A server process's memory and CPU time, from /proc/PID/status and /proc/PID/stat.
 *
 * @module
 */

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** Peak and current resident set size in MiB (VmHWM, VmRSS). */
export function memory(pid: number): { peakMiB: number; rssMiB: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { peakMiB: kib("VmHWM") / 1024, rssMiB: kib("VmRSS") / 1024 };
}

/** User plus system CPU time of the process (all its threads) so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the ')'.
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}
