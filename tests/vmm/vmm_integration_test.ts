/**
 * The VM model against the test VM, from this (separate) process, through both libvmmapi
 * generations: libvmmapi.so.6 (0200) with a FreeBSD 15 kernel's registers and libvmmapi.so.5
 * (0103) with a 13.x kernel's. Values are checked against what the demo guest documents
 * (tests/testvm/layout.ts).
 */
import assert from "node:assert/strict";
import { loadVmmapi } from "../../ffi/mod.ts";
import { TargetError, TargetGoneError } from "../../rsp/target.ts";
import { walk } from "../../vmm/page_walk.ts";
import { registerByName } from "../../vmm/registers.ts";
import {
  CpuMode,
  type GuestPaging,
  openTarget,
  PagingMode,
  type Vmmapi,
  VmReg,
  VmTarget,
  waitAndHold,
} from "../../vmm/mod.ts";
import { LIBVMMAPI, TestVm, testvmBuilt, type TestVmOptions } from "../helpers/testvm.ts";
import * as L from "../testvm/layout.ts";

const ignore = !testvmBuilt();
const PROBE = new URL("../testvm/build/probe", import.meta.url).pathname;
const SUITES = [
  { generation: "0200", vmmVersion: 15 },
  { generation: "0103", vmmVersion: 13 },
] as const;

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes).replace(/\0.*$/s, "");
const le = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : bytes.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A test VM, the library, and a target on it; everything torn down by dispose. */
class Fixture implements AsyncDisposable {
  constructor(readonly vm: TestVm, readonly api: Vmmapi, readonly target: VmTarget) {}

  static async start(generation: "0200" | "0103", options: TestVmOptions): Promise<Fixture> {
    const vm = await TestVm.start(options);
    try {
      vm.useDirHere();
      const api = loadVmmapi({ path: LIBVMMAPI[generation] });
      assert.equal(api.generation, generation);
      return new Fixture(vm, api, openTarget(api, vm.name, { heldPollMs: 20, runningPollMs: 20 }));
    } catch (error) {
      await vm.stop();
      throw error;
    }
  }

  /** Physical u32/u64 of the guest layout, read while the VM runs. */
  u(gpa: bigint, size: 4 | 8): bigint {
    return le(this.target.memory.readPhysical(0, gpa, size))!;
  }

  /** Waits until vCPUs `cpus` report their mode in the guest's percpu area. */
  async booted(cpus: number[], timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!cpus.every((cpu) => this.u(L.percpuPhys(cpu, L.PC_MODE), 4) !== 0n)) {
      if (performance.now() > deadline) throw new Error(`vCPUs ${cpus} did not boot`);
      await sleep(20);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      if (this.target.gone === undefined) await this.target.close();
      else this.target.vm.close();
      this.api.close();
    } finally {
      await this.vm.stop();
    }
  }
}

for (const { generation, vmmVersion } of SUITES) {
  const name = (what: string) => `[libvmmapi ${generation}, vmm ${vmmVersion}] ${what}`;

  Deno.test({ name: name("threads, registers and memory of every vCPU"), ignore }, async () => {
    await using f = await Fixture.start(generation, { cpus: 4, vmmVersion });
    await f.booted([0, 1, L.PAE_CPU]);
    const t = f.target;
    assert.deepEqual(await t.stop(), {
      kind: "stopped",
      thread: 1,
      signal: 5,
      reason: { type: "interrupt" },
    });
    assert.deepEqual(t.threads().map((th) => th.id), [1, 2, 3, 4]);
    assert.match(t.threads()[0]!.extra, /^vCPU 0, held by debugger, long mode, 4-level paging$/);
    assert.match(t.threads()[L.PARKED_CPU]!.extra, /^vCPU 3, held by bhyve, real mode/);

    for (const cpu of [0, 1]) {
      const thread = cpu + 1;
      const regs = t.readRegisters(thread);
      const reg = (n: string) => le(regs[registerByName(n)!.regnum]);
      assert.equal(reg("cr3"), f.u(L.percpuPhys(cpu, L.PC_CR3), 8), `cr3 of vCPU ${cpu}`);
      assert.ok(reg("rip")! >= L.KERNEL_VBASE, `rip of vCPU ${cpu} in the kernel`);
      assert.ok((reg("efer")! & 0x400n) !== 0n, "EFER.LMA");
      assert.equal(reg("st0"), undefined);
      assert.equal(reg("xmm0"), undefined);
      for (const n of ["fs_base", "gs_base", "cr8", "gdtr_base", "idtr_limit", "dr7"]) {
        assert.notEqual(reg(n), undefined, n);
      }
      assert.equal(reg("fs_base"), t.vm.getSegDesc(cpu, VmReg.FS).base);
      assert.equal(reg("k_gs_base") !== undefined, vmmVersion >= 15, "k_gs_base only on 15");
      assert.deepEqual(t.readRegister(thread, registerByName("rip")!.regnum), regs[16]);

      assert.equal(le(t.readMemory(thread, L.LAYOUT_VA, 8)), L.GUEST_MAGIC);
      assert.equal(text(t.readMemory(thread, L.PRIVATE_VA, 64)), L.privateText(cpu));
      const msg = t.readMemory(
        thread,
        L.LAYOUT_VA + L.OFF_PERCPU + BigInt(cpu) * L.PERCPU_SIZE + L.PC_MSG,
        L.PC_MSG_LEN,
      );
      assert.equal(text(msg), L.vcpuMessage(cpu));
      // The local APIC through kernemu: its ID register holds the vCPU's APIC id.
      const apicId = le(t.readMemory(thread, L.LAPIC_VA + L.LAPIC_REG_ID, 4))! >> 24n;
      assert.equal(apicId, f.u(L.percpuPhys(cpu, L.PC_ID), 4));
    }
    // The same virtual page holds different data per vCPU; DMAP and KERNEL alias RAM.
    assert.notEqual(
      text(t.readMemory(1, L.PRIVATE_VA, 32)),
      text(t.readMemory(2, L.PRIVATE_VA, 32)),
    );
    const viaDmap = t.readMemory(1, L.DMAP_VBASE + L.LAYOUT_PHYS - 8n, 16);
    assert.deepEqual(viaDmap, t.memory.readPhysical(0, L.LAYOUT_PHYS - 8n, 16));

    // Short read where the private page meets the MMIO page; refusal on MMIO; unmapped.
    assert.equal(t.readMemory(1, L.PRIVATE_VA + 0xff8n, 16).length, 8);
    assert.throws(() => t.readMemory(1, L.MMIO_VA, 8), (e: unknown) => {
      assert.ok(e instanceof TargetError);
      assert.equal(e.code, 14);
      assert.match(
        e.message,
        /0xd0000000 is not guest RAM: it is MMIO emulated inside the bhyve process/,
      );
      return true;
    });
    assert.throws(() => t.readMemory(1, L.WINDOW_VBASE + 0x3000n, 8), {
      message: "Cannot read guest memory: 0xffff800000003000 is not mapped on vCPU 0",
    });

    // The 32-bit vCPU reads through its own tables.
    const pae = t.pagingState(L.PAE_CPU).paging;
    assert.equal(pae.cpuMode, CpuMode.PROTECTED);
    if (f.u(L.LAYOUT_PHYS + L.OFF_PAE_ACTIVE, 4) === 1n) {
      assert.equal(pae.pagingMode, PagingMode.PAE);
      assert.equal(
        text(t.readMemory(L.PAE_CPU + 1, L.PAE_PRIVATE_VA, 32)),
        L.privateText(L.PAE_CPU),
      );
    }

    // Physical mode bypasses translation.
    await t.monitor("phys on", 1);
    assert.equal(le(t.readMemory(1, L.LAYOUT_PHYS, 8)), L.GUEST_MAGIC);
    await t.monitor("phys off", 1);

    await t.detach();
    const debug = t.vm.debugCpus();
    assert.ok(debug.includes(L.PARKED_CPU), "bhyve's parked AP stays in the debug set");
    assert.ok(!debug.includes(0) && !debug.includes(1), "what the debugger stopped runs again");
  });

  Deno.test(
    { name: name("the walker agrees with vm_gla2gpa_nofault on every mapping"), ignore },
    async () => {
      await using f = await Fixture.start(generation, { cpus: 3, vmmVersion });
      await f.booted([0, 1, L.PAE_CPU]);
      const t = f.target;
      await t.stop();
      const read = (gpa: bigint, size: 4 | 8) => le(t.memory.readPhysical(0, gpa, size))!;
      const offsets = [0n, 0x1234n, 0x20_0000n + 0x10n, L.LAYOUT_PHYS, 0x3fff_f000n];
      const check = (vcpu: number, paging: GuestPaging, gvas: bigint[], pse = true) => {
        for (const gva of gvas) {
          const mine = walk(gva, { pagingMode: paging.pagingMode, cr3: paging.cr3, pse }, read);
          const kernel = t.vm.gla2gpa(vcpu, paging, gva, 1);
          assert.equal(
            mine.gpa,
            kernel,
            `0x${gva.toString(16)} (cr3 0x${paging.cr3.toString(16)})`,
          );
        }
      };
      const long = [
        ...offsets.flatMap((o) => [L.IDENT_VBASE + o, L.DMAP_VBASE + o, L.KERNEL_VBASE + o]),
        L.PRIVATE_VA,
        L.MMIO_VA,
        L.LAPIC_VA,
        L.WINDOW_VBASE + 0x3000n,
        L.DMAP_VBASE + 0x4000_0000n,
      ]; // deno-fmt-ignore
      for (const vcpu of [0, 1]) check(vcpu, t.pagingState(vcpu).paging, long);
      // The spare roots: 1 GiB pages, legacy 32-bit with 4 MiB pages, PAE.
      const giant = f.u(L.LAYOUT_PHYS + L.OFF_GIANT_ROOT, 8);
      check(0, { cr3: giant, cpl: 0, cpuMode: CpuMode.LONG, pagingMode: PagingMode.LEVEL4 }, long);
      const gb = walk(L.KERNEL_VBASE + 0x1234n, {
        pagingMode: PagingMode.LEVEL4,
        cr3: giant,
        pse: true,
      }, read);
      assert.equal(gb.pageSize, 1n << 30n);
      const small = [
        0n,
        0x40_1234n,
        0x3fc0_0000n,
        L.PAE_PRIVATE_VA,
        L.PAE_MMIO_VA,
        L.PAE_LAPIC_VA,
        0xc000_3000n,
      ];
      const legacy = f.u(L.LAYOUT_PHYS + L.OFF_LEGACY32_ROOT, 8);
      check(
        0,
        { cr3: legacy, cpl: 0, cpuMode: CpuMode.PROTECTED, pagingMode: PagingMode.BITS32 },
        small,
      );
      const paeRoot = f.u(L.LAYOUT_PHYS + L.OFF_PAE_ROOT, 8);
      check(
        0,
        { cr3: paeRoot, cpl: 0, cpuMode: CpuMode.PROTECTED, pagingMode: PagingMode.PAE },
        small,
      );
      assert.match(
        await t.monitor("pagewalk ffff800000000000", 1),
        /PT {3}\[ {2}0\].*\n.*-> 0x500000 \(4 KiB page\)\n +reads: guest RAM.*\n.*vm_gla2gpa_nofault: 0x500000/,
      );
      await t.detach();
    },
  );

  Deno.test(
    { name: name("an AP bhyve starts while the VM is held is held, then runs"), ignore },
    async () => {
      await using f = await Fixture.start(generation, { cpus: 4, vmmVersion, spinupDelayMs: 400 });
      await f.booted([0, 1, L.PAE_CPU]);
      const t = f.target;
      // Ask the guest to start the parked AP (the probe writes guest memory, like a test harness).
      const probe = await new Deno.Command(PROBE, {
        args: [
          LIBVMMAPI[generation],
          f.vm.name,
          "writep",
          `0x${(L.LAYOUT_PHYS + L.OFF_START_AP).toString(16)}`,
          "1",
        ],
        env: { TESTVM_DIR: f.vm.dir },
      }).output();
      assert.ok(probe.success, new TextDecoder().decode(probe.stderr));
      const deadline = performance.now() + 20_000;
      while (f.u(L.LAYOUT_PHYS + L.OFF_AP_SPINUP_SENT, 4) === 0n) {
        assert.ok(performance.now() < deadline, "the BSP never started the AP");
        await sleep(5);
      }
      await t.stop(); // within the spin-up delay: bhyve still holds the AP
      assert.equal(t.control.state(L.PARKED_CPU, t.activeCpus()), "held by bhyve");
      while (!t.control.mine.has(L.PARKED_CPU)) {
        assert.ok(performance.now() < deadline, "bhyve's release of the AP went unnoticed");
        await sleep(20);
      }
      assert.ok(t.vm.debugCpus().includes(L.PARKED_CPU), "held by the debugger now");
      // It may have run for up to one poll interval (bhyve released it, nothing can prevent
      // that from outside); from now on it stays put.
      const rip = t.vm.getRegister(L.PARKED_CPU, VmReg.RIP);
      const counter = f64(t, L.PARKED_CPU);
      await sleep(150);
      assert.equal(t.vm.getRegister(L.PARKED_CPU, VmReg.RIP), rip, "and it stays put");
      assert.equal(f64(t, L.PARKED_CPU), counter);
      await t.resume();
      await f.booted([L.PARKED_CPU]);
      assert.deepEqual(t.vm.debugCpus(), []);
      await t.stop();
      assert.equal(
        text(t.readMemory(L.PARKED_CPU + 1, L.PRIVATE_VA, 32)),
        L.privateText(L.PARKED_CPU),
      );
      await t.detach();
    },
  );

  Deno.test({ name: name("the VM vanishing is reported, never a crash"), ignore }, async () => {
    await using f = await Fixture.start(generation, { cpus: 2, vmmVersion });
    const t = f.target;
    await t.stop();
    await f.vm.stop();
    const deadline = performance.now() + 5_000;
    while (t.gone === undefined && performance.now() < deadline) await sleep(20);
    assert.ok(t.gone !== undefined, "the held poll notices");
    assert.throws(() => t.readRegisters(1), TargetGoneError);
    assert.equal((await t.waitForStop(new AbortController().signal)).kind, "exited");
    await t.detach();
  });

  Deno.test(
    { name: name("waitForStop resolves exited when a running VM goes away"), ignore },
    async () => {
      await using f = await Fixture.start(generation, { cpus: 1, vmmVersion });
      const waiting = f.target.waitForStop(new AbortController().signal);
      await sleep(50);
      await f.vm.stop();
      const event = await waiting;
      assert.equal(event.kind, "exited");
      assert.match((event as { message: string }).message, /is gone/);
    },
  );

  Deno.test(
    { name: name("w mode: waits for the VM, then holds it as its vCPUs appear"), ignore },
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "testvm-w-" });
      Deno.env.set("TESTVM_DIR", dir);
      const api = loadVmmapi({ path: LIBVMMAPI[generation] });
      const vmName = `w-${Deno.pid}-${generation}`;
      const holding = waitAndHold(api, vmName, { intervalMs: 10 });
      await sleep(100);
      const vm = await TestVm.start({ name: vmName, dir, cpus: 2, vmmVersion });
      try {
        const target = await holding;
        assert.ok(target.control.mine.has(0), "the BSP is held");
        const counter = f64(target, 0);
        await sleep(200);
        assert.equal(f64(target, 0), counter, "and does not run");
        await target.close();
      } finally {
        api.close();
        await vm.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  );
}

function f64(target: VmTarget, cpu: number): bigint {
  return le(target.memory.readPhysical(0, L.percpuPhys(cpu, L.PC_COUNTER), 8))!;
}

Deno.test(
  { name: "[libvmmapi 0200, vmm 14] segment bases from seg descs, no k_gs_base", ignore },
  async () => {
    await using f = await Fixture.start("0200", { cpus: 1, vmmVersion: 14 });
    await f.booted([0]);
    const t = f.target;
    await t.stop();
    const regs = t.readRegisters(1);
    const reg = (n: string) => le(regs[registerByName(n)!.regnum]);
    assert.equal(t.registers.extended(0), false);
    assert.equal(reg("fs_base"), t.vm.getSegDesc(0, VmReg.FS).base);
    assert.equal(reg("gs_base"), t.vm.getSegDesc(0, VmReg.GS).base);
    assert.equal(reg("k_gs_base"), undefined);
    assert.equal(reg("cr8"), (t.vm.readKernemu(0, 0xfee0_0080n, 4) >> 4n) & 0xfn);
    await t.detach();
  },
);
