/** What LxcGuest and VmGuest derive the same way from a guest's declaration. */
import type * as pulumi from "@pulumi/pulumi";
import type { ListEntry } from "../../stacks/firewall-rules";
import type { Guest } from "../../stacks/schema";

/** Defaults a guest takes from the host when it declares none. */
export interface GuestContext {
  /** Node the guest lives on. */
  node: string;
  /** The host's management bridge. */
  bridge: string;
  /** Gateway of the guest's bridge. */
  gateway?: string;
  dnsServers: string[];
  domain: string;
  /** Firewall rules Phoenix derives for the guest, after its own (stacks/firewall-rules.ts derivedRules). */
  derivedRules?: readonly ListEntry[];
}

export interface ResolvedNetwork {
  bridge: string;
  address: string;
  gateway?: string;
  mac?: string;
  vlan?: number;
  dnsServers: string[];
  searchDomain: string;
}

export function resolveNetwork(g: Guest, ctx: GuestContext): ResolvedNetwork {
  const net = g.network;
  return {
    bridge: net.bridge ?? ctx.bridge,
    address: net.ip,
    gateway: net.ip === "dhcp" ? undefined : (net.gateway ?? ctx.gateway),
    mac: net.mac,
    vlan: net.vlan,
    dnsServers: g.dns?.servers ?? ctx.dnsServers,
    searchDomain: g.dns?.searchDomain ?? ctx.domain,
  };
}

export function guestTags(g: Guest): string[] {
  return [...new Set(["phoenix", g.role?.type ?? g.kind, ...g.tags])].sort();
}

export function guestDescription(g: Guest): string {
  return g.description ?? `Managed by Phoenix (Pulumi): ${g.role ? `role ${g.role.type}` : "no role"}. Changes made here are reverted on the next pulumi up.`;
}

export function startupOf(g: Guest): { onBoot: boolean; startup?: { order?: number; upDelay?: number; downDelay?: number } } {
  const s = g.startup;
  if (!s) return { onBoot: true };
  const startup = { order: s.order, upDelay: s.upDelay, downDelay: s.downDelay };
  return { onBoot: s.onBoot, startup: Object.values(startup).some((v) => v !== undefined) ? startup : undefined };
}

/**
 * The guest's resource name before it was keyed by vmid alone (ct-103-step-ca): an alias, so a
 * stack applied with those names keeps its guests. Valid until the guest is renamed.
 */
export function guestResourceName(g: { kind: "lxc" | "vm"; vmid: number; name: string }): string {
  return `${g.kind === "lxc" ? "ct" : "vm"}-${g.vmid}-${g.name}`;
}

/**
 * Options of a guest's bridged resource. Named by vmid, so a rename is an update, aliased to the
 * name it had before (above). Protected unless the configuration lifts it for this guest
 * (allowDestroy, allowReplace): the engine then refuses any plan that deletes or replaces it
 * (https://www.pulumi.com/docs/iac/concepts/resources/options/protect/). When a replacement is
 * allowed it deletes first: create-before-delete would clone onto the vmid still in use, which
 * bpg adopts as "already exists" before Pulumi deletes the "old" guest, the same one
 * (stacks/replacement.ts).
 */
export function guestOptions(g: Guest): Pick<pulumi.CustomResourceOptions, "protect" | "deleteBeforeReplace" | "aliases"> {
  return { protect: !g.allowDestroy && g.allowReplace.length === 0, deleteBeforeReplace: true, aliases: [{ name: guestResourceName(g) }] };
}

/**
 * The clone block of a guest: from the template on its own node, or, for a template on shared
 * storage on another node, from that node. bpg v0.111.1 then sends the clone to the template's
 * node with `target` = the guest's (proxmoxtf/resource/container/container.go:1334-1338;
 * vm/vm.go:2389-2418 when the template's disks are all on shared storage, else clone there and
 * migrate :2420-2456). Without a node of its own the block is what it always was, so a guest
 * cloning on its own node has the same inputs as before.
 */
export function cloneOf(template: number, templateNode: string | undefined, node: string): { vmId: number; full: boolean; nodeName?: string } {
  return { vmId: template, full: false, ...(templateNode !== undefined && templateNode !== node ? { nodeName: templateNode } : {}) };
}

/**
 * clone.node_name is ForceNew (container.go:242-248, vm.go:615-621) yet matters only at the
 * clone: a VM migrated to another node (`migrate: true`) would otherwise gain or lose it and be
 * destroyed and cloned anew. Pulumi keeps the state's value (its absence included) on updates
 * (pkg/resource/deploy/step_generator.go processIgnoreChanges, properties_path.go reset).
 */
export const CLONE_IGNORED = ["clone.nodeName"];
