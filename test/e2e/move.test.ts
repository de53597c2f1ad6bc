/**
 * scripts/move.ts's pieces that need no world: its arguments, and the state rewrite on a
 * deployment as `pulumi stack export` writes it. The move itself, against the simulator as a
 * cluster with the stand-in `pulumi` on PATH, is in cluster-move.test.ts (it reuses that world:
 * the dev stack on two nodes with a shared storage).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import type { PveApi } from "../../providers/pve";
import { parseArgs, rewriteGuestNode, runMove, withGuestOn, type MoveDeps, type UntypedDeployment } from "../../scripts/move";
import { formatIssues, readStackFile, validateStack, type RawStack } from "../../stacks/load";

const SECRET = { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:abc:def" };
const urn = (type: string, name: string) => `urn:pulumi:dev::phoenix::${type}::${name}`;
const DISK = "pulumi-nodejs:dynamic/phoenix/guest:GuestDisk";
const GUARD = "pulumi-nodejs:dynamic/phoenix/guest:DestroyGuard";

function deployment(): UntypedDeployment {
  const ct = { nodeName: "pve-a", vmId: 102, clone: { vmId: 900, nodeName: "pve-a", full: false } };
  return {
    version: 3,
    deployment: {
      manifest: {},
      resources: [
        { urn: urn("phoenix:guest:LxcGuest", "traefik"), custom: false, type: "phoenix:guest:LxcGuest", inputs: { vmid: 102, node: "pve-a" } },
        { urn: urn("proxmoxve:index/containerLegacy:ContainerLegacy", "ct-102"), custom: true, type: "proxmoxve:index/containerLegacy:ContainerLegacy", id: "102", inputs: ct, outputs: { ...ct, id: "102" } },
        { urn: urn("proxmoxve:firewall/optionsLegacy:OptionsLegacy", "ct-102-firewall"), custom: true, type: "proxmoxve:firewall/optionsLegacy:OptionsLegacy", inputs: { nodeName: "pve-a", containerId: 102 }, outputs: { nodeName: "pve-a", containerId: 102 } },
        { urn: urn(DISK, "ct-102-disk"), custom: true, type: DISK, inputs: { api: SECRET, node: "pve-a", vmid: 102 }, outputs: { api: SECRET, node: "pve-a", vmid: 102 } },
        // A node held as a secret is not read.
        { urn: urn(DISK, "ct-102-other"), custom: true, type: DISK, inputs: { node: SECRET, vmid: 102 }, outputs: SECRET },
        // Another guest on the same node, and the template: untouched.
        { urn: urn("proxmoxve:index/containerLegacy:ContainerLegacy", "ct-101"), custom: true, type: "proxmoxve:index/containerLegacy:ContainerLegacy", inputs: { nodeName: "pve-a", vmId: 101 }, outputs: { nodeName: "pve-a", vmId: 101 } },
        { urn: urn("proxmoxve:firewall/rulesLegacy:RulesLegacy", "firewall-node-pve-a-rules"), custom: true, type: "proxmoxve:firewall/rulesLegacy:RulesLegacy", inputs: { nodeName: "pve-a" }, outputs: { nodeName: "pve-a" } },
        {
          urn: urn(GUARD, "destroy-guard"),
          custom: true,
          type: GUARD,
          inputs: { guests: [{ vmid: 101, node: "pve-a" }, { vmid: 102, node: "pve-a" }] },
          outputs: { guests: [{ vmid: 101, node: "pve-a" }, { vmid: 102, node: "pve-a" }] },
        },
      ],
    },
  };
}

describe("npm run move: arguments", () => {
  it("takes stack, guest and node, and --yes; anything else is a usage error", () => {
    expect(parseArgs(["dev", "traefik", "pve-b"])).toEqual({ stack: "dev", guest: "traefik", node: "pve-b", yes: false });
    expect(parseArgs(["dev", "102", "pve-b", "--yes"])).toEqual({ stack: "dev", guest: "102", node: "pve-b", yes: true });
    expect(parseArgs(["dev", "102"])).toMatch(/^usage: npm run move -- <stack> <guest name or vmid> <node> \[--yes\]$/);
    expect(parseArgs(["dev", "102", "pve-b", "--force"])).toMatch(/^unknown option --force\n/);
  });
});

describe("npm run move: the state rewrite", () => {
  it("points the guest's custom resources and the guard's record at the new node, nothing else", () => {
    const before = deployment();
    const { deployment: after, changes } = rewriteGuestNode(before, 102, "pve-b");
    expect(changes.map((c) => `${c.urn.split("::").pop()} ${c.field} ${c.from}`)).toEqual([
      "ct-102 inputs.nodeName pve-a",
      "ct-102 outputs.nodeName pve-a",
      "ct-102-firewall inputs.nodeName pve-a",
      "ct-102-firewall outputs.nodeName pve-a",
      "ct-102-disk inputs.node pve-a",
      "ct-102-disk outputs.node pve-a",
      "destroy-guard inputs.guests[1].node pve-a",
      "destroy-guard outputs.guests[1].node pve-a",
    ]);
    const [component, ct, , disk, secretNode, other, nodeRules, guard] = after.deployment.resources!;
    // The template's node in `clone` stays: bpg reads it only at the clone (components/guest/common.ts CLONE_IGNORED).
    expect(ct!.inputs).toEqual({ nodeName: "pve-b", vmId: 102, clone: { vmId: 900, nodeName: "pve-a", full: false } });
    expect(disk!.inputs).toEqual({ api: SECRET, node: "pve-b", vmid: 102 });
    expect(secretNode).toEqual(before.deployment.resources![4]);
    expect(component).toEqual(before.deployment.resources![0]);
    expect([other, nodeRules]).toEqual(before.deployment.resources!.slice(5, 7));
    expect(guard!.outputs!.guests).toEqual([{ vmid: 101, node: "pve-a" }, { vmid: 102, node: "pve-b" }]);
    // Pure: the export as read is the backup.
    expect(before).toEqual(deployment());
  });

  it("a state already pointing at the node changes nothing", () => {
    const once = rewriteGuestNode(deployment(), 102, "pve-b").deployment;
    const again = rewriteGuestNode(once, 102, "pve-b");
    expect(again.changes).toEqual([]);
    expect(again.deployment).toEqual(once);
  });
});

// ---------------------------------------------------------------------------------------------
// The move itself against a small fake of the cluster's API and of the `pulumi` CLI, on the
// three-node example stack (Pulumi.cluster.yaml): what cluster-move.test.ts's world cannot
// stage cheaply (HA having moved the guest, a concurrent `pulumi up`, a failed task).

const CLUSTER_FILE = path.join(__dirname, "..", "..", "Pulumi.cluster.yaml");
const CT_TYPE = "proxmoxve:index/containerLegacy:ContainerLegacy";

/** The example stack, its guests edited. */
function clusterStack(edit: (guests: Array<Record<string, unknown>>) => void = () => undefined): RawStack {
  const raw = readStackFile(CLUSTER_FILE, "Pulumi.cluster.yaml");
  const values = structuredClone(raw.values);
  edit(values.guests as Array<Record<string, unknown>>);
  return { ...raw, values };
}

interface Fake {
  /** Where each guest is, and whether it runs. */
  guests: Map<number, { node: string; status: string }>;
  ha: string[];
  state: UntypedDeployment;
  /** Runs inside the migration task. */
  during?: () => void;
  failTask?: string;
  migrations: string[];
  pulumi: string[];
  apiUsed: boolean;
}

function fake(guests: Array<[number, string]>, ha: string[] = []): Fake {
  const ct = (vmid: number, node: string) => ({ nodeName: node, vmId: vmid, clone: { vmId: 910, nodeName: "pve-a" } });
  const resources = guests.map(([vmid, node]) => ({ urn: urn(CT_TYPE, `ct-${vmid}`), custom: true, type: CT_TYPE, id: String(vmid), inputs: ct(vmid, node), outputs: { ...ct(vmid, node), id: String(vmid) } }));
  return {
    guests: new Map(guests.map(([vmid, node]) => [vmid, { node, status: "running" }])),
    ha,
    state: { version: 3, deployment: { manifest: {}, resources } },
    migrations: [],
    pulumi: [],
    apiUsed: false,
  };
}

function depsOf(raw: RawStack, f: Fake, out: string[]): MoveDeps {
  const validated = (r: RawStack) => {
    const checked = validateStack(r, { requireSecrets: false });
    return checked.ok === true ? checked.config : checked.ok === false ? formatIssues(checked.issues) : "deferred";
  };
  const api = {
    client: {
      get: async (p: string) => {
        if (p === "/cluster/status") return ["pve-gpu", "pve-a", "pve-b"].map((name) => ({ type: "node", name, online: 1 }));
        if (p === "/cluster/resources") return [...f.guests].map(([vmid, g]) => ({ vmid, type: "lxc", ...g }));
        if (p === "/cluster/ha/resources") return f.ha.map((sid) => ({ sid }));
        throw new Error(`the fake API does not serve ${p}`);
      },
    },
    guestConfig: async (_node: string, _kind: string, vmid: number) => ({ rootfs: `ceph-vm:vm-${vmid}-disk-0,size=8G` }),
    storages: async () => [{ storage: "ceph-vm", type: "rbd", shared: 1, content: "images,rootdir" }],
    runTask: async (_method: string, p: string, params: { target: string }) => {
      f.migrations.push(`${p} ${params.target}`);
      f.during?.();
      if (f.failTask) throw new Error(f.failTask);
      f.guests.get(Number(/\/(\d+)\/migrate$/.exec(p)![1]))!.node = params.target;
    },
    close: () => undefined,
  };
  return {
    load: (_stack, moved) => validated(moved ? withGuestOn(raw, moved) : raw),
    api: async () => ((f.apiUsed = true), api as unknown as PveApi),
    pulumi: async (args) => {
      f.pulumi.push(args.slice(0, 2).join(" "));
      const file = args[args.indexOf("--file") + 1]!;
      if (args[1] === "export") fs.writeFileSync(file, JSON.stringify(f.state));
      else f.state = JSON.parse(fs.readFileSync(file, "utf8")) as UntypedDeployment;
    },
    workDir: () => fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-move-test-")),
    out: (l) => out.push(l),
  };
}

async function moveIn(raw: RawStack, f: Fake, ...args: string[]) {
  const out: string[] = [];
  const code = await runMove(["cluster", ...args], depsOf(raw, f, out));
  return { code, out: out.join("\n") };
}

const nodeIn = (d: UntypedDeployment, vmid: number) => d.deployment.resources!.find((r) => r.urn.endsWith(`::ct-${vmid}`))!.inputs!.nodeName;
/** step-ca (CT 103, guests[0], on ceph-vm) without its HA declaration. */
const noHa = () => clusterStack((gs) => void delete gs.find((g) => g.vmid === 103)!.ha);

describe("npm run move: the move, against a fake cluster and pulumi", () => {
  it("an HA guest the HA manager already moved to the target: the state is pointed at it, as the refusal promised", async () => {
    const still = fake([[103, "pve-a"]], ["ct:103"]);
    const refused = await moveIn(clusterStack(), still, "step-ca", "pve-b", "--yes");
    expect(refused.code).toBe(1);
    expect(refused.out).toContain("refused: phoenix:guests[0].ha: CT 103 (step-ca) is an HA resource (ct:103)");
    expect(refused.out).toContain("once it runs on pve-b, run this again to point the state at it");

    // `ha-manager migrate ct:103 pve-b` ran; the stack still says pve-a and still declares ha.
    const moved = fake([[103, "pve-b"]], ["ct:103"]);
    const r = await moveIn(clusterStack(), moved, "step-ca", "pve-b", "--yes");
    expect(r.code, r.out).toBe(0);
    expect(moved.migrations).toEqual([]);
    expect(nodeIn(moved.state, 103)).toBe("pve-b");
    expect(moved.pulumi).toEqual(["stack export", "stack export", "stack import"]);
  });

  it("a state changed by another pulumi command while the guest moved is not imported over; a second run rewrites it as it is then", async () => {
    const f = fake([[103, "pve-a"]]);
    const added = { urn: urn("proxmoxve:index/containerLegacy:ContainerLegacy", "ct-120"), custom: true, type: CT_TYPE, inputs: { nodeName: "pve-a", vmId: 120 } };
    // A `pulumi up` in another terminal adds a resource mid-migration.
    f.during = () => f.state.deployment.resources!.push(added);
    const r = await moveIn(noHa(), f, "103", "pve-b", "--yes");
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain("CT 103 (step-ca) is on pve-b, but the state of stack cluster changed while it moved (another `pulumi` command ran): it was not imported over. Run this again");
    expect(f.pulumi).toEqual(["stack export", "stack export"]);
    expect(f.state.deployment.resources!.at(-1)).toEqual(added);
    expect(nodeIn(f.state, 103)).toBe("pve-a");

    f.during = undefined;
    const again = await moveIn(noHa(), f, "103", "pve-b", "--yes");
    expect(again.code, again.out).toBe(0);
    expect(f.migrations).toEqual(["/nodes/pve-a/lxc/103/migrate pve-b"]);
    expect(nodeIn(f.state, 103)).toBe("pve-b");
    expect(f.state.deployment.resources!.at(-1)).toEqual(added);
  });

  it("a target the stack would not accept the guest on (its GPU, its dataset, its template, the node's memory) is refused with every reason, before any call", async () => {
    const f = fake([[914, "pve-gpu"]]);
    const r = await moveIn(clusterStack(), f, "ollama", "pve-a", "--yes");
    expect(r.code).toBe(1);
    expect(f.apiUsed).toBe(false);
    expect(f.pulumi).toEqual([]);
    // The stack-level refusal (local storage) and the stack's own validation with node: pve-a, together.
    expect(r.out).toContain("refused: phoenix:guests[3].storage: CT 914 (ollama):");
    expect(r.out).toContain("refused: phoenix:guests[3].node: with `node: pve-a` on guests[3] the stack does not validate");
    expect(r.out).toContain("phoenix:guests[3].mounts[0].volume: CT 914 ollama is on node pve-a, but dataset tank/models is on pve-gpu");
    expect(r.out).toContain("over-commits node pve-a's memory");
  });

  it("a migration PVE fails: where the guest is, the state unchanged, what to do; exit 1, no raw error", async () => {
    const f = fake([[103, "pve-a"]]);
    f.failTask = "PVE API POST /nodes/pve-a/lxc/103/migrate: task UPID:pve-a:1:2:3:vzmigrate:103:x: failed: migration aborted";
    const r = await moveIn(noHa(), f, "step-ca", "pve-b", "--yes");
    expect(r.code).toBe(1);
    expect(r.out).toContain(`PVE's migration of CT 103 (step-ca) to pve-b failed: ${f.failTask}. CT 103 (step-ca) is running on pve-a (GET /cluster/resources); the state is unchanged.`);
    expect(r.out).toContain("Fix what PVE says");
    expect(f.pulumi).toEqual(["stack export"]);
    expect(nodeIn(f.state, 103)).toBe("pve-a");
  });

  it("a deployment of another version is refused before the migration", async () => {
    const f = fake([[103, "pve-a"]]);
    f.state = { ...f.state, version: 4 };
    const r = await moveIn(noHa(), f, "step-ca", "pve-b", "--yes");
    expect(r.code).toBe(1);
    expect(r.out).toContain("refused: `pulumi stack export` wrote a deployment of version 4, not 3");
    expect(f.migrations).toEqual([]);
  });
});
