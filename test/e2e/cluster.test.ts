/**
 * The three-node stack (Pulumi.cluster.yaml) applied fresh, then again with nothing to do, on
 * the simulator as a cluster (world.ts: every node of the stack, one rig as every node's shell).
 * The Ceph RBD storage the stack declares (set up by the user, never by Phoenix) is added to the
 * simulator first, as pveceph would have.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the stack file is untyped YAML, edited as a user would */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApplyResult } from "./engine";
import { changed, failuresOf, guestDestroys, loadProgram } from "./support";
import { startWorld, type World } from "./world";
import { haConfig } from "../pve-sim/ha";
import { ROOT } from "../stacks/fixtures";

/**
 * The rig is every node's shell, so what is per node on real hardware is one thing here: the
 * variant gives each node's pool its own name (on real nodes each has its own `tank`), keeps the
 * datasets and the ARC limit on the GPU node, fetches the core template's image to `local`, and
 * drops the runfile checksum (the rig's installer is a stand-in, as in Pulumi.dev.yaml). The core
 * template stays as declared, once on pve-a's side of the shared RBD storage: Traefik on pve-b is
 * cloned from it across nodes (bpg's clone.node_name, components/guest/common.ts cloneOf).
 */
function variantFile(): string {
  const doc = parseYaml(readFileSync(path.join(ROOT, "Pulumi.cluster.yaml"), "utf8")) as { config: Record<string, any> };
  const c = doc.config;
  delete c["phoenix:host"].nvidiaDriver.runfileSha256;
  const zfs = c["phoenix:host"].zfs;
  zfs.arcMaxGiB = { "pve-gpu": 16 };
  for (const p of zfs.pools) if (p.node) p.name = `tank-${String(p.node).slice(4)}`;
  for (const d of zfs.datasets) delete d.nodes;
  const core = c["phoenix:templates"].find((t: { vmid: number }) => t.vmid === 910);
  core.source.storage = "local";
  const dir = mkdtempSync(path.join(tmpdir(), "phoenix-cluster-"));
  const file = path.join(dir, "Pulumi.cluster.yaml");
  writeFileSync(file, stringifyYaml(doc));
  return file;
}

describe("three-node stack: GPUs on one node, the core tier HA across the others", () => {
  let w: World;
  let first: ApplyResult;
  beforeAll(async () => {
    w = await startWorld({ stackFile: variantFile(), loadProgram, operationTimeoutMs: 30_000 });
    w.sim.state.addStorage("ceph-vm", "rbd", { pool: "vm", content: "images,rootdir", krbd: "0" }, 500);
    first = await w.apply();
  }, 120_000);
  afterAll(async () => w?.stop());

  it("fresh apply: every resource is created, none fails or is skipped", () => {
    expect(failuresOf(first)).toEqual([]);
    expect(first.skipped).toEqual([]);
    expect(first.operations.filter((o) => o.kind !== "create")).toEqual([]);
  });

  it("each guest is on the node its declaration or the placement gives it", () => {
    const nodeOf = (vmid: number) => w.sim.state.guests.get(vmid)?.node;
    expect([103, 102, 101, 914].map(nodeOf)).toEqual(["pve-a", "pve-b", "pve-a", "pve-gpu"]);
    expect([910, 900, 901].map(nodeOf)).toEqual(["pve-a", "pve-gpu", "pve-gpu"]);
    expect(w.sim.state.guests.has(911)).toBe(false);
  });

  it("Traefik on pve-b is a linked clone of pve-a's template on the shared storage, cloned there with target", () => {
    const rootfs = w.sim.state.guests.get(102)?.config.rootfs ?? "";
    const volid = rootfs.split(",")[0]!;
    expect(volid.startsWith("ceph-vm:")).toBe(true);
    expect(w.sim.state.volume(volid).parent).toMatch(/^ceph-vm:base-910-disk-\d+$/);
    // bpg v0.111.1 container.go:1334-1338: the clone POST goes to the template's node, `target` the guest's.
    const clones = w.sim.log.find("POST", "/nodes/{node}/lxc/{vmid}/clone").filter((c) => String(c.params.newid) === "102");
    expect(clones.map((c) => [c.path, c.params.target])).toEqual([["/api2/json/nodes/pve-a/lxc/910/clone", "pve-b"]]);
  });

  it("each node is prepared: its own pool, the GPU node's datasets and storages", () => {
    expect(w.sim.state.storages.get("tank-guests")?.config).toMatchObject({ pool: "tank/guests", nodes: "pve-gpu" });
    const sb = w.rig.sandbox.state();
    expect(Object.keys(sb.pools).sort()).toEqual(["tank", "tank-a", "tank-b"]);
  });

  it("HA: the core guests are resources, with PVE 9 node- and resource-affinity rules", () => {
    const ha = haConfig(w.sim.state);
    expect([...ha.resources.keys()].sort()).toEqual(["ct:101", "ct:102", "ct:103"]);
    expect(ha.resources.get("ct:103")).toMatchObject({ state: "started", max_restart: "1", max_relocate: "1" });
    expect(ha.rules.get("phoenix-103-nodes")).toMatchObject({ type: "node-affinity", resources: "ct:103", nodes: "pve-a:2,pve-b:1", strict: "0" });
    // bpg joins the nodes map in Go's map order, which is unspecified; the priorities say which is preferred.
    expect(ha.rules.get("phoenix-102-nodes")).toMatchObject({ nodes: "pve-a:1,pve-b:2", strict: "1" });
    expect(ha.rules.get("phoenix-102-apart")).toMatchObject({ type: "resource-affinity", affinity: "negative", resources: "ct:101,ct:102" });
    expect(ha.groups.size).toBe(0);
  });

  it("a second apply changes nothing", async () => {
    const again = await w.apply();
    expect(failuresOf(again)).toEqual([]);
    expect(changed(again)).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 60_000);
});
