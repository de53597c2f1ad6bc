/**
 * Firewall: the datacenter (cluster) options, global rules and security
 * groups, the nodes' firewall with the admin lockout guard, and the per-guest
 * options, ipfilter and rules that LxcGuest and VmGuest both attach. What goes
 * into each rule list, and in what order, is stacks/firewall-rules.ts (which
 * validation and the doctor evaluate too); this file makes bpg's resources of
 * it and orders their apply.
 *
 * How the nodes' rules are laid out, and why. bpg v0.111.1 (the provider
 * @muhlba91/pulumi-proxmoxve 8.6.0 bundles), proxmoxtf/resource/firewall/rules.go:
 * - RulesCreate lists the scope's rules and fails "Existing rules detected.
 *   Aborting..." when there are any; it then POSTs the rules last to first, each
 *   landing on top (PVE inserts a new rule at position 0).
 * - RulesUpdate POSTs each rule it cannot match by signature to the top, in list
 *   order, then moves every rule to its place (moveto), then deletes the excess.
 * pve-firewall's daemon recompiles the ruleset every 10 s (pve-firewall 6.0.4
 * src/PVE/Service/pve_firewall.pm, `$updatetime = 10`), so any order a list passes
 * through can go live. A DROP for SSH added to the node's own list would sit above
 * the admin ACCEPTs: new connections (bpg's next API connection, Phoenix's next SSH
 * session) are dropped, and an apply that fails there leaves the DROP on top.
 * Established connections survive (Firewall.pm enable_host_firewall accepts
 * RELATED,ESTABLISHED before any rule).
 *
 * So each node's own list is fixed: [group phoenix-admin, the NFS clients'
 * ACCEPTs and the ops guest's scrape ACCEPTs (on the node Phoenix prepares), group phoenix-node]. phoenix-admin holds only
 * the admin ACCEPTs; phoenix-node holds firewall.node.rules. Editing the node rules
 * changes only the phoenix-node group, which the node walks after phoenix-admin, so a
 * new DROP on top of that group never precedes the admin ACCEPTs; editing
 * adminNetworks changes only ACCEPTs; the node's list itself changes only when an NFS
 * client or an exporter comes or goes, again ACCEPTs. The groups exist before the lists naming
 * them (dependsOn). This was chosen over dependsOn between two rule resources: bpg
 * manages a scope's whole list as one resource, so there is no second resource for
 * the same node to order.
 *
 * Limits. PVE refuses iface in a group's rules, so firewall.node.rules carry none
 * (validation says so; the datacenter's firewall.rules, walked after the node's, may).
 * The first apply over a node list made before this layout POSTs the two group
 * references to the top in list order, so phoenix-node briefly sits above
 * phoenix-admin: harmless while firewall.node.rules is empty (prod and dev);
 * otherwise add the node rules in a second `up`.
 *
 * A node whose host.fw already has rules: bpg's create refuses them ("Existing rules
 * detected"), and Phoenix does not take hand-made rules over unasked. Copy the rules
 * you keep into firewall.node.rules (ones that DROP or REJECT SSH or 8006 in a second
 * `up`), then either delete them on the node (Node → Firewall, or the [RULES]
 * section of /etc/pve/nodes/<node>/host.fw) or adopt the list, which the next `up`
 * rewrites to Phoenix's (bpg RulesImport accepts `node/<node>`):
 *   pulumi import proxmoxve:firewall/rulesLegacy:RulesLegacy firewall-node-<node>-rules node/<node> \
 *     --parent 'firewall=<URN of phoenix:firewall:ClusterFirewall::firewall>' --provider 'pve=<URN of the pve provider>' --protect=false
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { ADMIN_GROUP, adminRules, guestRuleList, NODE_GROUP, type ListEntry } from "../stacks/firewall-rules";
import type { FirewallRule, Guest, StackConfig } from "../stacks/schema";

/** The bridged provider's rule shape, with fields in a fixed order so a re-run diffs clean. */
export interface PveRule {
  type: "in" | "out" | "group";
  action?: string;
  securityGroup?: string;
  macro?: string;
  proto?: string;
  source?: string;
  dest?: string;
  dport?: string;
  sport?: string;
  iface?: string;
  comment?: string;
  enabled: boolean;
}

export function toPveRule(rule: FirewallRule): PveRule {
  const out: PveRule = { type: rule.type, action: rule.action, enabled: rule.enabled };
  if (rule.macro) out.macro = rule.macro;
  if (rule.proto !== undefined) out.proto = String(rule.proto);
  if (rule.source) out.source = rule.source;
  if (rule.dest) out.dest = rule.dest;
  if (rule.dport) out.dport = rule.dport;
  if (rule.sport) out.sport = rule.sport;
  if (rule.iface) out.iface = rule.iface;
  if (rule.comment) out.comment = rule.comment;
  return out;
}

/** A deployed rule list as bpg's rules: a group entry becomes a reference to the group. */
export function toPveRules(list: readonly ListEntry[]): PveRule[] {
  return list.map((e): PveRule => ("group" in e ? { type: "group", securityGroup: e.group, enabled: true } : toPveRule(e.rule)));
}

/** A guest's rules: its security groups first, then its own rules, in declaration order, then those Phoenix derives for it (stacks/firewall-rules.ts guestRuleList). */
export function guestRules(guest: Pick<Guest, "firewall">, derived: readonly ListEntry[] = []): PveRule[] {
  return toPveRules(guestRuleList(guest, undefined, derived));
}

export interface GuestFirewallSpec {
  node: string;
  vmid: number;
  kind: "lxc" | "vm";
  firewall: StackConfig["guests"][number]["firewall"];
  /** The guest's static IPv4 address; undefined on DHCP. */
  address: string | undefined;
  /** Rules Phoenix derives for the guest, after its own: the ops guest's scrape, Loki's pushes (stacks/firewall-rules.ts derivedRules). */
  derived?: readonly ListEntry[];
}

/** The ipfilter ipset of a guest's first NIC (Firewall.pm compute_ipfilter_ipset_name: `ipfilter-$iface`). */
export const IPFILTER_SET = "ipfilter-net0";

/**
 * Options, ipfilter and rules of one guest, as children of its component.
 * `formerName`: the guest's resource name before it was keyed by vmid, aliased so its firewall is kept, not deleted and made anew.
 *
 * ipfilter (pve-firewall 6.0.4 src/PVE/Firewall.pm): with the option on, ruleset_create_vm_chain
 * drops every packet the guest sends from a source outside ipset `ipfilter-net0`
 * (`-m set ! --match-set … src -j DROP`, after DHCP requests are let out), and the layer-2
 * filter admits ARP only for the set's IPv4 addresses. When the guest defines no such set,
 * the option implies an empty one, which PVE fills only with the NIC's link-local IPv6
 * address and, for a container, the `ip` of its net0 (the ipset generation for QEMU VMs vs
 * LXC containers; "For containers the configured IP addresses will be implicitly added").
 * So a container needs nothing more, and a VM gets `ipfilter-net0` with its address,
 * created before the option turns it on (otherwise the VM's IPv4 is dropped meanwhile).
 */
export function attachGuestFirewall(parent: pulumi.ComponentResource, name: string, spec: GuestFirewallSpec, opts: pulumi.CustomResourceOptions, formerName?: string): pulumi.Resource[] {
  const formerly = (suffix: string) => (formerName ? { aliases: [{ name: `${formerName}${suffix}` }] } : {});
  const target = spec.kind === "lxc" ? { containerId: spec.vmid } : { vmId: spec.vmid };
  // Validation refuses ipfilter on a DHCP guest; unset, it is on whenever the address is known.
  const ipfilter = spec.firewall.ipfilter ?? spec.address !== undefined;
  const ipset =
    ipfilter && spec.kind === "vm" && spec.address !== undefined
      ? [
          new proxmox.firewall.IpsetLegacy(
            `${name}-ipfilter`,
            { nodeName: spec.node, ...target, name: IPFILTER_SET, comment: "phoenix: the addresses net0 may send from", cidrs: [{ name: spec.address, comment: `phoenix: VM ${spec.vmid}` }] },
            { ...opts, parent },
          ),
        ]
      : [];
  const options = new proxmox.firewall.OptionsLegacy(
    `${name}-firewall`,
    { nodeName: spec.node, ...target, enabled: spec.firewall.enabled, inputPolicy: spec.firewall.policyIn, outputPolicy: spec.firewall.policyOut, ipfilter },
    { ...opts, ...formerly("-firewall"), parent, dependsOn: [...toArray(opts.dependsOn), ...ipset] },
  );
  const rules = guestRules(spec, spec.derived);
  if (rules.length === 0) return [...ipset, options];
  const ruleset = new proxmox.firewall.RulesLegacy(`${name}-firewall-rules`, { nodeName: spec.node, ...target, rules }, { ...opts, ...formerly("-firewall-rules"), parent });
  return [...ipset, options, ruleset];
}

function toArray(deps: pulumi.CustomResourceOptions["dependsOn"]): pulumi.Input<pulumi.Resource>[] {
  if (deps === undefined) return [];
  return Array.isArray(deps) ? deps : [deps as pulumi.Input<pulumi.Resource>];
}

export interface ClusterFirewallArgs {
  /** The stack's firewall section. */
  firewall: StackConfig["firewall"];
  /** host.adminNetworks: the only sources of SSH and the web UI. */
  adminNetworks: readonly string[];
  /** Each node's own rule list (stacks/firewall-rules.ts nodeRuleList), by node name. */
  nodeLists: Record<string, readonly ListEntry[]>;
}

/** Datacenter options, global rules, security groups, and the nodes' firewall. */
export class ClusterFirewall extends pulumi.ComponentResource {
  /** Security groups by name, for guests that reference them. */
  readonly groups: Record<string, pulumi.Resource> = {};
  /** Each node's own rule list, by node name: an NFS client waits for its export's ACCEPT. */
  readonly nodeRules: Record<string, pulumi.Resource> = {};

  constructor(name: string, args: ClusterFirewallArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:firewall:ClusterFirewall", name, {}, opts);
    const child = { parent: this };
    const fw = args.firewall;
    // Groups and the admin rules come first: enabling DROP before they exist could cut the session that applies them.
    for (const group of fw.groups) {
      this.groups[group.name] = new proxmox.cluster.firewall.security.GroupLegacy(
        `${name}-group-${group.name}`,
        { name: group.name, comment: group.comment, rules: group.rules.map(toPveRule) },
        child,
      );
    }
    // The nodes' two groups (the layout above): always present, even empty, so the nodes' lists never change for them.
    const nodeGroups = [
      new proxmox.cluster.firewall.security.GroupLegacy(
        `${name}-group-${ADMIN_GROUP}`,
        { name: ADMIN_GROUP, comment: "phoenix: SSH and the web UI from host.adminNetworks, ahead of every other node rule", rules: adminRules(args.adminNetworks).map(toPveRule) },
        child,
      ),
      new proxmox.cluster.firewall.security.GroupLegacy(
        `${name}-group-${NODE_GROUP}`,
        { name: NODE_GROUP, comment: "phoenix: firewall.node.rules", rules: fw.node.rules.map(toPveRule) },
        child,
      ),
    ];
    const nodes = Object.keys(args.nodeLists);
    for (const node of nodes) {
      this.nodeRules[node] = new proxmox.firewall.RulesLegacy(`${name}-node-${node}-rules`, { nodeName: node, rules: toPveRules(args.nodeLists[node]!) }, { ...child, dependsOn: nodeGroups });
    }
    const nodeRules = Object.values(this.nodeRules);
    const nodeOptions = nodes.map((node) => new proxmox.node.FirewallLegacy(`${name}-node-${node}`, { nodeName: node, enabled: fw.node.enabled }, { ...child, dependsOn: nodeRules }));
    const globalRules = fw.rules.length > 0 ? [new proxmox.firewall.RulesLegacy(`${name}-rules`, { rules: fw.rules.map(toPveRule) }, child)] : [];
    new proxmox.cluster.FirewallLegacy(
      `${name}-options`,
      { enabled: fw.enabled, inputPolicy: fw.policyIn, outputPolicy: fw.policyOut },
      { ...child, dependsOn: [...nodeRules, ...nodeOptions, ...globalRules, ...Object.values(this.groups)] },
    );
    this.registerOutputs({});
  }
}
