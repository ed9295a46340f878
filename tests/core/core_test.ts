/**
 * core/ on its own: a synthetic machine written by saveCore and read back by readelf and gdb,
 * including more PT_LOADs than e_phnum can count (PN_XNUM) and the note layout gdb relies on.
 */
import assert from "node:assert/strict";
import {
  CoreFile,
  type CoreSource,
  type CpuState,
  discardUnfinished,
  saveCore,
  type SegmentState,
} from "../../core/mod.ts";
import { prstatus, PRSTATUS_SIZE, QEMU_CPU_STATE_SIZE, qemuCpuState } from "../../core/notes.ts";
import { CHUNK_BYTES, nonZeroRuns } from "../../core/writer.ts";
import { loads, readelf } from "../helpers/core_image.ts";
import { runGdb } from "../helpers/gdb.ts";

const segment: SegmentState = { selector: 0x10, limit: 0xffff_ffff, flags: 0xa09b00, base: 0n };

function cpu(vcpu: number): CpuState {
  return {
    vcpu,
    rax: 0x1111n,
    rbx: 0x2222n,
    rcx: 3n,
    rdx: 4n,
    rsi: 5n,
    rdi: 6n,
    rsp: 0x7000n,
    rbp: 0x7100n,
    r8: 8n,
    r9: 9n,
    r10: 10n,
    r11: 11n,
    r12: 12n,
    r13: 13n,
    r14: 14n,
    r15: 15n,
    rip: 0x40_1000n + BigInt(vcpu),
    rflags: 0x246n,
    cs: { ...segment, selector: 0x8 },
    ds: segment,
    es: segment,
    fs: segment,
    gs: segment,
    ss: segment,
    ldt: segment,
    tr: segment,
    gdt: segment,
    idt: segment,
    cr: [0x8000_0011n, 0n, 0n, 0x9000n, 0x20n],
    kernelGsBase: 0xffff_8880_0000_0000n,
  };
}

Deno.test("notes: NT_PRSTATUS carries pr_pid = vCPU + 1 and the registers where gdb reads them; QEMUCPUState version 1, 440 bytes", () => {
  const note = prstatus(cpu(2));
  const v = new DataView(note.buffer);
  assert.equal(v.getUint32(4, true), PRSTATUS_SIZE);
  const desc = 20; // Elf64_Nhdr (12) + "CORE\0" padded to 8
  assert.equal(v.getUint32(desc + 32, true), 3, "pr_pid");
  assert.equal(v.getBigUint64(desc + 112 + 16 * 8, true), 0x40_1002n, "pr_reg.rip");
  assert.equal(v.getBigUint64(desc + 112 + 19 * 8, true), 0x7000n, "pr_reg.rsp");
  const q = new DataView(qemuCpuState(cpu(0)).buffer);
  assert.equal(q.getUint32(4, true), QEMU_CPU_STATE_SIZE);
  assert.equal(q.getUint32(desc, true), 1, "version");
  assert.equal(q.getUint32(desc + 4, true), 440, "size");
  assert.equal(q.getBigUint64(desc + 392 + 3 * 8, true), 0x9000n, "cr3");
  assert.equal(q.getBigUint64(desc + 432, true), 0xffff_8880_0000_0000n, "kernel_gs_base");
});

Deno.test("zero pages are found page by page, a short last page included", () => {
  const b = new Uint8Array(5 * 4096 + 100);
  b[4096 + 7] = 1;
  b[3 * 4096 + 4095] = 1;
  b[5 * 4096 + 99] = 1;
  assert.deepEqual(nonZeroRuns(b), [[4096, 8192], [3 * 4096, 4 * 4096], [
    5 * 4096,
    5 * 4096 + 100,
  ]]);
  assert.deepEqual(nonZeroRuns(new Uint8Array(8192)), []);
  // One non-zero byte anywhere in a page, of any value (a word's sign bit too), makes it data.
  const page = new Uint8Array(2 * 4096);
  for (let at = 0; at < 4096; at++) {
    for (const value of [1, 0x80]) {
      page[4096 + at] = value;
      assert.deepEqual(nonZeroRuns(page), [[4096, 8192]], `byte ${at} = ${value}`);
    }
    page[4096 + at] = 0;
  }
});

Deno.test("written from views of the machine's memory or from copies, the files are the same, holes included", async () => {
  // Three chunks and a bit; zero pages at the start, inside and across chunk boundaries.
  const ram = new Uint8Array(3 * CHUNK_BYTES + 5 * 4096);
  for (let page = 0; page < ram.length / 4096; page++) {
    if (page % 7 < 3 || (page > 2040 && page < 2060)) continue;
    crypto.getRandomValues(ram.subarray(page * 4096, page * 4096 + 64));
  }
  // A second copy one byte in: its views sit at odd addresses, which the writer copies.
  const odd = new Uint8Array(ram.length + 1).subarray(1);
  odd.set(ram);
  const read = (from: Uint8Array) => (gpa: bigint, into: Uint8Array) =>
    into.set(from.subarray(Number(gpa), Number(gpa) + into.length));
  const view = (from: Uint8Array) => (gpa: bigint, length: number) =>
    from.subarray(Number(gpa), Number(gpa) + length);
  const base = { cpus: [cpu(0)], ranges: [{ gpa: 0n, length: BigInt(ram.length) }] };
  const sources: Record<string, CoreSource> = {
    copied: { ...base, read: read(ram) },
    viewed: { ...base, read: () => assert.fail("copied"), view: view(ram) },
    odd: { ...base, read: read(odd), view: view(odd) },
  };
  const dir = await Deno.makeTempDir({ prefix: "core-test-" });
  try {
    const files: Record<string, Uint8Array> = {};
    for (const [name, source] of Object.entries(sources)) {
      const result = await saveCore(source, `${dir}/${name}.core`);
      assert.equal(result.ram, BigInt(ram.length));
      files[name] = await Deno.readFile(`${dir}/${name}.core`);
    }
    assert.deepEqual(files.viewed, files.copied);
    assert.deepEqual(files.odd, files.copied);
    const [load] = loads(files.copied!);
    assert.deepEqual(files.copied!.subarray(load!.offset, load!.offset + load!.size), ram);
    // Holes: the files take less disk than their size (zero pages are never written).
    const info = await Deno.stat(`${dir}/viewed.core`);
    assert.ok((info.blocks ?? 0) * 512 < info.size * 0.7, `${info.blocks} blocks`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a signal's listener runs during a copy of zero pages, and its abort stops the copy", async () => {
  // 1 GiB of zero pages as views: no chunk writes anything, so only a turn of the event loop
  // per chunk lets the timer (a signal listener's stand-in) run before the copy ends.
  const zero = new Uint8Array(CHUNK_BYTES);
  const source: CoreSource = {
    cpus: [cpu(0)],
    ranges: [{ gpa: 0n, length: 128n * BigInt(CHUNK_BYTES) }],
    read: () => assert.fail("copied"),
    view: (_gpa, length) => zero.subarray(0, length),
  };
  const dir = await Deno.makeTempDir({ prefix: "core-abort-" });
  try {
    const stop = new AbortController();
    let chunks = 0;
    await assert.rejects(
      saveCore(source, `${dir}/zero.core`, {
        signal: stop.signal,
        // Armed once the copy is under way (the file's creation gives the loop turns of its own).
        onProgress: () => {
          if (chunks++ === 0) setTimeout(() => stop.abort(), 0);
        },
      }),
      (error: Error) => error.name === "AbortError",
    );
    assert.ok(chunks < 128, `all ${chunks} chunks were copied before the abort was seen`);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no file left");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("more than 65534 PT_LOADs: e_phnum is PN_XNUM and section 0 holds the count; readelf and gdb read it", async () => {
  const ram = new Uint8Array(70_000 * 4096);
  for (let page = 0; page < 70_000; page++) ram[page * 4096] = page & 0xff || 1;
  new TextEncoder().encodeInto("last page\0", ram.subarray(69_999 * 4096 + 16));
  // Every page mapped on its own, in reverse, so no two mappings merge.
  const mappings = Array.from({ length: 70_000 }, (_, page) => ({
    gva: 0xffff_c000_0000_0000n + BigInt(page) * 8192n,
    gpa: BigInt(page) * 4096n,
    length: 4096n,
  }));
  const source: CoreSource = {
    cpus: [cpu(0), cpu(1)],
    ranges: [{ gpa: 0n, length: BigInt(ram.length) }],
    mappings,
    read: (gpa, into) => into.set(ram.subarray(Number(gpa), Number(gpa) + into.length)),
  };
  const dir = await Deno.makeTempDir({ prefix: "core-test-" });
  try {
    const result = await saveCore(source, `${dir}/many.core`);
    assert.equal(result.loads, 70_000);
    const elf = await readelf(`${dir}/many.core`);
    // The gABI's escape for e_phnum (section 0's sh_info holds the count) is the only way to
    // write this many; readelf 2.40 then checks sh_info against the count it already read and
    // warns about the very field it used. That warning, and no other.
    assert.equal(
      elf.err.replace("readelf: Warning: [ 0]: Unexpected value (70001) in info field.\n", ""),
      "",
    );
    assert.match(elf.out, /Number of program headers:\s+65535 \(70001\)/);
    const last = `0x${(0xffff_c000_0000_0000n + 69_999n * 8192n + 16n).toString(16)}`;
    const { output } = await runGdb([`core-file ${dir}/many.core`, "info threads", `x/s ${last}`]);
    assert.match(output, /2 +LWP 2/);
    assert.match(output, /"last page"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("discardUnfinished removes this process's unpublished cores for a name, nothing else", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/vm.core`;
    const unfinished = await CoreFile.create(path);
    const others = [`${dir}/.vm.core.1.abc.part`, `${dir}/.other.core.${Deno.pid}.abc.part`, path];
    for (const other of others) await Deno.writeTextFile(other, "not ours to remove");
    assert.equal(discardUnfinished(path), 1);
    const left = [...Deno.readDirSync(dir)].map((e) => `${dir}/${e.name}`).sort();
    assert.deepEqual(left, [...others].sort());
    unfinished.discard(); // already gone: no error
    assert.equal(discardUnfinished(`${dir}/missing/vm.core`), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
