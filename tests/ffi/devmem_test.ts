/**
 * Device memory is mapped through its own node at the offset within the segment, here against
 * a file laid out like the test VM's boot ROM node (a segment whose upper half is mapped).
 */
import assert from "node:assert/strict";
import { mapDeviceMemory } from "../../ffi/devmem.ts";
import { MapError } from "../../ffi/memory.ts";
import { devmemPath, vmDevicePath } from "../../ffi/paths.ts";
import { VM_SYMBOLS } from "../../ffi/symbols_vm.ts";
import { VMEXIT_USERSPACE_DESC } from "../../ffi/vm.ts";
import type { MemoryRange } from "../../vmm/vmmapi.ts";
import { LIBVMMAPI } from "../helpers/testvm.ts";

const ROM: MemoryRange = {
  gpa: 0xffff_0000n,
  length: 0x1_0000n,
  segid: 8,
  segoff: 0x1_0000n,
  prot: 5,
  flags: 0,
  segmentName: "bootrom",
  readable: false,
};

async function withTestvmDir(f: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "devmem-" });
  const before = Deno.env.get("TESTVM_DIR");
  Deno.env.set("TESTVM_DIR", dir);
  try {
    await f(dir);
  } finally {
    if (before === undefined) Deno.env.delete("TESTVM_DIR");
    else Deno.env.set("TESTVM_DIR", before);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the test VM's nodes live under TESTVM_DIR, FreeBSD's under /dev", async () => {
  await withTestvmDir((dir) => {
    if (Deno.build.os === "freebsd") {
      assert.equal(vmDevicePath("vm1"), "/dev/vmm/vm1");
      assert.equal(devmemPath("vm1", "bootrom"), "/dev/vmm.io/vm1.bootrom");
    } else {
      assert.equal(vmDevicePath("vm1"), `${dir}/vm1`);
      assert.equal(devmemPath("vm1", "bootrom"), `${dir}/vmm.io/vm1.bootrom`);
    }
  });
});

Deno.test({
  name: "a device-memory range is mapped at its segment offset, read-only",
  ignore: Deno.build.os === "freebsd",
}, async () => {
  await withTestvmDir(async (dir) => {
    const segment = new Uint8Array(0x2_0000);
    segment.set(new TextEncoder().encode("lower half"), 0);
    segment.set(new TextEncoder().encode("testvm boot ROM"), 0x1_0000);
    segment.set([0xfa, 0xf4, 0xeb, 0xfd], 0x2_0000 - 16); // at 0xfffffff0
    await Deno.mkdir(`${dir}/vmm.io`);
    await Deno.writeFile(`${dir}/vmm.io/vm1.bootrom`, segment);
    const mapped = mapDeviceMemory("vm1", ROM);
    try {
      assert.ok(mapped.contains(0xffff_0000n, 15));
      const text = new Uint8Array(15);
      mapped.read(0xffff_0000n, text);
      assert.equal(new TextDecoder().decode(text), "testvm boot ROM");
      const reset = new Uint8Array(4);
      mapped.read(0xffff_fff0n, reset);
      assert.deepEqual([...reset], [0xfa, 0xf4, 0xeb, 0xfd]);
    } finally {
      mapped.unmap();
    }
  });
});

Deno.test("a missing node is a MapError naming the path and errno", async () => {
  await withTestvmDir(() => {
    assert.throws(() => mapDeviceMemory("nope", ROM), (e: unknown) => {
      assert.ok(e instanceof MapError);
      assert.match(e.message, /open .*nope\.bootrom: ENOENT/);
      return true;
    });
  });
});

Deno.test("the test VM's libvmmapi describes VMEXIT_USERSPACE in FreeBSD's words", () => {
  for (const path of Object.values(LIBVMMAPI)) {
    const lib = Deno.dlopen(path, { vm_get_stat_desc: VM_SYMBOLS.vm_get_stat_desc });
    try {
      const describe = lib.symbols.vm_get_stat_desc!;
      const first = describe(null, 0);
      assert.ok(first !== null, path);
      assert.equal(Deno.UnsafePointerView.getCString(first), VMEXIT_USERSPACE_DESC);
      assert.equal(describe(null, 1), null, "past the last counter");
    } finally {
      lib.close();
    }
  }
});
