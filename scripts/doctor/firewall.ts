/**
 * Whether the declared firewall lets one TCP hop into a guest (or, `out`, out of it),
 * evaluated the way PVE does: the datacenter and the guest firewall must both be on
 * for rules to apply; the first matching rule of that direction decides; otherwise
 * the guest's policy.
 *
 * The chain is the one Phoenix deploys (stacks/firewall-rules.ts guestChain: a derived
 * rule marked ahead, then security groups, then the guest's own rules, then the other
 * derived ones, each group's rules in place of its reference, as pve-firewall compiles
 * them), walked by the same evaluator validation uses (firstMatch), with PVE's full
 * macro table.
 */
import { firstMatch, guestChain, type ChainEntry } from "../../stacks/firewall-rules";
import { guestAddress } from "../../stacks/plan";
import type { Guest, StackConfig } from "../../stacks/schema";

export interface Admission {
  /** unknown: a rule names an alias or ipset the doctor cannot resolve offline. */
  verdict: "admitted" | "blocked" | "unknown";
  why: string;
}

function label(guest: Guest, { rule, group, path }: ChainEntry): string {
  const where = group ? `group ${group}` : /\(derived/.test(path) ? `derived for guest ${guest.vmid}` : `guests(${guest.vmid}).firewall.rules`;
  const peer = rule.type === "out" ? `to ${rule.dest ?? "anywhere"}` : `from ${rule.source ?? "anywhere"}`;
  return `${where}: ${rule.action} ${rule.macro ?? `${rule.proto ?? "any"}/${rule.dport ?? "any"}`} ${peer}${rule.comment ? ` (${rule.comment})` : ""}`;
}

/** `peerIp`: where the hop comes from (in) or goes to (out). */
export function admits(config: StackConfig, guest: Guest, port: number, peerIp: string, direction: "in" | "out" = "in"): Admission {
  if (!config.firewall.enabled) return { verdict: "admitted", why: "the datacenter firewall is off" };
  if (!guest.firewall.enabled) return { verdict: "admitted", why: `the firewall of guest ${guest.vmid} is off` };
  const own = guestAddress(guest);
  // Phoenix guests have one NIC, net0. Sending, the guest's own address (ipfilter holds it to it).
  const probe = direction === "in" ? { source: peerIp, dest: own } : { source: own ?? "0.0.0.0/0", dest: peerIp };
  const outcome = firstMatch(guestChain(config, guest), { direction, port, ...probe, iface: "net0" });
  if (outcome.by === "unknown") return { verdict: "unknown", why: `${label(guest, outcome.entry)} names an alias or ipset the doctor cannot resolve` };
  if (outcome.by === "rule") return { verdict: outcome.entry.rule.action === "ACCEPT" ? "admitted" : "blocked", why: label(guest, outcome.entry) };
  const [policy, way, peer] = direction === "in" ? [guest.firewall.policyIn, "inbound", `from ${peerIp}`] : [guest.firewall.policyOut, "outbound", `to ${peerIp}`];
  return policy === "ACCEPT"
    ? { verdict: "admitted", why: `guest ${guest.vmid}'s ${way} policy is ACCEPT` }
    : { verdict: "blocked", why: `no rule of guest ${guest.vmid} admits tcp/${port} ${peer} and its ${way} policy is ${policy}` };
}
