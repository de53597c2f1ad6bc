/**
 * East-west isolation and the seed's hardening checklist, proved from the declared firewall with
 * the one evaluator of stacks/firewall-rules.ts (anyAccepted over guestChain / hostNodeChain).
 *
 * A connection between two guests on a bridge crosses two PVE chains: the sender's tap chain OUT,
 * then the receiver's tap chain IN (pve-firewall 6.0.4 src/PVE/Firewall.pm generate_tap_rules_direction:
 * the guest's rule list in order, security groups expanded where they stand
 * (ruleset_generate_vm_rules → ruleset_add_group_rule), then the policy: policy_out default ACCEPT,
 * policy_in default DROP; a guest whose firewall is disabled gets an ACCEPT policy and no rules).
 * It passes only when both let some of it through.
 */
import { offBoxBackupIssues } from "./backup";
import { anyAccepted, boundaryPorts, guestChain, hostNodeChain, type ChainEntry, type Passage } from "./firewall-rules";
import { guestAddress } from "./plan";
import type { Guest, StackConfig } from "./schema";
import { guestLabel, type ConfigIssue } from "./validate";

/** Where a connection from the internet comes from: TEST-NET-3 (RFC 5737), outside any declared network. */
export const INTERNET_PROBE = "203.0.113.10";
const PROTOCOLS = ["tcp", "udp"] as const;

/**
 * The addresses a guest can send from: its own with ipfilter (on by default for a static address:
 * components/firewall.ts attachGuestFirewall), any address without it.
 */
function sendsFrom(g: Guest): string {
  const ip = guestAddress(g);
  return ip !== undefined && (g.firewall.ipfilter ?? true) ? ip : "0.0.0.0/0";
}

/** Why a guest's chain in one direction lets the probe through, as config paths. */
function passage(config: StackConfig, g: Guest, direction: "in" | "out", proto: "tcp" | "udp", port: number, source: string, dest: string | undefined): Passage & { chain: ChainEntry[] } {
  if (!config.firewall.enabled || !g.firewall.enabled) return { accepted: true, chain: [] };
  const chain = guestChain(config, g);
  return { ...anyAccepted(chain, { direction, proto, port, source, dest, iface: "net0" }, direction === "in" ? g.firewall.policyIn : g.firewall.policyOut), chain };
}

function explain(config: StackConfig, g: Guest, p: Passage, direction: "in" | "out"): string {
  const i = config.guests.indexOf(g);
  if (!config.firewall.enabled) return "firewall.enabled is false";
  if (!g.firewall.enabled) return `guests[${i}].firewall.enabled is false`;
  if (p.unknown) return `${p.unknown.path} names an alias or ipset Phoenix cannot resolve offline`;
  if (p.entry) return `${p.entry.path}${p.entry.group ? ` (group ${p.entry.group})` : ""} accepts it`;
  return `guests[${i}].firewall.policy${direction === "in" ? "In" : "Out"} ${direction === "in" ? g.firewall.policyIn : g.firewall.policyOut} takes it`;
}

/** A connection `from` can open to `to`, or undefined when none: the first (protocol, port) that passes, with why. */
export function reach(config: StackConfig, from: Guest, to: Guest): { proto: string; port: number; why: string } | undefined {
  const dest = guestAddress(to);
  const source = sendsFrom(from);
  const ports = boundaryPorts([config.firewall.enabled ? guestChain(config, from) : [], config.firewall.enabled ? guestChain(config, to) : []]);
  for (const proto of PROTOCOLS) {
    for (const port of ports) {
      const out = passage(config, from, "out", proto, port, source, dest);
      if (!out.accepted) continue;
      const inn = passage(config, to, "in", proto, port, source, dest);
      if (inn.accepted) return { proto, port, why: `${explain(config, from, out, "out")}, and ${explain(config, to, inn, "in")}` };
    }
  }
  return undefined;
}

/** The members of each isolated security group. */
export function isolatedGroups(config: StackConfig): Array<{ name: string; index: number; members: Guest[] }> {
  return config.firewall.groups.flatMap((grp, index) => (grp.isolated ? [{ name: grp.name, index, members: config.guests.filter((g) => g.firewall.groups.includes(grp.name)) }] : []));
}

/** Every pair of an isolated group's members that can reach each other, refused with the rules that let it. */
export function isolationIssues(config: StackConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const grp of isolatedGroups(config)) {
    for (const from of grp.members) {
      for (const to of grp.members) {
        if (from === to) continue;
        const i = config.guests.indexOf(from);
        if (guestAddress(to) === undefined) {
          issues.push({ path: `guests[${config.guests.indexOf(to)}].network.ip`, message: `${guestLabel(to)} is in isolated group ${grp.name} but uses DHCP: its peers' rules cannot name it, so its isolation cannot be proved: give it a static IP` });
          continue;
        }
        const r = reach(config, from, to);
        if (r) issues.push({ path: `guests[${i}].firewall`, message: `${guestLabel(from)} can reach ${guestLabel(to)} (${r.proto}/${r.port}) although both are in isolated group ${grp.name}: ${r.why}. Drop traffic to the group's members ahead of it` });
      }
    }
  }
  return issues;
}

/** Ports the node may take from the internet under the seed's checklist (8006 web UI, 443 HTTPS); 22 only from host.adminNetworks. */
export const HARDENED_HOST_PORTS = [8006, 443] as const;

/** The seed's hardening checklist (phoenix:firewall.hardening), as validation rules. */
export function hardeningIssues(config: StackConfig): ConfigIssue[] {
  if (!config.firewall.hardening) return [];
  const issues: ConfigIssue[] = [];
  const fw = config.firewall;
  if (!fw.enabled) issues.push({ path: "firewall.enabled", message: "hardening needs the datacenter firewall enabled" });
  if (!fw.node.enabled) issues.push({ path: "firewall.node.enabled", message: "hardening needs the node's firewall enabled" });
  if (fw.policyIn !== "DROP") issues.push({ path: "firewall.policyIn", message: `hardening drops the node's inbound traffic by default: set policyIn to DROP, not ${fw.policyIn}` });
  if (fw.enabled && fw.node.enabled) {
    const chain = hostNodeChain(config);
    for (const proto of PROTOCOLS) {
      for (const port of boundaryPorts([chain])) {
        if (proto === "tcp" && (HARDENED_HOST_PORTS as readonly number[]).includes(port)) continue;
        const p = anyAccepted(chain, { direction: "in", proto, port, source: INTERNET_PROBE, dest: undefined, iface: "vmbr0" }, fw.policyIn);
        if (p.accepted) issues.push({ path: p.entry?.path ?? p.unknown?.path ?? "firewall.policyIn", message: `hardening: the node takes ${proto}/${port} from the internet (${INTERNET_PROBE}); only tcp/${HARDENED_HOST_PORTS.join(" and tcp/")} may be open to it, SSH only from host.adminNetworks` });
      }
    }
  }
  // "Off-box encrypted backups → Proxmox Backup Server or borg to USB/NAS".
  issues.push(...offBoxBackupIssues(config));
  config.guests.forEach((g, i) => {
    if (g.kind === "lxc" && !g.unprivileged) issues.push({ path: `guests[${i}].unprivileged`, message: `hardening: ${guestLabel(g)} is privileged (root inside is root on the host): make it unprivileged` });
  });
  for (const grp of isolatedGroups(config)) {
    for (const g of grp.members) {
      const ports = boundaryPorts([guestChain(config, g)]);
      for (const proto of PROTOCOLS) {
        const open = ports.find((port) => passage(config, g, "in", proto, port, INTERNET_PROBE, guestAddress(g)).accepted);
        if (open !== undefined) {
          const p = passage(config, g, "in", proto, open, INTERNET_PROBE, guestAddress(g));
          issues.push({ path: `guests[${config.guests.indexOf(g)}].firewall`, message: `hardening: ${guestLabel(g)} is in isolated group ${grp.name}, which is outbound-only, but takes ${proto}/${open} from the internet: ${explain(config, g, p, "in")}` });
          break;
        }
      }
    }
  }
  return issues;
}
