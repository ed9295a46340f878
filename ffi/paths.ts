/**
 * Where vmm.ko's device nodes are, on FreeBSD and for the test VM that stands in for it on
 * Linux (tests/testvm: hv/control.c, hv/bootrom.c, lib/transport.c).
 *
 * - `/dev/vmm/NAME`: the VM (vm_open opens it). `w` mode waits for it to exist before it calls
 *   vm_open once: on 15, vm_open may load vmm.ko and opens /dev/vmmctl first.
 * - `/dev/vmm.io/NAME.SEGNAME`: one device-memory segment (boot ROM, framebuffer), mapped at
 *   the offset within the segment (sys/dev/vmm/vmm_dev.c, devmem_create_cdev).
 *
 * The test VM keeps both under `$TESTVM_DIR` (default /tmp/testvm-vmm): `NAME` is its control
 * socket, `vmm.io/NAME.SEGNAME` a node for the segment's memory.
 *
 * @module
 */

const TESTVM_DEFAULT_DIR = "/tmp/testvm-vmm";

function testvmDir(): string {
  const dir = Deno.env.get("TESTVM_DIR");
  return dir !== undefined && dir !== "" ? dir : TESTVM_DEFAULT_DIR;
}

const onFreeBSD = () => Deno.build.os === "freebsd";

/** The VM's device node (FreeBSD: /dev/vmm/NAME). */
export function vmDevicePath(name: string): string {
  return onFreeBSD() ? `/dev/vmm/${name}` : `${testvmDir()}/${name}`;
}

/** A device-memory segment's node (FreeBSD: /dev/vmm.io/NAME.SEGNAME). */
export function devmemPath(name: string, segment: string): string {
  return onFreeBSD()
    ? `/dev/vmm.io/${name}.${segment}`
    : `${testvmDir()}/vmm.io/${name}.${segment}`;
}
