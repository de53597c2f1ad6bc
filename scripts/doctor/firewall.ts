/**
 * Whether the declared firewall lets one TCP hop into a guest, evaluated the way
 * PVE does: the datacenter and the guest firewall must both be on for rules to
 * apply; the first matching inbound rule decides; otherwise the guest's policy.
 *
 * The chain is the one Phoenix deploys (stacks/firewall-rules.ts guestChain:
 * security groups first, then the guest's own rules, each group's rules in place
 * of its reference, as pve-firewall compiles them), walked by the same evaluator
 * validation uses (firstMatch), with PVE's full macro table.
 */
import { firstMatch, guestChain, type ChainEntry } from "../../stacks/firewall-rules";
import { guestAddress } from "../../stacks/plan";
import type { Guest, StackConfig } from "../../stacks/schema";

export interface Admission {
  /** unknown: a rule names an alias or ipset the doctor cannot resolve offline. */
  verdict: "admitted" | "blocked" | "unknown";
  why: string;
}

function label(guest: Guest, { rule, group }: ChainEntry): string {
  const where = group ? `group ${group}` : `guests(${guest.vmid}).firewall.rules`;
  return `${where}: ${rule.action} ${rule.macro ?? `${rule.proto ?? "any"}/${rule.dport ?? "any"}`} from ${rule.source ?? "anywhere"}${rule.comment ? ` (${rule.comment})` : ""}`;
}

export function admits(config: StackConfig, guest: Guest, port: number, sourceIp: string): Admission {
  if (!config.firewall.enabled) return { verdict: "admitted", why: "the datacenter firewall is off" };
  if (!guest.firewall.enabled) return { verdict: "admitted", why: `the firewall of guest ${guest.vmid} is off` };
  // Phoenix guests have one NIC, net0.
  const outcome = firstMatch(guestChain(config, guest), { direction: "in", port, source: sourceIp, dest: guestAddress(guest), iface: "net0" });
  if (outcome.by === "unknown") return { verdict: "unknown", why: `${label(guest, outcome.entry)} names an alias or ipset the doctor cannot resolve` };
  if (outcome.by === "rule") return { verdict: outcome.entry.rule.action === "ACCEPT" ? "admitted" : "blocked", why: label(guest, outcome.entry) };
  const policy = guest.firewall.policyIn;
  return policy === "ACCEPT"
    ? { verdict: "admitted", why: `guest ${guest.vmid}'s inbound policy is ACCEPT` }
    : { verdict: "blocked", why: `no rule of guest ${guest.vmid} admits tcp/${port} from ${sourceIp} and its inbound policy is ${policy}` };
}
