/**
 * Device memory (boot ROM, framebuffer): segments beside system memory that /dev/vmm/NAME does
 * not map. vmm.ko gives each its own node, /dev/vmm.io/NAME.SEGNAME, mapped at the offset
 * within the segment (docs/bhyve-facts.md, "Memory segments").
 *
 * @module
 */
import type { MemoryRange } from "../vmm/vmmapi.ts";
import { errnoName } from "./errno.ts";
import { libc } from "./libc.ts";
import { MapError, MappedRange } from "./memory.ts";
import { devmemPath } from "./paths.ts";

/** Maps `range` of VM `vm` read-only through its segment's node; throws MapError. */
export function mapDeviceMemory(vm: string, range: MemoryRange): MappedRange {
  const path = devmemPath(vm, range.segmentName);
  const c = libc();
  const fd = c.openReadOnly(path);
  if (fd < 0) {
    const errno = c.errno();
    throw new MapError(`open ${path}: ${errnoName(errno)} (${c.strerror(errno)})`);
  }
  try {
    // The mapping outlives the descriptor.
    return MappedRange.map(fd, range.gpa, range.length, { offset: range.segoff });
  } finally {
    c.close(fd);
  }
}
