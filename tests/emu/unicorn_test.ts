/**
 * The libunicorn emulator on a tiny 64-bit machine: counting, breakpoints, watchpoints,
 * collected writes, refusals, and that the RAM file (the "guest") is never changed.
 */
import assert from "node:assert/strict";
import { loadEmulator, UnicornLoadError } from "../../ffi/emulator.ts";
import {
  CODE,
  DATA,
  longModeState,
  protectedModeState,
  RAM_BYTES,
  unicornPath,
  writeMachine,
} from "./machine.ts";

const path = unicornPath();

// mov rcx, 100000; l: add rax, rcx; mov [DATA], rax; dec rcx; jnz l; hlt
const LOOP = [
  ...[0x48, 0xc7, 0xc1, 0xa0, 0x86, 0x01, 0x00],
  ...[0x48, 0x01, 0xc8],
  ...[0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00],
  ...[0x48, 0xff, 0xc9],
  ...[0x75, 0xf0],
  0xf4,
];

async function withEmulator(
  code: number[],
  f: (emu: ReturnType<ReturnType<typeof loadEmulator>["open"]>, file: string) => Promise<void>,
) {
  const lib = loadEmulator(path);
  const file = Deno.makeTempFileSync({ suffix: ".ram" });
  writeMachine(file, code);
  const image = lib.ramFromFile(file, [{ gpa: 0n, length: BigInt(RAM_BYTES) }], [0n]);
  const emu = lib.open(image);
  try {
    await f(emu, file);
  } finally {
    emu.close();
    image.close();
    lib.close();
    Deno.removeSync(file);
  }
}

Deno.test("a missing libunicorn says how to get it", () => {
  const error = catchError(() => loadEmulator("/nonexistent/libunicorn.so.2"));
  assert.ok(error instanceof UnicornLoadError);
  assert.match(error.message, /pip install unicorn/);
  assert.match(error.message, /pkg install unicorn/);
});

Deno.test({
  name: "emulated loop: steps, a run to the end, writes collected, guest file untouched",
  fn: () =>
    withEmulator(LOOP, async (emu, file) => {
      const one = await emu.run({ state: longModeState(), count: 1 });
      assert.deepStrictEqual(one.stop, { kind: "count" });
      assert.deepStrictEqual(one.executed, 1);
      assert.deepStrictEqual(one.state.scalars.rip, CODE + 7n);
      assert.deepStrictEqual(one.state.scalars.rcx, 100000n);
      assert.deepStrictEqual(one.writes, []);

      const three = await emu.run({ state: one.state, count: 3 });
      assert.deepStrictEqual(three.state.scalars.rax, 100000n);
      assert.deepStrictEqual(three.state.scalars.rcx, 99999n);
      // The bytes that changed: 100000 = 0x0186a0 over zeros.
      assert.deepStrictEqual(three.writes, [{ gpa: DATA, bytes: Uint8Array.of(0xa0, 0x86, 0x01) }]);

      const rest = await emu.run({ state: three.state, count: 10_000_000 });
      assert.deepStrictEqual(rest.stop.kind, "refused");
      assert.match((rest.stop as { message: string }).message, /0x10017.*HLT/);
      assert.deepStrictEqual(rest.state.scalars.rip, CODE + 0x17n); // HLT not executed
      assert.deepStrictEqual(rest.state.scalars.rax, 5000050000n);
      assert.deepStrictEqual(rest.executed, 4 * 100000 - 3);

      // The RAM file is the guest: nothing written to it.
      const bytes = Deno.readFileSync(file);
      assert.deepStrictEqual(bytes.subarray(Number(DATA), Number(DATA) + 8), new Uint8Array(8));
    }),
});

Deno.test({
  name: "emulated breakpoints and watchpoints stop at the right instruction",
  fn: () =>
    withEmulator(LOOP, async (emu) => {
      const bp = await emu.run({
        state: longModeState(),
        count: 1000,
        breakpoints: [{ kind: "sw", address: CODE + 0x12n, length: 1 }],
      });
      assert.deepStrictEqual(bp.stop.kind, "breakpoint");
      assert.deepStrictEqual(bp.state.scalars.rip, CODE + 0x12n);
      assert.deepStrictEqual(bp.executed, 3);

      const watch = await emu.run({
        state: longModeState(),
        count: 1000,
        breakpoints: [{ kind: "write", address: DATA + 4n, length: 4 }],
      });
      assert.deepStrictEqual(watch.stop, {
        kind: "watch",
        breakpoint: { kind: "write", address: DATA + 4n, length: 4 },
        address: DATA + 4n,
      });
      // Stopped right after the store completed.
      assert.deepStrictEqual(watch.state.scalars.rip, CODE + 0x12n);
      assert.deepStrictEqual(watch.executed, 3);
    }),
});

Deno.test({
  name: "emulated refusals: port I/O, MMIO, a page fault, SSE; nothing executed",
  fn: async () => {
    const cases: [number[], RegExp][] = [
      [[0xe6, 0x80], /OUT: port I\/O/],
      [[0x8b, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00], /outside guest RAM/], // mov eax, [0x300000]
      [[0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40], /#PF.*0x40000000.*continue natively/],
      [[0x0f, 0x28, 0xc1], /SSE.*libvmmapi/],
      [[0x0f, 0xa2], /CPUID/],
      [[0x0f, 0x01, 0xf8], /SWAPGS/],
    ];
    for (const [code, message] of cases) {
      await withEmulator([0x90, ...code], async (emu) => {
        const run = await emu.run({ state: longModeState(), count: 5 });
        assert.deepStrictEqual(run.stop.kind, "refused", `${code}`);
        assert.match((run.stop as { message: string }).message, message);
        assert.deepStrictEqual(run.executed, 1);
        assert.deepStrictEqual(run.state.scalars.rip, CODE + 1n);
        assert.equal(run.writes.length, 0);
      });
    }
  },
});

function catchError(f: () => unknown): Error {
  try {
    f();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error");
}

Deno.test("read and access watchpoints stop after the load; a write watchpoint ignores loads", async () => {
  // mov rax, [DATA]; nop; mov [DATA], rax
  const code = [
    ...[0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00],
    0x90,
    ...[0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00],
    0xf4,
  ];
  await withEmulator(code, async (emu) => {
    for (const kind of ["read", "access"] as const) {
      const run = await emu.run({
        state: longModeState(),
        count: 100,
        breakpoints: [{ kind, address: DATA, length: 8 }],
      });
      assert.deepStrictEqual(run.stop, {
        kind: "watch",
        breakpoint: { kind, address: DATA, length: 8 },
        address: DATA,
      });
      assert.equal(run.executed, 1);
      assert.equal(run.state.scalars.rip, CODE + 8n);
    }
    const write = await emu.run({
      state: longModeState(),
      count: 100,
      breakpoints: [{ kind: "write", address: DATA, length: 8 }],
    });
    assert.equal(write.stop.kind, "watch");
    assert.equal(write.executed, 3);
    // The read hook is gone again: a plain run is not slowed or stopped by it.
    const plain = await emu.run({ state: longModeState(), count: 2 });
    assert.deepStrictEqual(plain.stop, { kind: "count" });
  });
});

Deno.test("32-bit protected mode: 32-bit operands and addresses, 0x48 is DEC EAX", async () => {
  // mov eax, 5; dec eax; add eax, eax; mov [DATA], eax; hlt
  const code = [
    ...[0xb8, 0x05, 0x00, 0x00, 0x00],
    0x48,
    ...[0x01, 0xc0],
    ...[0xa3, 0x00, 0x00, 0x02, 0x00],
    0xf4,
  ];
  await withEmulator(code, async (emu) => {
    const state = protectedModeState();
    state.scalars.rax = 0xffff_ffff_0000_0000n;
    const run = await emu.run({ state, count: 10 });
    assert.match((run.stop as { message: string }).message, /HLT/);
    assert.equal(run.executed, 4);
    assert.equal(run.state.scalars.rax & 0xffff_ffffn, 8n);
    assert.equal(run.state.scalars.rip, CODE + 13n);
    assert.deepStrictEqual(run.writes, [{ gpa: DATA, bytes: Uint8Array.of(8) }]);
  });
});

Deno.test("block mode: a breakpoint inside a checked block, a fault in one, writes from copied pages", async () => {
  await withEmulator(LOOP, async (emu) => {
    // 1 + 25 turns of the loop: its block is checked and known by then; RIP at its start.
    const warm = await emu.run({ state: longModeState(), count: 101 });
    assert.equal(warm.state.scalars.rip, CODE + 7n);
    const bp = await emu.run({
      state: warm.state,
      count: 1000,
      breakpoints: [{ kind: "sw", address: CODE + 0x12n, length: 1 }],
    });
    assert.deepStrictEqual(bp.stop, {
      kind: "breakpoint",
      breakpoint: { kind: "sw", address: CODE + 0x12n, length: 1 },
    });
    assert.equal(bp.executed, 2);
    assert.equal(bp.state.scalars.rip, CODE + 0x12n);
  });
  // mov al, 1; mov edi, DATA; l: mov [rdi], al; add rdi, 0x1000; jmp l -- until 2 MiB, where
  // RAM ends and device memory begins.
  const code = [
    ...[0xb0, 0x01],
    ...[0xbf, 0x00, 0x00, 0x02, 0x00],
    ...[0x88, 0x07],
    ...[0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00],
    ...[0xeb, 0xf5],
  ];
  await withEmulator(code, async (emu) => {
    const run = await emu.run({ state: longModeState(), count: 100_000 });
    assert.equal(run.stop.kind, "refused");
    assert.match((run.stop as { message: string }).message, /0x10007.*outside guest RAM/);
    const turns = (0x20_0000 - Number(DATA)) / 0x1000;
    assert.equal(run.executed, 2 + 3 * turns);
    assert.equal(run.state.scalars.rip, CODE + 7n);
    assert.equal(run.state.scalars.rdi, 0x20_0000n);
    const stores = run.writes.filter((w) => w.gpa >= DATA);
    assert.equal(stores.length, turns);
    assert.deepStrictEqual(stores[0], { gpa: DATA, bytes: Uint8Array.of(1) });
    // The rest is what the CPU itself writes: accessed and dirty bits in the page tables.
    for (const w of run.writes.filter((w) => w.gpa < DATA)) {
      assert.ok(w.gpa >= 0x1000n && w.gpa < 0x4000n, `0x${w.gpa.toString(16)}`);
    }
  });
});
