import assert from "node:assert/strict";
import { decodeCpuset, errnoName, loadVmmapi, VmmapiLoadError } from "../../ffi/mod.ts";
import { libc } from "../../ffi/libc.ts";
import { lastError } from "../../ffi/errno.ts";
import { MapError, MappedRange } from "../../ffi/memory.ts";
import { LIBVMMAPI } from "../helpers/testvm.ts";

Deno.test("a load failure names every path tried and how to point at the library", () => {
  assert.throws(() => loadVmmapi({ path: "/nonexistent/libvmmapi.so.6" }), (e: unknown) => {
    assert.ok(e instanceof VmmapiLoadError);
    assert.deepEqual(e.tried, ["/nonexistent/libvmmapi.so.6"]);
    assert.match(e.message, /Tried:\n {2}\/nonexistent\/libvmmapi\.so\.6: /);
    assert.match(e.message, /--vmmapi PATH or BHYVE_GDBSTUB_VMMAPI=PATH/);
    assert.ok(e.cause instanceof Error);
    return true;
  });
});

Deno.test("without a path, .so.7, .so.6, .so.5, then other sonames in the library dir are tried", () => {
  const dir = Deno.makeTempDirSync({ prefix: "libdir-" });
  try {
    Deno.writeTextFileSync(`${dir}/libvmmapi.so.8`, "not an ELF file");
    Deno.writeTextFileSync(`${dir}/libvmmapi.so.10`, "not an ELF file");
    Deno.writeTextFileSync(`${dir}/libvmmapi.so.6`, "a known soname: tried by name, not here");
    Deno.writeTextFileSync(`${dir}/libvmmapi.so.8.debug`, "not a soname");
    let api;
    try {
      api = loadVmmapi({ libraryDir: dir });
    } catch (e) {
      assert.ok(e instanceof VmmapiLoadError);
      assert.deepEqual(e.tried, [
        "libvmmapi.so.7",
        "libvmmapi.so.6",
        "libvmmapi.so.5",
        `${dir}/libvmmapi.so.10`,
        `${dir}/libvmmapi.so.8`,
      ]);
      for (const path of e.tried) assert.ok(e.message.includes(`  ${path}: `), path);
      return;
    }
    api.close(); // a host that has one installed
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("an unknown soname in the library dir is loaded and its generation detected", () => {
  const dir = Deno.makeTempDirSync({ prefix: "libdir-" });
  try {
    Deno.copyFileSync(LIBVMMAPI["0200"], `${dir}/libvmmapi.so.9`);
    let api;
    try {
      api = loadVmmapi({ libraryDir: dir });
    } catch (e) {
      assert.fail(`not loaded: ${e}`);
    }
    try {
      // A host with a real libvmmapi.so.7/6/5 would load that first.
      if (api.path === `${dir}/libvmmapi.so.9`) assert.equal(api.generation, "0200");
    } finally {
      api.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a cpuset decodes bit n of the little-endian longs as CPU n", () => {
  const set = new Uint8Array(512);
  set[0] = 0b1000_0101;
  set[8] = 0x01; // CPU 64
  set[511] = 0x80; // CPU 4095
  assert.deepEqual(decodeCpuset(set), [0, 2, 7, 64, 4095]);
});

Deno.test("errno comes from libc and becomes a readable VmmError", () => {
  // mmap on a closed descriptor fails with EBADF.
  assert.throws(() => MappedRange.map(-1, 0n, 4096n), (e: unknown) => {
    assert.ok(e instanceof MapError);
    assert.match(e.message, /failed: EBADF \(/);
    return true;
  });
  libc().mmap(4096n, -1, 0n);
  const error = lastError("vm_get_register", "vCPU 2, RIP");
  assert.equal(error.code, "EBADF");
  assert.equal(error.errno, 9);
  assert.match(error.message, /^vm_get_register\(vCPU 2, RIP\) failed: EBADF \(.+\)$/);
  assert.equal(errnoName(6), "ENXIO");
  assert.equal(errnoName(9999), "E9999");
});

Deno.test({
  name: "guest RAM mapped writable (--allow-write) is written through; read-only refuses",
  ignore: Deno.build.os !== "linux",
}, () => {
  // A memfd stands in for the VM's device fd: both are shared mappings at offset = address.
  const c = Deno.dlopen("libc.so.6", {
    memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
    ftruncate: { parameters: ["i32", "i64"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
  });
  const fd = c.symbols.memfd_create(new TextEncoder().encode("ram\0"), 0);
  assert.ok(fd >= 0);
  assert.equal(c.symbols.ftruncate(fd, 0x2000n), 0);
  const writable = MappedRange.map(fd, 0x1000n, 0x1000n, { writable: true });
  const readOnly = MappedRange.map(fd, 0x1000n, 0x1000n);
  try {
    assert.throws(() => readOnly.write(0x1800n, Uint8Array.of(1)), /mapped read-only/);
    writable.write(0x1ffen, Uint8Array.of(0xab, 0xcd));
    const back = new Uint8Array(2);
    readOnly.read(0x1ffen, back);
    assert.deepEqual([...back], [0xab, 0xcd], "the write reached the shared memory");
  } finally {
    writable.unmap();
    readOnly.unmap();
    c.symbols.close(fd);
    c.close();
  }
});
