/**
 * Firewall: the datacenter (cluster) options, global rules and security
 * groups, the nodes' firewall with the admin lockout guard, and the per-guest
 * options and rules that LxcGuest and VmGuest both attach.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { FirewallRule, StackConfig } from "../stacks/schema";

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

/** A guest's rules: its security groups first, then its own rules, in declaration order. */
export function guestRules(groups: readonly string[], rules: readonly FirewallRule[]): PveRule[] {
  return [...groups.map((g): PveRule => ({ type: "group", securityGroup: g, enabled: true })), ...rules.map(toPveRule)];
}

/** Rules that keep SSH and the web UI open from the admin networks, ahead of everything else on the node. */
export function adminRules(adminNetworks: readonly string[]): PveRule[] {
  return adminNetworks.flatMap((net) => [
    { type: "in" as const, action: "ACCEPT", proto: "tcp", dport: "22", source: net, comment: "phoenix: SSH from admin network", enabled: true },
    { type: "in" as const, action: "ACCEPT", proto: "tcp", dport: "8006", source: net, comment: "phoenix: web UI from admin network", enabled: true },
  ]);
}

export interface GuestFirewallSpec {
  node: string;
  vmid: number;
  kind: "lxc" | "vm";
  firewall: StackConfig["guests"][number]["firewall"];
}

/** Options and rules of one guest, as children of its component. */
export function attachGuestFirewall(parent: pulumi.ComponentResource, name: string, spec: GuestFirewallSpec, opts: pulumi.CustomResourceOptions): pulumi.Resource[] {
  const target = spec.kind === "lxc" ? { containerId: spec.vmid } : { vmId: spec.vmid };
  const options = new proxmox.firewall.OptionsLegacy(
    `${name}-firewall`,
    { nodeName: spec.node, ...target, enabled: spec.firewall.enabled, inputPolicy: spec.firewall.policyIn, outputPolicy: spec.firewall.policyOut },
    { ...opts, parent },
  );
  const rules = guestRules(spec.firewall.groups, spec.firewall.rules);
  if (rules.length === 0) return [options];
  const ruleset = new proxmox.firewall.RulesLegacy(`${name}-firewall-rules`, { nodeName: spec.node, ...target, rules }, { ...opts, parent });
  return [options, ruleset];
}

export interface ClusterFirewallArgs {
  /** The validated firewall section of the stack. */
  firewall: StackConfig["firewall"];
  /** Nodes whose host firewall Phoenix manages. */
  nodes: string[];
  /** Networks from which SSH and the web UI stay reachable. */
  adminNetworks: string[];
}

/** Datacenter options, global rules, security groups, and the nodes' firewall. */
export class ClusterFirewall extends pulumi.ComponentResource {
  /** Security groups by name, for guests that reference them. */
  readonly groups: Record<string, pulumi.Resource> = {};

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
    const nodeRules = args.nodes.map(
      (node) =>
        new proxmox.firewall.RulesLegacy(`${name}-node-${node}-rules`, { nodeName: node, rules: [...adminRules(args.adminNetworks), ...fw.node.rules.map(toPveRule)] }, child),
    );
    const nodeOptions = args.nodes.map((node) => new proxmox.node.FirewallLegacy(`${name}-node-${node}`, { nodeName: node, enabled: fw.node.enabled }, { ...child, dependsOn: nodeRules }));
    const globalRules = fw.rules.length > 0 ? [new proxmox.firewall.RulesLegacy(`${name}-rules`, { rules: fw.rules.map(toPveRule) }, child)] : [];
    new proxmox.cluster.FirewallLegacy(
      `${name}-options`,
      { enabled: fw.enabled, inputPolicy: fw.policyIn, outputPolicy: fw.policyOut },
      { ...child, dependsOn: [...nodeRules, ...nodeOptions, ...globalRules, ...Object.values(this.groups)] },
    );
    this.registerOutputs({});
  }
}
