/** What LxcGuest and VmGuest derive the same way from a guest's declaration. */
import type * as pulumi from "@pulumi/pulumi";
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
 * (components/guest/replacement.ts).
 */
export function guestOptions(g: Guest): Pick<pulumi.CustomResourceOptions, "protect" | "deleteBeforeReplace" | "aliases"> {
  return { protect: !g.allowDestroy && g.allowReplace.length === 0, deleteBeforeReplace: true, aliases: [{ name: guestResourceName(g) }] };
}
