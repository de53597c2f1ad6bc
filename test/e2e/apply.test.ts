/**
 * The dev stack's host and firewall tiers applied end to end: the program under the e2e
 * engine, dynamic providers deserialized from their state text and run against the sshd rig,
 * bridged resources translated into API calls the simulator validates. The template and guest
 * tiers are left out until the rig mirrors the simulator's guests for `pct` (world.ts).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DEV_FILE } from "../stacks/fixtures";
import { DYNAMIC_PREFIX, type ApplyResult } from "./engine";
import { TYPES } from "./translations";
import { startWorld, type World } from "./world";

const loadProgram = async (): Promise<Record<string, unknown>> => {
  vi.resetModules();
  return (await import("../../index")) as Record<string, unknown>;
};

const failuresOf = (r: ApplyResult) => r.failures.map((f) => `${f.key}: ${f.message}`);

const changed = (r: ApplyResult) => r.operations.filter((o) => o.kind !== "same" && !r.failures.some((f) => f.key === o.key)).map((o) => `${o.kind} ${o.key}`);

describe("dev stack, applied against the simulator and the sshd rig", () => {
  let w: World;
  let first: ApplyResult;
  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 20_000 });
    first = await w.apply();
  }, 90_000);
  afterAll(async () => w?.stop());

  it("fresh apply: every resource is created, none fails or is skipped", () => {
    expect(failuresOf(first)).toEqual([]);
    expect(first.skipped).toEqual([]);
    expect(first.operations.filter((o) => o.kind === "create").length).toBeGreaterThan(10);
  });

  it("fresh apply: pool, datasets, ARC and storages are in the declared shape", () => {
    const sb = w.rig.sandbox.state();
    expect(sb.pools.tank).toMatchObject({ vdevType: "single", disks: ["/dev/disk/by-id/nvme-SIM_NVME_0001"] });
    expect(Object.keys(sb.datasets).filter((d) => d.startsWith("tank/")).sort()).toEqual(["tank/guests", "tank/iso", "tank/models", "tank/step-ca"]);
    expect(sb.datasets["tank/models"]).toMatchObject({ recordsize: "1M" });
    expect(w.rig.sandbox.read("etc/modprobe.d/zfs.conf")).toContain(`zfs_arc_max=${4 * 1024 ** 3}`);
    const guests = w.sim.state.storages.get("tank-guests");
    expect(guests?.type).toBe("zfspool");
    expect(guests?.config).toMatchObject({ pool: "tank/guests", content: "images,rootdir", nodes: w.node });
    expect(w.sim.state.storages.get("tank-iso")?.config).toMatchObject({ path: "/tank/iso", content: "iso,vztmpl,import,snippets" });
  });

  it("fresh apply: the firewall is in the declared shape, admin rules ahead of the node's own", () => {
    const web = w.sim.state.groups.get("web");
    expect(web?.rules).toEqual([{ type: "in", action: "ACCEPT", proto: "tcp", source: "10.10.0.0/24", dport: "80,443", enable: "1" }]);
    const nodeRules = w.sim.state.nodes.get(w.node)?.firewall.rules ?? [];
    expect(nodeRules.map((r) => `${r.action} ${r.dport} ${r.source}`)).toEqual(["ACCEPT 22 10.10.0.0/24", "ACCEPT 8006 10.10.0.0/24"]);
    expect(w.sim.state.nodes.get(w.node)?.firewall.options).toMatchObject({ enable: "1" });
    expect(w.sim.state.firewall.options).toMatchObject({ enable: "1", policy_in: "DROP", policy_out: "ACCEPT" });
  });

  it("state: every managed object in the simulator is in state and every state entry exists", async () => {
    for (const e of w.state.resources.values()) {
      const t = w.translations[e.type];
      if (t) expect(await t.read(e), e.name).toBeDefined();
    }
    const stateStorages = [...w.state.resources.values()].filter((e) => e.type === TYPES.zfspool || e.type === TYPES.directory).map((e) => e.id);
    expect([...w.sim.state.storages.keys()].filter((s) => !["local", "local-zfs"].includes(s)).sort()).toEqual(stateStorages.sort());
  });

  it("second apply: zero mutating Proxmox calls and zero provider updates", async () => {
    w.sim.log.clear();
    w.rig.sandbox.clearCalls();
    const second = await w.apply();
    expect(failuresOf(second)).toEqual([]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
    expect(changed(second)).toEqual([]);
    expect(w.rig.sandbox.calls().filter((c) => ["create", "set", "destroy"].includes(c[1] ?? ""))).toEqual([]);
  }, 60_000);

  it("one change (a dataset quota): exactly that dataset is updated", async () => {
    const raw = structuredClone(w.raw);
    const host = raw.values.host as { zfs: { datasets: Array<{ name: string; properties?: Record<string, unknown> }> } };
    const models = host.zfs.datasets.find((d) => d.name === "models")!;
    models.properties = { ...models.properties, quota: "200G" };
    w.sim.log.clear();
    const r = await w.apply({ values: raw.values, secretKeys: raw.secretKeys });
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual([`update ${DYNAMIC_PREFIX}phoenix/host:ZfsDataset::host-dataset-tank-models`]);
    expect(w.rig.sandbox.state().datasets["tank/models"]).toMatchObject({ recordsize: "1M", quota: "200G" });
    expect(w.sim.log.mutating()).toEqual([]);
  }, 60_000);
});

describe("dev stack under injected faults", () => {
  let w: World;
  afterAll(async () => w?.stop());

  it("5xx on 10 % of calls and lock timeouts: converges within three applies, no orphan, nothing created twice", async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 20_000 });
    w.sim.faults.add({ kind: "http5xx", probability: 0.1 });
    w.sim.faults.add({ kind: "lockTimeout", method: "POST", path: "/storage", count: 2 });
    w.sim.faults.add({ kind: "lockTimeout", method: "PUT", path: "/cluster/firewall/options", count: 1 });
    let runs = 0;
    let last: ApplyResult | undefined;
    while (runs < 3 && (last === undefined || failuresOf(last).length > 0)) {
      last = await w.apply();
      runs++;
    }
    expect(failuresOf(last!)).toEqual([]);
    // The deterministic lock timeouts alone answer 500 three times; the client retried through them.
    expect(w.sim.log.entries.filter((e) => e.status === 500).length).toBeGreaterThanOrEqual(3);
    w.sim.faults.clear();
    const stateStorages = [...w.state.resources.values()].filter((e) => e.type === TYPES.zfspool || e.type === TYPES.directory).map((e) => e.id);
    expect([...w.sim.state.storages.keys()].filter((s) => !["local", "local-zfs"].includes(s)).sort()).toEqual(stateStorages.sort());
    const created = w.sim.log.find("POST", "/storage").filter((e) => e.status === 200).map((e) => String(e.params.storage));
    expect(created.sort()).toEqual([...new Set(created)].sort());
    expect([...w.sim.state.groups.keys()]).toEqual(["web"]);
    w.sim.log.clear();
    const settled = await w.apply();
    expect(w.sim.log.mutating()).toEqual([]);
    expect(changed(settled)).toEqual([]);
  }, 120_000);
});
