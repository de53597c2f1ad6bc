/**
 * PVE's firewall as Phoenix reasons about it: the macro table, where `iface`
 * is allowed, the rules Phoenix adds to a node, and one evaluator of a chain's
 * effective rule order. Validation (the admin lockout guard, NFS) and the doctor
 * (a hop into a guest) both walk chains with it.
 *
 * Read from pve-firewall 6.0.4 (PVE 9.1; proxmox/pve-firewall commit 6f1311f),
 * src/PVE/Firewall.pm, cited below as Firewall.pm.
 */
import { ipToInt, parseCidr, subnetOf } from "./net";
import { guestAddress } from "./plan";
import { acmeNames, type AcmeName } from "./routing";
import { logShippers, opsGuest, scrapePoints, type ScrapePoint } from "./scrape";
import type { FirewallRule, Guest, StackConfig } from "./schema";

/** One rule a macro expands to (its action is the rule's). */
export interface MacroRule {
  proto: string;
  dport?: string;
  sport?: string;
}

/**
 * Firewall.pm `$pve_fw_macros` ("imported/converted from /usr/share/shorewall/macro.*"),
 * transcribed mechanically from that file, plus the two names only `$pve_ipv6fw_macros`
 * defines (IPv6-only: they never match IPv4 traffic, so no rules here). A macro's rules
 * take the rule's source, dest and iface (`$apply_macro`).
 */
export const PVE_MACROS: Readonly<Record<string, readonly MacroRule[]>> = {
  Amanda: [{ proto: "udp", dport: "10080" }, { proto: "tcp", dport: "10080" }],
  Auth: [{ proto: "tcp", dport: "113" }],
  BGP: [{ proto: "tcp", dport: "179" }],
  BitTorrent: [{ proto: "tcp", dport: "6881:6889" }, { proto: "udp", dport: "6881" }],
  BitTorrent32: [{ proto: "tcp", dport: "6881:6999" }, { proto: "udp", dport: "6881" }],
  Ceph: [{ proto: "tcp", dport: "6789" }, { proto: "tcp", dport: "3300" }, { proto: "tcp", dport: "6800:7300" }],
  CVS: [{ proto: "tcp", dport: "2401" }],
  Citrix: [{ proto: "tcp", dport: "1494" }, { proto: "udp", dport: "1604" }, { proto: "tcp", dport: "2598" }],
  DAAP: [{ proto: "tcp", dport: "3689" }, { proto: "udp", dport: "3689" }],
  DCC: [{ proto: "tcp", dport: "6277" }],
  DHCPfwd: [{ proto: "udp", dport: "67:68", sport: "67:68" }],
  DNS: [{ proto: "udp", dport: "53" }, { proto: "tcp", dport: "53" }],
  Distcc: [{ proto: "tcp", dport: "3632" }],
  FTP: [{ proto: "tcp", dport: "21" }],
  Finger: [{ proto: "tcp", dport: "79" }],
  GNUnet: [{ proto: "tcp", dport: "2086" }, { proto: "udp", dport: "2086" }, { proto: "tcp", dport: "1080" }, { proto: "udp", dport: "1080" }],
  GRE: [{ proto: "47" }],
  Git: [{ proto: "tcp", dport: "9418" }],
  HKP: [{ proto: "tcp", dport: "11371" }],
  HTTP: [{ proto: "tcp", dport: "80" }],
  HTTPS: [{ proto: "tcp", dport: "443" }],
  ICPV2: [{ proto: "udp", dport: "3130" }],
  ICQ: [{ proto: "tcp", dport: "5190" }],
  IMAP: [{ proto: "tcp", dport: "143" }],
  IMAPS: [{ proto: "tcp", dport: "993" }],
  IPIP: [{ proto: "94" }],
  IPsec: [{ proto: "udp", dport: "500", sport: "500" }, { proto: "50" }],
  IPsecah: [{ proto: "udp", dport: "500", sport: "500" }, { proto: "51" }],
  IPsecnat: [{ proto: "udp", dport: "500" }, { proto: "udp", dport: "4500" }, { proto: "50" }],
  IRC: [{ proto: "tcp", dport: "6667" }],
  Jetdirect: [{ proto: "tcp", dport: "9100" }],
  L2TP: [{ proto: "udp", dport: "1701" }],
  LDAP: [{ proto: "tcp", dport: "389" }],
  LDAPS: [{ proto: "tcp", dport: "636" }],
  MSNP: [{ proto: "tcp", dport: "1863" }],
  MSSQL: [{ proto: "tcp", dport: "1433" }],
  Mail: [{ proto: "tcp", dport: "25" }, { proto: "tcp", dport: "465" }, { proto: "tcp", dport: "587" }],
  MDNS: [{ proto: "udp", dport: "5353" }],
  Munin: [{ proto: "tcp", dport: "4949" }],
  MySQL: [{ proto: "tcp", dport: "3306" }],
  NNTP: [{ proto: "tcp", dport: "119" }],
  NNTPS: [{ proto: "tcp", dport: "563" }],
  NTP: [{ proto: "udp", dport: "123" }],
  OSPF: [{ proto: "89" }],
  OpenVPN: [{ proto: "udp", dport: "1194" }],
  PCA: [{ proto: "udp", dport: "5632" }, { proto: "tcp", dport: "5631" }],
  PMG: [{ proto: "tcp", dport: "8006" }],
  POP3: [{ proto: "tcp", dport: "110" }],
  POP3S: [{ proto: "tcp", dport: "995" }],
  PPtP: [{ proto: "47" }, { proto: "tcp", dport: "1723" }],
  Ping: [{ proto: "icmp", dport: "echo-request" }],
  PostgreSQL: [{ proto: "tcp", dport: "5432" }],
  Printer: [{ proto: "tcp", dport: "515" }],
  RDP: [{ proto: "tcp", dport: "3389" }],
  RIP: [{ proto: "udp", dport: "520" }],
  RNDC: [{ proto: "tcp", dport: "953" }],
  Razor: [{ proto: "tcp", dport: "2703" }],
  Rdate: [{ proto: "tcp", dport: "37" }],
  Rsync: [{ proto: "tcp", dport: "873" }],
  SANE: [{ proto: "tcp", dport: "6566" }],
  SMB: [{ proto: "udp", dport: "135,445" }, { proto: "udp", dport: "137:139" }, { proto: "udp", dport: "1024:65535", sport: "137" }, { proto: "tcp", dport: "135,139,445" }],
  SMBswat: [{ proto: "tcp", dport: "901" }],
  SMTP: [{ proto: "tcp", dport: "25" }],
  SMTPS: [{ proto: "tcp", dport: "465" }],
  SNMP: [{ proto: "udp", dport: "161:162" }, { proto: "tcp", dport: "161" }],
  SPAMD: [{ proto: "tcp", dport: "783" }],
  SSH: [{ proto: "tcp", dport: "22" }],
  SVN: [{ proto: "tcp", dport: "3690" }],
  SixXS: [{ proto: "tcp", dport: "3874" }, { proto: "udp", dport: "3740" }, { proto: "41" }, { proto: "udp", dport: "5072,8374" }],
  SPICEproxy: [{ proto: "tcp", dport: "3128" }],
  Squid: [{ proto: "tcp", dport: "3128" }],
  Submission: [{ proto: "tcp", dport: "587" }],
  Syslog: [{ proto: "udp", dport: "514" }, { proto: "tcp", dport: "514" }],
  TFTP: [{ proto: "udp", dport: "69" }],
  Telnet: [{ proto: "tcp", dport: "23" }],
  Telnets: [{ proto: "tcp", dport: "992" }],
  Time: [{ proto: "tcp", dport: "37" }],
  Trcrt: [{ proto: "udp", dport: "33434:33524" }, { proto: "icmp", dport: "echo-request" }],
  VNC: [{ proto: "tcp", dport: "5900:5999" }],
  VNCL: [{ proto: "tcp", dport: "5500" }],
  Web: [{ proto: "tcp", dport: "80" }, { proto: "tcp", dport: "443" }],
  Webcache: [{ proto: "tcp", dport: "8080" }],
  Webmin: [{ proto: "tcp", dport: "10000" }],
  Whois: [{ proto: "tcp", dport: "43" }],
  NeighborDiscovery: [], // IPv6 only
  DHCPv6: [], // IPv6 only
};

const MACRO_SPELLING = new Map(Object.keys(PVE_MACROS).map((name) => [name.toLowerCase(), name]));

/**
 * The spelling PVE stores for a macro, or undefined for a macro PVE refuses.
 * Firewall.pm init_firewall_macros keys `$pve_fw_preferred_macro_names` by lc(name);
 * verify_rule replaces the rule's macro with that name, or fails "unknown macro '…'".
 */
export function canonicalMacro(name: string): string | undefined {
  return MACRO_SPELLING.get(name.toLowerCase());
}

/** Where a rule list lives, as Firewall.pm verify_rule's `$rule_env`. */
export type RuleScope = "vm" | "ct" | "group" | "cluster" | "host";

/**
 * Why PVE refuses this `iface` in this scope, or undefined. Firewall.pm verify_rule:
 * `$rule_env_iface_lookup` allows iface for ct, vm, cluster and host but not in a
 * security group ("parameter -i not allowed for this rule type"); for vm and ct the
 * value must match `net\d+`, the guest's NIC key.
 */
export function ifaceProblem(scope: RuleScope, iface: string): string | undefined {
  if (scope === "group") return `PVE refuses iface in a security group's rules ("parameter -i not allowed for this rule type")`;
  if ((scope === "vm" || scope === "ct") && !/^net\d+$/.test(iface)) return `iface '${iface}': a guest rule names the guest's NIC (net0, net1, …), not a host interface; PVE refuses anything else`;
  return undefined;
}

// --- Evaluation ---------------------------------------------------------------

/** A connection to evaluate: from every address of `source` (an IP or CIDR) to port `port` of `dest`. */
export interface Probe {
  direction: "in" | "out";
  /** TCP unless said. */
  proto?: "tcp" | "udp";
  port: number;
  source: string;
  /** undefined when unknown (a DHCP guest): a rule restricting dest is then undecidable. */
  dest: string | undefined;
  /** The interface the chain sees the packet on: a host interface for a node, the NIC key (net0) for a guest. */
  iface: string;
}

/** One rule of a chain and the config path it comes from. */
export interface ChainEntry {
  rule: FirewallRule;
  path: string;
  /** The security group it belongs to, when it came from one. */
  group?: string;
}

/**
 * What decided: a rule (`partly`: it matches only part of the probe's source or ports, so a
 * DROP/REJECT blocks that part); a rule naming an alias or ipset, which Phoenix cannot resolve
 * offline; or nothing matched and the chain's policy applies.
 */
export type Outcome = { by: "rule"; entry: ChainEntry; partly: boolean } | { by: "unknown"; entry: ChainEntry } | { by: "policy" };

type Match = "all" | "some" | "none" | "unknown";

/** All of several conditions: none beats unknown (a rule for another port never matters), unknown beats some. */
function allOf(parts: Match[]): Match {
  for (const m of ["none", "unknown", "some"] as const) if (parts.includes(m)) return m;
  return "all";
}

function anyOf(parts: Match[]): Match {
  for (const m of ["all", "unknown", "some"] as const) if (parts.includes(m)) return m;
  return "none";
}

function portIn(spec: string, port: number): boolean {
  return spec.split(",").some((part) => {
    const [lo, hi] = part.split(":").map(Number) as [number, number | undefined];
    return port >= lo && port <= (hi ?? lo);
  });
}

const PROTO_NUMBER = { tcp: "6", udp: "17" } as const;

/** Protocol and ports for `want` (tcp or udp) to `port`; no proto matches every protocol (no -p). A source-port restriction matches only some connections. */
function portsMatch(proto: string | number | undefined, dport: string | undefined, sport: string | undefined, port: number, want: "tcp" | "udp" = "tcp"): Match {
  if (proto !== undefined && String(proto) !== want && String(proto) !== PROTO_NUMBER[want]) return "none";
  if (dport !== undefined && !portIn(dport, port)) return "none";
  return sport === undefined ? "all" : "some";
}

function macroMatch(name: string, port: number, want: "tcp" | "udp"): Match {
  const canonical = canonicalMacro(name);
  if (canonical === undefined) return "unknown";
  return anyOf(PVE_MACROS[canonical]!.map((m) => portsMatch(m.proto, m.dport, m.sport, port, want)));
}

/** [first, last] address of an IP or CIDR. */
function interval(text: string): [number, number] | undefined {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) return [ipToInt(text), ipToInt(text)];
  const cidr = parseCidr(text);
  if (!cidr) return undefined;
  const lo = ipToInt(subnetOf(cidr).split("/")[0]!);
  return [lo, lo + 2 ** (32 - cidr.prefix) - 1];
}

/**
 * How much of `probe` (an IP or CIDR) an address list covers. The list is PVE's: IPs,
 * CIDRs, ranges a-b, comma-separated, a leading `!` negating the whole list; an alias or
 * ipset name is unknown offline.
 */
function addressMatch(spec: string, probe: string | undefined): Match {
  const negated = spec.startsWith("!");
  const items = (negated ? spec.slice(1) : spec).split(",");
  const ranges: Array<[number, number]> = [];
  for (const item of items) {
    const range = item.includes("-") && /^[\d.]+-[\d.]+$/.test(item) ? ([ipToInt(item.split("-")[0]!), ipToInt(item.split("-")[1]!)] as [number, number]) : interval(item);
    if (!range) return "unknown";
    ranges.push(range);
  }
  const target = probe === undefined ? undefined : interval(probe);
  if (!target) return "unknown";
  let covered = 0;
  let from = target[0];
  for (const [lo, hi] of ranges.sort((a, b) => a[0] - b[0])) {
    const start = Math.max(lo, from);
    const end = Math.min(hi, target[1]);
    if (end >= start) {
      covered += end - start + 1;
      from = end + 1;
    }
  }
  const match: Match = covered === 0 ? "none" : covered === target[1] - target[0] + 1 ? "all" : "some";
  if (!negated || match === "some") return match;
  return match === "all" ? "none" : "all";
}

function ruleMatch(rule: FirewallRule, probe: Probe): Match {
  if (rule.type !== probe.direction || !rule.enabled) return "none";
  if (rule.iface !== undefined && rule.iface !== probe.iface) return "none";
  return allOf([
    rule.macro !== undefined ? macroMatch(rule.macro, probe.port, probe.proto ?? "tcp") : portsMatch(rule.proto, rule.dport, rule.sport, probe.port, probe.proto ?? "tcp"),
    rule.source === undefined ? "all" : addressMatch(rule.source, probe.source),
    rule.dest === undefined ? "all" : addressMatch(rule.dest, probe.dest),
  ]);
}

/**
 * The first rule of the chain that decides the probe, as iptables walks a chain. An ACCEPT
 * covering only part of the probe's source lets the rest go on to the next rule.
 */
export function firstMatch(chain: readonly ChainEntry[], probe: Probe): Outcome {
  for (const entry of chain) {
    const match = ruleMatch(entry.rule, probe);
    if (match === "unknown") return { by: "unknown", entry };
    if (match === "all") return { by: "rule", entry, partly: false };
    if (match === "some" && entry.rule.action !== "ACCEPT") return { by: "rule", entry, partly: true };
  }
  return { by: "policy" };
}

/** Whether any part of a probe can pass a chain, and what lets it (a rule, or the policy when `entry` is absent). */
export type Passage = { accepted: boolean; entry?: ChainEntry; unknown?: ChainEntry };

/**
 * The question isolation asks, over the same walk as firstMatch: can any packet of the probe pass?
 * An ACCEPT covering part of the probe lets that part through; a DROP/REJECT covering part of it
 * lets the rest go on to the next rule; the policy takes what no rule decided.
 */
export function anyAccepted(chain: readonly ChainEntry[], probe: Probe, policy: string): Passage {
  for (const entry of chain) {
    const match = ruleMatch(entry.rule, probe);
    if (match === "unknown") return { accepted: true, unknown: entry };
    if (match === "all") return { accepted: entry.rule.action === "ACCEPT", entry };
    if (match === "some" && entry.rule.action === "ACCEPT") return { accepted: true, entry };
  }
  return { accepted: policy === "ACCEPT" };
}

/**
 * Ports at which a chain's decision can change, per protocol: 1, 65535 and both edges of every
 * port range its rules and their macros name. Between two of them every rule matches alike, so
 * probing these (and one beyond each edge) covers every port.
 */
export function boundaryPorts(chains: ReadonlyArray<readonly ChainEntry[]>): number[] {
  const ports = new Set([1, 65535]);
  const add = (spec: string | undefined) => {
    for (const part of (spec ?? "").split(",").filter((p) => /^\d+(:\d+)?$/.test(p))) {
      const [lo, hi] = part.split(":").map(Number) as [number, number | undefined];
      for (const p of [lo - 1, lo, hi ?? lo, (hi ?? lo) + 1]) if (p >= 1 && p <= 65535) ports.add(p);
    }
  };
  for (const chain of chains) {
    for (const { rule } of chain) {
      add(rule.dport);
      const macro = rule.macro === undefined ? undefined : canonicalMacro(rule.macro);
      for (const m of macro === undefined ? [] : PVE_MACROS[macro]!) add(m.dport);
    }
  }
  return [...ports].sort((a, b) => a - b);
}

// --- The chains Phoenix deploys -------------------------------------------------

/**
 * Phoenix's two security groups on every node (validation reserves their names). The
 * node's own rule list is only [group phoenix-admin, the NFS clients' ACCEPTs, group
 * phoenix-node]; why, in components/firewall.ts.
 */
export const ADMIN_GROUP = "phoenix-admin";
export const NODE_GROUP = "phoenix-node";

/**
 * One entry of a deployed rule list: a security group reference, or a rule. `ahead`: a rule
 * Phoenix derives that must stand before the guest's security groups (lokiEgressRules); every
 * other derived rule follows the user's.
 */
export type ListEntry = { group: string } | { rule: FirewallRule; path: string; ahead?: true };

const accept = (port: string, source: string, comment: string): FirewallRule => ({ type: "in", action: "ACCEPT", proto: "tcp", dport: port, source, comment, enabled: true });

/** The rules of group phoenix-admin: SSH and the web UI from each admin network. */
export function adminRules(adminNetworks: readonly string[]): FirewallRule[] {
  return adminNetworks.flatMap((net) => [accept("22", net, "phoenix: SSH from admin network"), accept("8006", net, "phoenix: web UI from admin network")]);
}

/**
 * NFS from each export client to the node that exports, NFSv4 only: TCP 2049, where
 * rpc.nfsd(8) listens by default. NFSv3 would also need rpcbind (111) and mountd's random
 * port, which stay closed (unverified here: that v4 needs neither was not read from
 * nfs-utils' source). Clients on DHCP have no address to name; validation refuses them.
 */
export function nfsRules(config: StackConfig): ListEntry[] {
  return config.host.nfsExports.flatMap((e, i) =>
    e.clients.flatMap((vmid, j) => {
      const g = config.guests.find((x) => x.vmid === vmid);
      const ip = g && guestAddress(g);
      return ip ? [{ rule: accept("2049", ip, `phoenix: NFSv4 of /${e.volume} to VM ${vmid}`), path: `host.nfsExports[${i}].clients[${j}]` }] : [];
    }),
  );
}

/**
 * The ACCEPTs that let the ops guest's Prometheus reach the exporters on one machine (the host
 * node or a guest), one per port, derived from the same list the scrape configuration is built
 * from (stacks/scrape.ts), so the user declares none of them. None without an ops guest with a
 * static address, and none on the ops guest itself (it scrapes itself on its loopback, which no
 * PVE chain sees).
 */
export function scrapeRules(config: StackConfig, on: Guest | "host"): ListEntry[] {
  const ops = opsGuest(config);
  const source = ops && guestAddress(ops);
  if (!ops || !source || (on !== "host" && on.vmid === ops.vmid)) return [];
  const same = (p: ScrapePoint) => (p.on === "host" ? on === "host" : on !== "host" && p.on.vmid === on.vmid);
  const jobsByPort = new Map<number, string[]>();
  for (const p of scrapePoints(config).filter(same)) jobsByPort.set(p.port, [...new Set([...(jobsByPort.get(p.port) ?? []), p.job])]);
  const where = on === "host" ? "host" : `guests[${config.guests.indexOf(on)}]`;
  return [...jobsByPort].map(([port, jobs]) => ({
    rule: accept(String(port), source, `phoenix: ${jobs.join(", ")} metrics, scraped by the ops guest`),
    path: `${where} (derived: scraped by the ops guest, guests[${config.guests.indexOf(ops)}])`,
  }));
}

/**
 * The ACCEPTs on the ops guest for the journals Alloy pushes to its Loki, one per machine that
 * ships them (stacks/scrape.ts logShippers: the host and every guest with Phoenix's agents), so
 * the user declares none of them. None on any other guest, and none without an ops guest with a
 * static address.
 */
export function lokiPushRules(config: StackConfig, on: Guest | "host"): ListEntry[] {
  const ops = opsGuest(config);
  if (ops?.role?.type !== "observability" || on === "host" || on.vmid !== ops.vmid || guestAddress(ops) === undefined) return [];
  const port = String(ops.role.loki.port);
  const opsAt = `guests[${config.guests.indexOf(ops)}]`;
  return logShippers(config).map(({ on: from, address }) => ({
    rule: accept(port, address, `phoenix: ${from === "host" ? "the host's" : `guest ${from.vmid}'s`} journal to Loki (Alloy)`),
    path: `${opsAt} (derived: Loki takes the journal of ${from === "host" ? "host.address" : `guests[${config.guests.indexOf(from)}]`})`,
  }));
}

/**
 * The OUT ACCEPT a guest that ships its journal (stacks/scrape.ts logShippers) needs when its own
 * chain would keep the push from leaving: a security group that drops everything to the box's
 * network, an OUT rule or policy that drops it. (An isolated group's members ship nothing: Loki's
 * port also serves its query and delete API, stacks/scrape.ts shipsJournal.) Phoenix installs
 * Alloy there all the same, so without it the journal never reaches Loki and Alloy retries for
 * ever. Narrow: tcp, Loki's port, from the guest's own address to the ops guest's alone, so it
 * opens no path to any other guest (the isolation proof, stacks/isolation.ts, walks the chain with
 * it). None when the chain already lets the push out, so other guests' rule lists stay as declared.
 *
 * It stands first in the guest's rule list (`ahead`): pve-firewall 6.0.4 src/PVE/Firewall.pm
 * ruleset_generate_vm_rules walks the guest's rules in order and compiles a group reference in
 * place (ruleset_add_group_rule: jump to GROUP-<name>-OUT, whose DROP drops at once), so a rule
 * after the group is never reached for what the group drops. The replies need no rule:
 * compile_iptables_filter accepts RELATED,ESTABLISHED in PVEFW-FORWARD before any guest chain.
 */
export function lokiEgressRules(config: StackConfig, on: Guest | "host", after: readonly ListEntry[] = []): ListEntry[] {
  const ops = opsGuest(config);
  const opsIp = ops && guestAddress(ops);
  if (ops?.role?.type !== "observability" || !opsIp || on === "host") return [];
  const shipper = logShippers(config).find((s) => s.on !== "host" && s.on.vmid === on.vmid);
  if (!shipper) return [];
  const port = ops.role.loki.port;
  const at = `guests[${config.guests.indexOf(on)}]`;
  const outcome = firstMatch(flatten(config, guestRuleList(on, at, after)), { direction: "out", port, source: shipper.address, dest: opsIp, iface: "net0" });
  const leaves = outcome.by === "rule" ? outcome.entry.rule.action === "ACCEPT" : outcome.by === "policy" && on.firewall.policyOut === "ACCEPT";
  if (leaves) return [];
  const rule: FirewallRule = { type: "out", action: "ACCEPT", proto: "tcp", dport: String(port), source: shipper.address, dest: opsIp, comment: "phoenix: this guest's journal to Loki (Alloy)", enabled: true };
  return [{ rule, path: `${at} (derived: its journal to Loki on the ops guest, guests[${config.guests.indexOf(ops)}])`, ahead: true }];
}

/**
 * The ACCEPTs Step-CA's ACME validation needs where the declared chain would drop it: on a guest
 * that answers a challenge (stacks/routing.ts acmeNames: the gateway's names over http-01 on 80,
 * Traefik's over tls-alpn-01 on 443, a Portainer server's own name on 80), IN from the CA's
 * address; on the CA, OUT to that guest. Step-CA connects from its own address to the name as its
 * /etc/hosts resolves it (smallstep/certificates v0.28.4 acme/challenge.go http01Validate,
 * tlsalpn01Validate). Without them the certificate is never issued and every `up` fails at the
 * install's finish. Narrow (one port, one address each way) and only where the chain would drop
 * the connection, so working rule lists stay as declared. After the user's own rules, so a DROP the
 * user declares still wins, and validation then says so (stacks/validate.ts checkAcmeFirewall).
 */
export function acmeRules(config: StackConfig, on: Guest | "host", before: readonly ListEntry[] = []): ListEntry[] {
  if (on === "host" || !on.firewall.enabled) return [];
  const at = `guests[${config.guests.indexOf(on)}]`;
  const drops = (extra: readonly ListEntry[], probe: Probe, policy: "ACCEPT" | "DROP" | "REJECT") => {
    const o = firstMatch(flatten(config, guestRuleList(on, at, [...before, ...extra])), probe);
    return !(o.by === "rule" ? o.entry.rule.action === "ACCEPT" : policy === "ACCEPT");
  };
  const out: ListEntry[] = [];
  for (const c of acmeConnections(config)) {
    if (on.vmid === c.guest.vmid && drops(out, c.probe("in"), on.firewall.policyIn)) {
      out.push({ rule: accept(String(c.port), c.caIp, `phoenix: Step-CA validates this guest's names (${c.challenge})`), path: `${at} (derived: Step-CA's ${c.challenge} validation from guests[${config.guests.indexOf(c.ca)}])` });
    }
    if (on.vmid === c.ca.vmid && drops(out, c.probe("out"), on.firewall.policyOut)) {
      const rule: FirewallRule = { type: "out", action: "ACCEPT", proto: "tcp", dport: String(c.port), source: c.caIp, dest: c.ip, comment: `phoenix: ${c.challenge} validation of guest ${c.guest.vmid}'s names`, enabled: true };
      out.push({ rule, path: `${at} (derived: Step-CA validates the names of guests[${config.guests.indexOf(c.guest)}])` });
    }
  }
  return out;
}

/** One connection Step-CA makes to validate a challenge: from the CA to the guest that answers it. */
export interface AcmeConnection {
  /** The first name validated over this connection (others of the same guest and port share it). */
  name: string;
  challenge: AcmeName["challenge"];
  port: number;
  ca: Guest;
  caIp: string;
  guest: Guest;
  ip: string;
  /** The connection as the CA's OUT chain or the guest's IN chain sees it. */
  probe(direction: "in" | "out"): Probe;
}

/**
 * The connections Step-CA's ACME validation makes (stacks/routing.ts acmeNames), one per guest and
 * port: http-01 on 80, tls-alpn-01 on 443. None to the CA itself (it reaches its own names on its
 * loopback, which no PVE chain sees), none without a CA with a static address, and none while a
 * core guest has no static address (validation reports that). The one list acmeRules derives
 * rules from and validation (checkAcmeFirewall) checks the chains against.
 */
export function acmeConnections(config: StackConfig): AcmeConnection[] {
  const ca = config.guests.find((g) => g.role?.type === "step-ca");
  const caIp = ca && guestAddress(ca);
  if (!ca || !caIp) return [];
  let names: AcmeName[];
  try {
    names = acmeNames(config);
  } catch {
    return [];
  }
  const seen = new Set<string>();
  return names.flatMap((n) => {
    const port = n.challenge === "http-01" ? 80 : 443;
    const guest = config.guests.find((g) => g.vmid === n.guest);
    if (!guest || guest === ca || seen.has(`${n.guest}/${port}`)) return [];
    seen.add(`${n.guest}/${port}`);
    return [{ name: n.name, challenge: n.challenge, port, ca, caIp, guest, ip: n.ip, probe: (direction: "in" | "out"): Probe => ({ direction, port, source: caIp, dest: n.ip, iface: "net0" }) }];
  });
}

/**
 * Every rule Phoenix derives for a machine: the ops guest's scrape, on the ops guest the journals
 * pushed to Loki, Step-CA's ACME validation where it would be dropped (all after the user's own
 * rules), and on a shipper whose chain would drop its push, the OUT ACCEPT to Loki (ahead of its
 * groups: lokiEgressRules).
 */
export function derivedRules(config: StackConfig, on: Guest | "host"): ListEntry[] {
  const scrapeAndLogs = [...scrapeRules(config, on), ...lokiPushRules(config, on)];
  const after = [...scrapeAndLogs, ...acmeRules(config, on, scrapeAndLogs)];
  return [...lokiEgressRules(config, on, after), ...after];
}

/** The node's own rule list as Phoenix deploys it; the NFS ACCEPTs and the ops guest's scrape only on the node Phoenix prepares. */
export function nodeRuleList(config: StackConfig, node: string): ListEntry[] {
  const hostNode = config.host.node ?? config.proxmox.nodes[0]?.name;
  return [{ group: ADMIN_GROUP }, ...(node === hostNode ? [...nfsRules(config), ...derivedRules(config, "host")] : []), { group: NODE_GROUP }];
}

/**
 * A guest's rule list as Phoenix deploys it: its security groups first, then its own rules, then
 * the rules Phoenix derives for it (`derived`: derivedRules), after the user's so that a DROP the
 * user declares still wins; only a derived rule marked `ahead` (lokiEgressRules) stands before
 * the groups. `at`: the guest's config path.
 */
export function guestRuleList(guest: Pick<Guest, "firewall">, at = "guest", derived: readonly ListEntry[] = []): ListEntry[] {
  const ahead = (e: ListEntry) => "rule" in e && e.ahead === true;
  return [
    ...derived.filter(ahead),
    ...guest.firewall.groups.map((group) => ({ group })),
    ...guest.firewall.rules.map((rule, j) => ({ rule, path: `${at}.firewall.rules[${j}]` })),
    ...derived.filter((e) => !ahead(e)),
  ];
}

/** The rules of a security group, Phoenix's or the configuration's, each with its config path. */
function groupRules(config: StackConfig, name: string): ChainEntry[] {
  if (name === ADMIN_GROUP) return adminRules(config.host.adminNetworks).map((rule, k) => ({ rule, path: `host.adminNetworks[${k >> 1}]`, group: name }));
  if (name === NODE_GROUP) return config.firewall.node.rules.map((rule, j) => ({ rule, path: `firewall.node.rules[${j}]`, group: name }));
  const k = config.firewall.groups.findIndex((g) => g.name === name);
  return k < 0 ? [] : config.firewall.groups[k]!.rules.map((rule, j) => ({ rule, path: `firewall.groups[${k}].rules[${j}]`, group: name }));
}

/**
 * A rule list with each group's rules in place of its reference. Firewall.pm
 * ruleset_add_group_rule jumps to GROUP-<name>-<dir> and then accepts on the accept mark;
 * generate_group_rules compiles the group's ACCEPT as "set the mark and return" and
 * DROP/REJECT as themselves. So the group's first matching rule decides, and a group with
 * no match falls through to the next entry, exactly as if its rules stood inline.
 */
export function flatten(config: StackConfig, list: readonly ListEntry[]): ChainEntry[] {
  return list.flatMap((e) => ("group" in e ? groupRules(config, e.group) : [{ rule: e.rule, path: e.path }]));
}

/**
 * The inbound chain of the node that runs Phoenix's host (PVEFW-HOST-IN) in the order
 * Firewall.pm enable_host_firewall compiles it: the node's own rules, then the datacenter's
 * ("add host rules first, so that cluster wide rules can be overwritten"), then PVE's
 * built-in ACCEPTs from its `management` ipset for 8006, 5900:5999, 3128, 22 and
 * 60000:60050. That ipset always holds the node's local network (the route holding the
 * node's address, local_network()), here host.address's subnet. firewall.policyIn follows.
 */
export function hostNodeChain(config: StackConfig): ChainEntry[] {
  const hostNode = config.host.node ?? config.proxmox.nodes[0]?.name ?? "";
  const local = parseCidr(config.host.address);
  const management: ChainEntry[] = local
    ? [{ rule: accept("8006,5900:5999,3128,22,60000:60050", subnetOf(local), "PVE: management ipset"), path: "host.address", group: "PVE's management ipset (the node's local network)" }]
    : [];
  return [...flatten(config, nodeRuleList(config, hostNode)), ...config.firewall.rules.map((rule, j) => ({ rule, path: `firewall.rules[${j}]` })), ...management];
}

/** A guest's chain (both directions: the probe picks). Datacenter rules never apply to guests: enable_host_firewall alone compiles them. */
export function guestChain(config: StackConfig, guest: Guest): ChainEntry[] {
  return flatten(config, guestRuleList(guest, `guests[${config.guests.indexOf(guest)}]`, derivedRules(config, guest)));
}
