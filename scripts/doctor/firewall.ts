/**
 * Whether the declared firewall lets one TCP hop into a guest, evaluated the way
 * PVE does: the datacenter and the guest firewall must both be on for rules to
 * apply; the first matching inbound rule decides; otherwise the guest's policy.
 */
import { ipToInt, parseCidr, inSubnet } from "../../stacks/net";
import type { FirewallRule, Guest, StackConfig } from "../../stacks/schema";

export interface Admission {
  /** unknown: a rule names an alias or ipset the doctor cannot resolve offline. */
  verdict: "admitted" | "blocked" | "unknown";
  why: string;
}

/** The port of the PVE macros a Phoenix stack uses; others make a rule undecidable. */
const MACRO_PORTS: Record<string, number[]> = { HTTP: [80], HTTPS: [443], SSH: [22], Web: [80, 443] };

function portMatches(spec: string, port: number): boolean {
  return spec.split(",").some((part) => {
    const [lo, hi] = part.split(":").map(Number) as [number, number | undefined];
    return hi === undefined ? port === lo : port >= lo && port <= hi;
  });
}

/** true/false, or undefined when the source names an alias or ipset. */
function sourceMatches(source: string, ip: string): boolean | undefined {
  const negated = source.startsWith("!");
  const items = (negated ? source.slice(1) : source).split(",");
  const hits = items.map((item): boolean | undefined => {
    if (item.includes("-")) {
      const [a, b] = item.split("-") as [string, string];
      return ipToInt(ip) >= ipToInt(a) && ipToInt(ip) <= ipToInt(b);
    }
    if (item.includes("/")) {
      const cidr = parseCidr(item);
      return cidr ? inSubnet(ip, cidr) : undefined;
    }
    return /^\d+\.\d+\.\d+\.\d+$/.test(item) ? item === ip : undefined;
  });
  if (hits.includes(undefined)) return undefined;
  return hits.some(Boolean) !== negated;
}

function ruleMatches(rule: FirewallRule, port: number, ip: string): boolean | undefined {
  if (rule.type !== "in" || !rule.enabled) return false;
  if (rule.macro !== undefined) {
    const ports = MACRO_PORTS[rule.macro];
    if (!ports) return undefined;
    if (!ports.includes(port)) return false;
  } else {
    if (rule.proto !== undefined && rule.proto !== "tcp") return false;
    if (rule.dport !== undefined && !portMatches(rule.dport, port)) return false;
  }
  return rule.source === undefined ? true : sourceMatches(rule.source, ip);
}

export function admits(config: StackConfig, guest: Guest, port: number, sourceIp: string): Admission {
  if (!config.firewall.enabled) return { verdict: "admitted", why: "the datacenter firewall is off" };
  if (!guest.firewall.enabled) return { verdict: "admitted", why: `the firewall of guest ${guest.vmid} is off` };
  const rules = [
    ...guest.firewall.rules.map((rule) => ({ rule, where: `guests(${guest.vmid}).firewall.rules` })),
    ...guest.firewall.groups.flatMap((name) => (config.firewall.groups.find((grp) => grp.name === name)?.rules ?? []).map((rule) => ({ rule, where: `group ${name}` }))),
  ];
  for (const { rule, where } of rules) {
    const match = ruleMatches(rule, port, sourceIp);
    const label = `${where}: ${rule.action} ${rule.macro ?? `${rule.proto ?? "any"}/${rule.dport ?? "any"}`} from ${rule.source ?? "anywhere"}${rule.comment ? ` (${rule.comment})` : ""}`;
    if (match === undefined) return { verdict: "unknown", why: `${label} names an alias or ipset the doctor cannot resolve` };
    if (match) return { verdict: rule.action === "ACCEPT" ? "admitted" : "blocked", why: label };
  }
  const policy = guest.firewall.policyIn;
  return policy === "ACCEPT"
    ? { verdict: "admitted", why: `guest ${guest.vmid}'s inbound policy is ACCEPT` }
    : { verdict: "blocked", why: `no rule of guest ${guest.vmid} admits tcp/${port} from ${sourceIp} and its inbound policy is ${policy}` };
}
