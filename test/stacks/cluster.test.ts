/**
 * The cluster stack (Pulumi.cluster.yaml): per-node host sections, storages per node or shared,
 * templates reachable from each guest's node, the placement and its capacity checks, HA.
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { formatIssues, readStackFile, type RawStack } from "../../stacks/load";
import { nodeHost, preparedNodes, templateFor } from "../../stacks/cluster";
import { placementPlan } from "../../stacks/placement";
import type { StackConfig } from "../../stacks/schema";
import { clusterSection } from "../../scripts/synth/cluster";
import { renderTable } from "../../scripts/doctor/report";
import { edited } from "../e2e/support";
import { issuesOf, ROOT, TEST_PVE_CA, validate } from "./fixtures";
import { runProgram } from "../mock-program";

const CLUSTER_FILE = path.join(ROOT, "Pulumi.cluster.yaml");
// The raw stack is untyped YAML: tests reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Values = Record<string, any>;

const raw = (): RawStack => readStackFile(CLUSTER_FILE);
const change = (edit: (v: Values) => void): RawStack => edited(raw(), (v) => edit(v as Values));

function valid(r: RawStack): StackConfig {
  const result = validate(r, false);
  if (result.ok !== true) throw new Error(formatIssues(issuesOf(result)));
  return result.config;
}

function issuesAt(r: RawStack, at: string): string[] {
  return issuesOf(validate(r, false))
    .filter((i) => i.path === at)
    .map((i) => i.message);
}

const guestIndex = (v: Values, vmid: number): number => (v.guests as Values[]).findIndex((g) => g.vmid === vmid);

describe("the three-node stack", () => {
  it("validates, and each node is prepared with what is declared for it", () => {
    const config = valid(raw());
    expect(preparedNodes(config)).toEqual(["pve-gpu", "pve-a", "pve-b"]);
    const a = nodeHost(config, "pve-a");
    expect(a.gpus).toEqual([]);
    expect(a.zfs.pools.map((p) => p.disks)).toEqual([["/dev/disk/by-id/nvme-NODE_A_0"]]);
    expect(a.zfs.datasets.map((d) => d.name)).toEqual(["guests", "iso"]);
    expect(a.zfs.arcMaxGiB).toBe(4);
    expect(a.nfsExports).toEqual([]);
    const gpu = nodeHost(config, "pve-gpu");
    expect(gpu.gpus.map((g) => g.id)).toEqual([0]);
    expect(gpu.zfs.datasets.map((d) => d.name)).toEqual(["guests", "iso", "models"]);
    expect(gpu.zfs.arcMaxGiB).toBe(16);
  });

  it("places deterministically: by GPU model, apart from replicas, within strict HA nodes", () => {
    const config = valid(raw());
    const node = (vmid: number) => config.guests.find((g) => g.vmid === vmid)!.node;
    expect(node(914)).toBe("pve-gpu");
    expect(config.guests.find((g) => g.vmid === 914)!.gpus).toEqual([0]);
    // The gateway may not share a node with Traefik (pve-b), and its strict HA nodes rule out pve-gpu.
    expect(node(101)).toBe("pve-a");
    expect(valid(raw()).guests.map((g) => g.node)).toEqual(config.guests.map((g) => g.node));
    expect(clusterSection(config).join("\n")).toContain("| pve-a | 103 step-ca, 101 nginx-gateway (rule, apart in front) | 2048 MiB of 16384 MiB | 4 of 8 |");
  });

  it("reaches the shared template from both core nodes without a copy", () => {
    const config = valid(raw());
    expect(templateFor(config, 910, "pve-b")).toEqual({ vmid: 910, node: "pve-a" });
    expect(templateFor(config, 901, "pve-a")).toBeUndefined();
  });

  it("a guest on another node clones the template's copy there", () => {
    const config = valid(
      change((v) => {
        v.templates[1].copies = [{ node: "pve-b", vmid: 950 }];
        v.guests.push({ kind: "lxc", vmid: 120, name: "worker", node: "pve-b", clone: 900, storage: "tank-guests", memoryMiB: 512, network: { ip: "10.20.0.50/24" } });
      }),
    );
    const copy = config.templates.find((t) => t.vmid === 950)!;
    expect(copy).toMatchObject({ node: "pve-b", name: "tpl-ubuntu-base-pve-b", storage: "tank-guests", layer: "base" });
    expect(config.guests.find((g) => g.vmid === 120)!.clone).toBe(950);
  });
});

describe("the cluster rules refuse, naming the path", () => {
  it("a guest whose template is not reachable from its node", () => {
    const r = change((v) => v.guests.push({ kind: "lxc", vmid: 120, name: "worker", node: "pve-b", clone: 900, storage: "tank-guests", memoryMiB: 512, network: { ip: "10.20.0.50/24" } }));
    const [message] = issuesAt(r, "guests[4].clone");
    expect(message).toMatch(/is on node pve-b but template 900 is on node pve-gpu, on storage 'tank-guests', which is not a shared storage/);
    expect(message).toMatch(/bpg#1387/);
  });

  it("an over-committed node", () => {
    const r = change((v) => {
      v.guests[guestIndex(v, 102)].memoryMiB = 12288;
      v.guests.push({ kind: "lxc", vmid: 121, name: "cache", node: "pve-b", clone: 910, storage: "ceph-vm", memoryMiB: 8192, network: { ip: "10.20.0.51/24" } });
    });
    const [message] = issuesAt(r, "guests[4].memoryMiB");
    expect(message).toBe("CT 121 cache over-commits node pve-b's memory: its guests take 20480 MiB of the 16384 MiB declared at proxmox.nodes[2].capacity.memoryMiB: place it on another node, or shrink it or those before it");
  });

  it("a placement no node satisfies, saying why for each", () => {
    const r = change((v) => {
      v.guests[guestIndex(v, 101)].placement = { antiAffinity: "front", headroomMiB: 15000 };
    });
    const [message] = issuesAt(r, "guests[2].placement");
    expect(message).toContain("pve-gpu is not in its ha.nodes");
    expect(message).toContain("pve-a would have 14336 MiB free, less than the headroom 15000 MiB");
    expect(message).toContain("pve-b would have");
  });

  it("a dataset on a node without its pool, and a storage used where it does not exist", () => {
    const r = change((v) => {
      v.host.zfs.pools = v.host.zfs.pools.filter((p: Values) => p.node !== "pve-b");
      v.host.existingStorages[1].nodes = ["pve-a"];
    });
    expect(issuesAt(r, "host.zfs.datasets[0].nodes[2]")[0]).toMatch(/node pve-b has no pool 'tank' declared/);
    expect(issuesAt(r, "guests[1].storage")[0]).toMatch(/CT 102 traefik is on node pve-b, where storage 'ceph-vm' does not exist/);
  });

  it("HA on local storage, on PVE 8 resource affinity, and rules naming guests that are not HA", () => {
    const local = change((v) => {
      v.guests[guestIndex(v, 103)].storage = "tank-guests";
      v.guests[guestIndex(v, 103)].clone = 900;
      v.guests[guestIndex(v, 103)].node = "pve-gpu";
      v.guests[guestIndex(v, 103)].ha = { nodes: ["pve-gpu", "pve-a"] };
    });
    expect(issuesAt(local, "guests[0].ha")[0]).toMatch(/local to each node, so the HA manager could only restart it empty elsewhere/);
    const pve8 = change((v) => (v.proxmox.pveVersion = 8));
    expect(issuesAt(pve8, "guests[1].ha.apartFrom[0]")[0]).toMatch(/PVE 8 has HA groups only/);
    const notHa = change((v) => delete v.guests[guestIndex(v, 101)].ha);
    expect(issuesAt(notHa, "guests[1].ha.apartFrom[0]")[0]).toMatch(/guest 101 is not an HA guest/);
  });

  it("a GPU in another node than its guest, and the same pool twice on one node", () => {
    const r = change((v) => {
      v.guests[guestIndex(v, 914)].node = "pve-a";
      v.guests[guestIndex(v, 914)].gpus = [0];
      v.host.zfs.pools.push({ name: "tank", node: "pve-a", topology: "single", disks: ["/dev/disk/by-id/nvme-NODE_A_1"] });
    });
    expect(issuesAt(r, "guests[3].gpus[0]")[0]).toMatch(/GPU 0 is in node pve-gpu/);
    expect(issuesAt(r, "host.zfs.pools[3].name")[0]).toMatch(/pool declared twice on its node/);
  });
});

describe("single-node stacks read as before", () => {
  it("place nothing and prepare one node", () => {
    const dev = valid(readStackFile(path.join(ROOT, "Pulumi.dev.yaml")));
    expect(placementPlan(dev).chosen.size).toBe(0);
    expect(preparedNodes(dev)).toEqual(["pve-dev"]);
    expect(nodeHost(dev, "pve-dev").zfs.datasets).toEqual(dev.host.zfs.datasets);
    expect(clusterSection(dev)).toEqual([]);
  });
});

describe("the doctor in a cluster", () => {
  it("labels and groups the services by node, and names the node of a failing one", () => {
    const finding = (service: string, status: "ok" | "fail") => ({ service, layer: "guest" as const, check: "unit", status, detail: status === "ok" ? "active" : "inactive" });
    const table = renderTable({
      ok: false,
      notes: [],
      findings: [finding("ollama", "ok"), finding("gateway", "fail"), finding("ca", "ok")],
      diagnoses: [{ service: "gateway", layer: "guest", check: "unit", detail: "inactive", failure: { kind: "down" } as never, hints: [] } as never],
      nodes: { ollama: "pve-gpu", gateway: "pve-a", ca: "pve-a" },
    });
    const rows = table.split("\n");
    expect(rows[0]).toMatch(/^NODE\s+SERVICE\s+LAYER\s+RESULT\s+DETAIL$/);
    expect(rows.slice(1, 4).map((r) => r.split(/\s+/).slice(0, 2).join(" "))).toEqual(["pve-a gateway", "pve-a ca", "pve-gpu ollama"]);
    expect(table).toContain("gateway (node pve-a): fails at guest (unit): inactive");
  });
});

describe("the program for the cluster stack", () => {
  const secrets = (r: RawStack): RawStack => {
    const values = structuredClone(r.values) as Values;
    values.proxmox.tls = { caPem: TEST_PVE_CA };
    for (const n of values.proxmox.nodes) n.ssh = { host: n.ssh.host, user: "root", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForTests0000000000000000000000000 test" };
    const keys = ["proxmoxTokenSecret", "sshPrivateKey", "stepCaPassword", "traefikDashboardPassword", "gatewayApiKey-dev"];
    for (const k of keys) values[k] = `value-of-${k}-0123456789abcdef0123`;
    return { values, secretKeys: new Set([...r.secretKeys, ...keys]) };
  };

  it("prepares each node, registers each storage once for its nodes, and makes the HA resources and PVE 9 rules", async () => {
    const program = await runProgram(secrets(raw()));
    const names = (type: string) => program.ofType(type).map((r) => r.name).sort();
    expect(names("pulumi-nodejs:dynamic/phoenix/host:ZfsPool")).toEqual(["host-pool-tank", "host-pve-a-pool-tank", "host-pve-b-pool-tank"]);
    expect(program.ofType("proxmoxve:storage/zfspoolLegacy:ZfspoolLegacy").map((r) => [r.name, r.inputs.nodes])).toEqual([["host-storage-tank-guests", ["pve-gpu", "pve-a", "pve-b"]]]);
    expect(names("proxmoxve:index/haresourceLegacy:HaresourceLegacy")).toEqual(["ha-101", "ha-102", "ha-103"]);
    expect(program.ofType("proxmoxve:index/haruleLegacy:HaruleLegacy").map((r) => [r.inputs.rule, r.inputs.type])).toEqual([
      ["phoenix-103-nodes", "node-affinity"],
      ["phoenix-102-nodes", "node-affinity"],
      ["phoenix-102-apart", "resource-affinity"],
      ["phoenix-101-nodes", "node-affinity"],
    ]);
    expect(names("proxmoxve:index/hagroupLegacy:HagroupLegacy")).toEqual([]);
    // A rule names HA resources only once they exist (pve-ha-manager API2/HA/Rules.pm).
    expect([...program.dependenciesOf("ha-rule-102-apart")]).toEqual(expect.arrayContaining(["ha-101", "ha-102"]));
  }, 60_000);

  it("on PVE 8, an HA group per guest with preferred nodes, named by its resource", async () => {
    const program = await runProgram(secrets(change((v) => {
      v.proxmox.pveVersion = 8;
      for (const g of v.guests) if (g.ha) g.ha.apartFrom = [];
    })));
    expect(program.ofType("proxmoxve:index/haruleLegacy:HaruleLegacy")).toEqual([]);
    const group = program.byName("ha-group-102");
    expect(group.inputs).toMatchObject({ group: "phoenix-102", nodes: { "pve-b": 2, "pve-a": 1 }, restricted: true });
    expect(program.byName("ha-102").inputs).toMatchObject({ resourceId: "ct:102", group: "phoenix-102", state: "started" });
  }, 60_000);
});

describe("template copies", () => {
  it("refuse a copy whose node lacks the template's storage or source storage, and a copy's vmid already taken", () => {
    const r = change((v) => {
      v.host.existingStorages[0].nodes = ["pve-gpu", "pve-a"];
      v.templates[0].source.storage = "local";
      v.templates[0].copies = [{ node: "pve-b", vmid: 103 }];
    });
    expect(issuesAt(r, "templates[0].source.storage")[0]).toBe("the source of template 910 (fetched on each node it is built on) is on node pve-b, where storage 'local' does not exist (it is on pve-gpu, pve-a)");
    expect(issuesAt(r, "templates[0].copies[0].vmid")[0]).toBe("vmid 103 is already used by guests[0].vmid");
  });
});
