/** What LxcGuest and VmGuest derive the same way from a guest's declaration. */
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

/** Resource name that says what the guest is: ct-103-step-ca, vm-1001-portainer. */
export function guestResourceName(g: { kind: "lxc" | "vm"; vmid: number; name: string }): string {
  return `${g.kind === "lxc" ? "ct" : "vm"}-${g.vmid}-${g.name}`;
}
