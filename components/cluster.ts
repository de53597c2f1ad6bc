/**
 * The cluster's parts of the machine: host preparation of every node beyond host.node, and the
 * HA manager's resources and rules for the guests that ask for HA.
 *
 * HA through the bridged provider (bpg v0.111.1 fwprovider/cluster/ha/resource_haresource.go,
 * resource_harule.go, resource_hagroup.go; calls in proxmox/cluster/ha/{resources,rules,groups}):
 * - every HA guest is a resource `ct:<vmid>`/`vm:<vmid>` (pve-ha-manager src/PVE/API2/HA/Resources.pm);
 * - PVE 9: its preferred nodes are a node-affinity rule, its `apartFrom` a negative
 *   resource-affinity rule (API2/HA/Rules.pm; a rule may only name configured resources, so the
 *   rules wait for the resources: "cannot use unmanaged resource(s)");
 * - PVE 8: its preferred nodes are an HA group (API2/HA/Groups.pm) the resource names; PVE 9
 *   refuses groups once they are migrated to rules ("ha groups have been migrated to rules").
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { guestNodeOf, haSid, hostNodeOf, nodeHost, preparedNodes, pveMajor } from "../stacks/cluster";
import type { Guest, StackConfig } from "../stacks/schema";
import type { ApiAccess } from "../providers/hardware/gpu-functions";
import type { SshConnection } from "../providers/ssh";
import { HostPrep } from "./host";

export interface NodePrepArgs {
  config: StackConfig;
  /** host.node's HostPrep, made by the composition as before (its name stays `host`). */
  host?: HostPrep;
  connections: Map<string, pulumi.Input<SshConnection> | undefined>;
  provider: pulumi.ProviderResource;
  api: pulumi.Input<ApiAccess>;
}

/** HostPrep of every node, host.node's included; the others are named `host-<node>`. */
export function prepareNodes(args: NodePrepArgs, opts: pulumi.ComponentResourceOptions): Record<string, HostPrep> {
  const hostNode = hostNodeOf(args.config);
  const out: Record<string, HostPrep> = args.host ? { [hostNode]: args.host } : {};
  for (const node of preparedNodes(args.config)) {
    const connection = args.connections.get(node);
    if (node === hostNode || !connection) continue;
    out[node] = new HostPrep(`host-${node}`, { host: nodeHost(args.config, node), node, connection, provider: args.provider, api: args.api }, opts);
  }
  return out;
}

/** Resource names of the HA parts, by the guest's vmid: stable across edits of other guests. */
export class HighAvailability extends pulumi.ComponentResource {
  constructor(name: string, args: { config: StackConfig; provider: pulumi.ProviderResource; readyOf: (vmid: number) => pulumi.Resource }, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:cluster:HighAvailability", name, {}, opts);
    const { config } = args;
    const child = { parent: this, provider: args.provider };
    const ha = config.guests.filter((g): g is Guest & { ha: NonNullable<Guest["ha"]> } => g.ha !== undefined);
    const resources = new Map<number, proxmox.HaresourceLegacy>();
    // Priorities by order: the first preferred node highest (pve-ha-manager Rules/NodeAffinity.pm: higher runs first).
    const priorities = (nodes: string[]) => Object.fromEntries(nodes.map((n, i) => [n, nodes.length - i]));
    for (const g of ha) {
      const sid = haSid(g);
      const group =
        pveMajor(config) === 8 && g.ha.nodes
          ? new proxmox.HagroupLegacy(`ha-group-${g.vmid}`, { group: `phoenix-${g.vmid}`, nodes: priorities(g.ha.nodes), restricted: g.ha.strict, comment: `Phoenix: preferred nodes of ${g.name}` }, child)
          : undefined;
      resources.set(
        g.vmid,
        new proxmox.HaresourceLegacy(
          `ha-${g.vmid}`,
          {
            resourceId: sid,
            state: g.ha.state,
            maxRestart: g.ha.maxRestart,
            maxRelocate: g.ha.maxRelocate,
            comment: `Phoenix: ${g.name} on ${guestNodeOf(config, g)}`,
            ...(group ? { group: group.group } : {}),
          },
          // The HA manager takes over a guest that exists and is set up: it starts and recovers it from then on.
          { ...child, dependsOn: [args.readyOf(g.vmid), ...(group ? [group] : [])] },
        ),
      );
    }
    if (pveMajor(config) === 9) {
      for (const g of ha) {
        if (g.ha.nodes) {
          new proxmox.HaruleLegacy(
            `ha-rule-${g.vmid}-nodes`,
            { rule: `phoenix-${g.vmid}-nodes`, type: "node-affinity", resources: [haSid(g)], nodes: priorities(g.ha.nodes), strict: g.ha.strict, comment: `Phoenix: preferred nodes of ${g.name}` },
            { ...child, dependsOn: [resources.get(g.vmid)!] },
          );
        }
        if (g.ha.apartFrom.length > 0) {
          const apart = [g.vmid, ...g.ha.apartFrom].sort((a, b) => a - b);
          new proxmox.HaruleLegacy(
            `ha-rule-${g.vmid}-apart`,
            { rule: `phoenix-${g.vmid}-apart`, type: "resource-affinity", affinity: "negative", resources: apart.map((v) => haSid(config.guests.find((x) => x.vmid === v)!)), comment: `Phoenix: keep ${g.name} apart` },
            { ...child, dependsOn: apart.map((v) => resources.get(v)!) },
          );
        }
      }
    }
    this.registerOutputs({});
  }
}
