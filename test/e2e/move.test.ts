/**
 * scripts/move.ts's pieces that need no world: its arguments, and the state rewrite on a
 * deployment as `pulumi stack export` writes it. The move itself, against the simulator as a
 * cluster with the stand-in `pulumi` on PATH, is in cluster-move.test.ts (it reuses that world:
 * the dev stack on two nodes with a shared storage).
 */
import { describe, expect, it } from "vitest";
import { parseArgs, rewriteGuestNode, type UntypedDeployment } from "../../scripts/move";

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
