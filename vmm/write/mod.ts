/**
 * Writes to the guest, for `--allow-write` (gdb `set var`, `restore`, `set $rax`, `jump`;
 * lldb `memory write`, `register write`), and for anything else that must change guest state
 * (an emulator committing what it ran): the one write path.
 *
 * Memory goes page by page through the vCPU's own translation into guest RAM, never past a
 * page that does not translate or is not RAM: MMIO (in-kernel devices included) is refused,
 * since a write there is a device access with side effects, not a memory update; so is device
 * memory (the boot ROM, the framebuffer), which is read through its devmem node, read-only. A write that
 * stops part-way says how many bytes it wrote. Registers go through vm_set_register; setting
 * RIP also moves vmm's nextrip (vmm.c's vm_set_register), so the vCPU resumes there.
 *
 * The caller holds the vCPU (a parked vCPU cannot race its own update) and drops its caches
 * afterwards (a write may change page tables, or the registers a translation depends on).
 *
 * @module
 */
import { TargetError } from "../../rsp/target.ts";
import type { GuestMemory } from "../memory.ts";
import type { RegisterDef } from "../registers.ts";
import type { GuestPaging, VmHandle } from "../vmmapi.ts";

/** EFAULT for memory, EPERM for a register libvmmapi cannot set. */
const EFAULT = 14;
const EPERM = 1;
/** vm_gla2gpa_nofault's prot: presence is enough (a debugger writes read-only code too, as QEMU's does). */
const PROT_READ = 1;
const PAGE = 4096n;

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** Guest writes of one VM. */
export class GuestWriter {
  readonly #vm: VmHandle;
  readonly #memory: GuestMemory;

  constructor(vm: VmHandle, memory: GuestMemory) {
    this.#vm = vm;
    this.#memory = memory;
  }

  /**
   * Writes `data` at `address`: guest-virtual through `paging` on `vcpu`, or guest-physical
   * when `paging` is undefined. Throws {@link TargetError} when not all of it could be written,
   * saying how much was.
   */
  writeMemory(
    vcpu: number,
    paging: GuestPaging | undefined,
    address: bigint,
    data: Uint8Array,
  ): void {
    const writeRam = this.#vm.writeRam?.bind(this.#vm);
    if (writeRam === undefined) {
      throw new TargetError("Cannot write guest memory: the VM was opened read-only", EFAULT);
    }
    let done = 0;
    const stop = (reason: string): never => {
      const message = done === 0
        ? `Cannot write guest memory: ${reason}`
        : `Wrote ${done} of ${data.length} bytes at ${hex(address)}, then stopped: ${reason}`;
      throw new TargetError(message, EFAULT);
    };
    while (done < data.length) {
      const at = address + BigInt(done);
      const gpa = paging === undefined ? at : this.#vm.gla2gpa(vcpu, paging, at, PROT_READ);
      if (gpa === undefined) stop(`${hex(at)} is not mapped on vCPU ${vcpu}`);
      const route = this.#memory.route(gpa!);
      if (route.kind === "device") {
        stop(`${hex(gpa!)} is the ${route.device.name}: writes to MMIO are refused`);
      }
      if (route.kind === "refused") {
        stop(`${hex(gpa!)} is not guest RAM (MMIO or unbacked): writes to it are refused`);
      }
      if (route.kind !== "ram") break;
      if (route.range.segmentName !== "") {
        // Device memory (boot ROM, framebuffer) is mapped read-only through its devmem node.
        stop(
          `${
            hex(gpa!)
          } is device memory (segment "${route.range.segmentName}"): writes to it are refused`,
        );
      }
      const pageLeft = paging === undefined ? BigInt(data.length) : PAGE - (at % PAGE);
      const rangeLeft = route.range.gpa + route.range.length - gpa!;
      let chunk = data.length - done;
      if (BigInt(chunk) > pageLeft) chunk = Number(pageLeft);
      if (BigInt(chunk) > rangeLeft) chunk = Number(rangeLeft);
      writeRam(gpa!, data.subarray(done, done + chunk));
      done += chunk;
    }
  }

  /** Sets register `def` of `vcpu` to `value` (little-endian, bitsize/8 bytes). */
  writeRegister(vcpu: number, def: RegisterDef, value: Uint8Array): void {
    const setRegister = this.#vm.setRegister?.bind(this.#vm);
    if (def.source.kind !== "vmm" || setRegister === undefined) {
      throw new TargetError(
        `Register ${def.name} cannot be written: libvmmapi has no call that sets it`,
        EPERM,
      );
    }
    if (value.length !== def.bitsize / 8) {
      throw new TargetError(
        `Register ${def.name} is ${def.bitsize / 8} bytes, not ${value.length}`,
        EPERM,
      );
    }
    let number = 0n;
    for (let i = value.length - 1; i >= 0; i--) number = (number << 8n) | BigInt(value[i]!);
    setRegister(vcpu, def.source.id, number);
  }
}
