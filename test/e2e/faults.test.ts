/**
 * The dev stack when things go wrong: injected faults and a failed task, and a run stopped
 * mid-apply. Each recovers by applying again, with nothing orphaned and nothing made twice.
 */
import { afterAll, describe, expect, it } from "vitest";
import { DEV_FILE } from "../stacks/fixtures";
import { importPendingCreates, INTERRUPTED, type ApplyResult } from "./engine";
import { changed, edited, expectNoOrphans, failuresOf, loadProgram, withoutGuest } from "./support";
import { proxmoxId } from "./translations";
import { startWorld, type World } from "./world";

/** Applies until a run has no failure, at most `max` times; returns the runs. */
async function converge(w: World, max: number): Promise<ApplyResult[]> {
  const runs: ApplyResult[] = [];
  while (runs.length < max && (runs.length === 0 || failuresOf(runs[runs.length - 1]!).length > 0)) runs.push(await w.apply());
  return runs;
}

/** Each guest and storage was created by exactly one successful call. */
function expectNothingCreatedTwice(w: World): void {
  const made = (method: string, template: string, param: string) => w.sim.log.find(method, template).filter((e) => e.status === 200).map((e) => String(e.params[param]));
  const clones = [...made("POST", "/nodes/{node}/lxc/{vmid}/clone", "newid"), ...made("POST", "/nodes/{node}/qemu/{vmid}/clone", "newid")];
  expect(clones.sort()).toEqual([...new Set(clones)].sort());
  const storages = made("POST", "/storage", "storage");
  expect(storages.sort()).toEqual([...new Set(storages)].sort());
}

async function expectSettled(w: World): Promise<void> {
  w.sim.faults.clear();
  w.sim.log.clear();
  const settled = await w.apply();
  expect(failuresOf(settled)).toEqual([]);
  expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
  expect(changed(settled)).toEqual([]);
}

describe("dev stack under injected faults", () => {
  let w: World;
  afterAll(async () => w?.stop());

  it("5xx on 10 % of calls, lock timeouts and one failed task: converges within three applies, no orphan, nothing created twice", async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000 });
    w.sim.faults.add({ kind: "http5xx", probability: 0.1 });
    w.sim.faults.add({ kind: "lockTimeout", method: "POST", path: "/storage", count: 2 });
    w.sim.faults.add({ kind: "lockTimeout", method: "PUT", path: "/cluster/firewall/options", count: 1 });
    w.sim.faults.add({ kind: "lockTimeout", method: "POST", path: "/nodes/{node}/lxc/{vmid}/clone", count: 1 });
    // The gateway container's first start fails as a task (its UPID ends in an error).
    w.sim.faults.add({ kind: "failTask", method: "POST", path: /\/lxc\/101\/status\/start$/, count: 1, message: "startup for container '101' failed" });
    const runs = await converge(w, 3);
    expect(failuresOf(runs[runs.length - 1]!)).toEqual([]);
    // The injected task failure surfaced in the run it happened in.
    expect(runs.flatMap(failuresOf).some((f) => f.includes("startup for container '101' failed"))).toBe(true);
    expect(w.sim.log.entries.filter((e) => e.status === 500).length).toBeGreaterThanOrEqual(4);
    expect(w.sim.state.guests.get(101)?.status).toBe("running");
    expectNothingCreatedTwice(w);
    await expectNoOrphans(w, expect);
    await expectSettled(w);
  }, 180_000);

  it("removal of a guest whose data volume may be destroyed: the dataset goes with it", async () => {
    // First allow destruction of the dataset (a change of that one input), then drop both from the stack.
    const allowed = edited(w.raw, (v) => {
      v.host.zfs.datasets.find((d) => d.name === "models")!.allowDestroy = true;
      v.guests.find((g) => g.vmid === 914)!.allowDestroy = true;
    });
    const allow = await w.apply(allowed);
    expect(changed(allow)).toEqual(["update destroy-guard", "update host-dataset-tank-models"]);
    const r = await w.apply(edited(allowed, (v) => {
      withoutGuest(v, 914);
      v.host.zfs.datasets = v.host.zfs.datasets.filter((d) => d.name !== "models");
    }));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(expect.arrayContaining(["delete ct-914", "delete host-dataset-tank-models"]));
    expect(w.sim.state.guests.has(914)).toBe(false);
    expect(w.rig.sandbox.state().datasets["tank/models"]).toBeUndefined();
    await expectNoOrphans(w, expect);
  }, 60_000);
});

describe("dev stack, interrupted mid-apply", () => {
  for (const at of [12, 30]) {
    it(`stopped after ${at} operations, then applied again: converges, no orphan, nothing created twice`, async () => {
      const w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000 });
      try {
        const cut = await w.apply(w.raw, { interruptAfter: at });
        expect(cut.failures.some((f) => f.message === INTERRUPTED)).toBe(true);
        // Creates under way when the run stopped: their objects exist, the state has no id for them.
        const pending = [...w.state.pendingCreates];
        expect(pending.length).toBeGreaterThan(0);
        // The recovery Pulumi prescribes (README, "Interrupted runs"): `pulumi refresh --import-pending-creates`
        // with the Proxmox objects' ids; everything else is cleared and created again, which Phoenix's own
        // providers and scripts must survive by taking over what exists.
        const ids = new Map(pending.flatMap(([key, p]) => {
          const id = proxmoxId(p.type, p.inputs);
          return id === undefined ? [] : [[key, id] as const];
        }));
        await importPendingCreates(w.state, w.translations, ids);
        const after = await converge(w, 2);
        expect(failuresOf(after[after.length - 1]!)).toEqual([]);
        expectNothingCreatedTwice(w);
        await expectNoOrphans(w, expect);
        await expectSettled(w);
      } finally {
        await w.stop();
      }
    }, 180_000);
  }
});
