/**
 * The doctor in a cluster (Pulumi.cluster.yaml): every command inside a guest runs on the node
 * holding it, each node's channel is opened once and only when used. Tested below the SSH
 * transport: the test rig is one sshd for every node (notes on the multi-node rig), so it could
 * not tell the nodes apart. Each stand-in node answers `pct exec` / `qm guest exec` as PVE does,
 * only for its own guests (pve-container 963730e src/PVE/CLI/pct.pm:236 load_config "test if
 * container exists on this node"; qemu-server e6352be6 src/PVE/QemuServer/Agent.pm:109-112).
 */
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { guestsViaNode, nodeChannels, type NodeExec } from "../../scripts/doctor/channels";
import { planDoctor } from "../../scripts/doctor/plan";
import { runChecks } from "../../scripts/doctor/run";
import { guestNodeOf } from "../../stacks/cluster";
import { readStackFile, validateStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { ROOT } from "./world";

function cluster(): StackConfig {
  const r = validateStack(readStackFile(path.join(ROOT, "Pulumi.cluster.yaml")), { requireSecrets: false, projectRoot: ROOT });
  if (r.ok !== true) throw new Error("cluster stack does not validate");
  return r.config;
}

/** Stand-in nodes: each records what it ran and refuses a guest it does not hold, with pct's message. */
function standInNodes(config: StackConfig) {
  const holder = new Map(config.guests.map((g) => [g.vmid, guestNodeOf(config, g)]));
  const opened: string[] = [];
  const ran: Array<{ node: string; vmid: number }> = [];
  const open = (node: string): Promise<NodeExec> => {
    opened.push(node);
    return Promise.resolve({
      run: (command) => {
        const m = /^(?:pct exec|qm guest exec) (\d+) /.exec(command);
        if (!m) return Promise.resolve({ code: 0, stdout: "", stderr: "" });
        const vmid = Number(m[1]);
        ran.push({ node, vmid });
        if (holder.get(vmid) !== node) return Promise.resolve({ code: 2, stdout: "", stderr: `Configuration file 'nodes/${node}/lxc/${vmid}.conf' does not exist\n` });
        return Promise.resolve({ code: 0, stdout: "", stderr: "" });
      },
    });
  };
  return { holder, opened, ran, open };
}

describe("doctor in a cluster", () => {
  const config = cluster();
  const inGuests = planDoctor(config, {}).checks.filter((c) => c.check.layer === "guest" || c.check.layer === "traefik");
  const opts = { resolve: (a: { host: string; port: number }) => a, now: new Date() };

  it("runs each guest's commands on the node holding it, opening each node used once", async () => {
    const nodes = standInNodes(config);
    const findings = await runChecks(inGuests, nodeChannels(config, nodes.open), opts);
    const used = new Set(nodes.ran.map((r) => r.node));
    // The stack's services are on more than one node, so routing is exercised.
    expect(used.size).toBeGreaterThan(1);
    expect(nodes.ran.filter((r) => nodes.holder.get(r.vmid) !== r.node)).toEqual([]);
    expect([...nodes.opened].sort()).toEqual([...used].sort());
    expect(findings.filter((f) => /does not exist/.test(f.detail ?? ""))).toEqual([]);
  });

  it("opens host.node for the node's own checks; through host.node alone, guests elsewhere are not found", async () => {
    const nodes = standInNodes(config);
    const channels = nodeChannels(config, nodes.open);
    await channels.node.run("true");
    await channels.node.run("true");
    expect(nodes.opened).toEqual([config.host.node]);

    const single = standInNodes(config);
    const hostOnly = await single.open(config.host.node!);
    const findings = await runChecks(inGuests, { node: hostOnly, guest: guestsViaNode(hostOnly) }, opts);
    expect(findings.some((f) => f.status === "fail" && /does not exist/.test(f.detail ?? ""))).toBe(true);
  });
});
