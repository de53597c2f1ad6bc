/**
 * The firewall endpoints: options, rules, IP sets and aliases of the cluster, a node and each
 * guest, and the cluster's security groups. Behaviour read from pve-firewall 6.0.4 (commit
 * aadddcf, the version PVE 9.1 ships), cited below as `pve-firewall@6.0.4 <file>`.
 */
import * as crypto from "node:crypto";
import { checkDigest, deleteList, flag, int, req, str, typed, type Handler, type HandlerCtx } from "./core";
import { digestOf, type FirewallRule, type FirewallScope, type SimState } from "./state";
import { die, paramError } from "./tasks";

/** Where a rule list lives; decides which types and keys its rules may have (`$rule_env`). */
type RuleEnv = "cluster" | "host" | "vm" | "ct" | "group";

/** pve-firewall@6.0.4 src/PVE/Firewall.pm `$pve_fw_macros` and `$pve_ipv6fw_macros`: the macro names, canonical spelling. */
const MACROS = [
  "Amanda", "Auth", "BGP", "BitTorrent", "BitTorrent32", "CVS", "Ceph", "Citrix", "DAAP", "DCC", "DHCPfwd", "DHCPv6", "DNS",
  "Distcc", "FTP", "Finger", "GNUnet", "GRE", "Git", "HKP", "HTTP", "HTTPS", "ICPV2", "ICQ", "IMAP", "IMAPS", "IPIP", "IPsec",
  "IPsecah", "IPsecnat", "IRC", "Jetdirect", "L2TP", "LDAP", "LDAPS", "MDNS", "MSNP", "MSSQL", "Mail", "Munin", "MySQL", "NNTP",
  "NNTPS", "NTP", "NeighborDiscovery", "OSPF", "OpenVPN", "PCA", "PMG", "POP3", "POP3S", "PPtP", "Ping", "PostgreSQL", "Printer",
  "RDP", "RIP", "RNDC", "Razor", "Rdate", "Rsync", "SANE", "SMB", "SMBswat", "SMTP", "SMTPS", "SNMP", "SPAMD", "SPICEproxy",
  "SSH", "SVN", "SixXS", "Squid", "Submission", "Syslog", "TFTP", "Telnet", "Telnets", "Time", "Trcrt", "VNC", "VNCL", "Web",
  "Webcache", "Webmin", "Whois",
];
/** pve-firewall@6.0.4 src/PVE/Firewall.pm init_firewall_macros: `$pve_fw_preferred_macro_names`, lower-case name → canonical. */
const PREFERRED_MACRO = new Map(MACROS.map((m) => [m.toLowerCase(), m]));

/** pve-firewall@6.0.4 src/PVE/Firewall.pm `$rule_properties`: the keys copy_rule_data takes from a request. */
const RULE_KEYS = ["type", "action", "macro", "iface", "source", "dest", "proto", "enable", "log", "sport", "dport", "comment", "icmp-type"];
/** Firewall.pm `$PROTOCOLS_WITH_PORTS`. */
const PROTOCOLS_WITH_PORTS = new Set(["udp", "17", "udplite", "136", "tcp", "6", "dccp", "33", "sctp", "132"]);
/** Firewall.pm `$rule_env_iface_lookup` and `$rule_env_direction_lookup`. */
const ALLOW_IFACE: Record<RuleEnv, boolean> = { ct: true, vm: true, group: false, cluster: true, host: true };
const VALID_TYPES: Record<RuleEnv, string[]> = {
  ct: ["in", "out", "group"],
  vm: ["in", "out", "group"],
  group: ["in", "out", "forward"],
  cluster: ["in", "out", "forward", "group"],
  host: ["in", "out", "forward", "group"],
};
const NAME = /^(guest\/|dc\/)?([A-Za-z][A-Za-z0-9\-_]+)$/;

/**
 * pve-firewall@6.0.4 src/PVE/Firewall.pm copy_list_with_digest: SHA1 over every entry's
 * sorted `key:value\n` lines; the digest a rule list, a group list and each of their entries carry.
 */
export function listDigest(list: Array<Record<string, string>>): string {
  const sha = crypto.createHash("sha1");
  for (const entry of list) for (const k of Object.keys(entry).sort()) sha.update(`${k}:${entry[k]}\n`);
  return sha.digest("hex");
}

/** The ipsets and aliases a rule may name: the scope's own and, except in cluster-wide lists, the cluster's. */
interface RuleContext {
  env: RuleEnv;
  own: FirewallScope;
  cluster?: FirewallScope;
}

/**
 * pve-firewall@6.0.4 src/PVE/Firewall.pm verify_rule, as the API calls it: the first problem
 * is raised as a parameter error (raise_param_exc), and a macro's name becomes its canonical
 * spelling. Not modelled: the macro expansion check (apply_macro) and address parsing beyond
 * the schema's format check.
 */
function verifyRule(rule: FirewallRule, ctx: RuleContext): void {
  const fail = (key: string, msg: string): never => {
    throw paramError({ [key]: msg });
  };
  const { type, action } = rule;
  if (!type) fail("type", "missing property");
  if (!action) fail("action", "missing property");
  if (!VALID_TYPES[ctx.env].includes(type as string)) fail("type", `invalid rule type '${type}' for rule_env '${ctx.env}'`);
  if (type === "in" || type === "out" || type === "forward") {
    if (type === "forward" && action === "REJECT") fail("action", "cannot define REJECT rules on forward chain");
    if (!/^(ACCEPT|DROP|REJECT)$/.test(action as string)) fail("action", `unknown action '${action}'`);
  }
  if (rule.iface) {
    if (!ALLOW_IFACE[ctx.env]) fail("type", "parameter -i not allowed for this rule type");
    if ((ctx.env === "vm" || ctx.env === "ct") && !/^net(\d+)$/.test(rule.iface)) fail("iface", "value does not match the regex pattern 'net\\d+'");
  }
  if (rule.macro) {
    const preferred = PREFERRED_MACRO.get(rule.macro.toLowerCase());
    if (!preferred) fail("macro", `unknown macro '${rule.macro}'`);
    rule.macro = preferred as string;
  }
  const icmp = rule.proto === "icmp" || rule.proto === "icmpv6" || rule.proto === "ipv6-icmp";
  for (const port of ["dport", "sport"] as const) {
    if (!rule[port]) continue;
    if (!rule.proto) fail("proto", `missing property - '${port}' requires this property`);
    if (!PROTOCOLS_WITH_PORTS.has(rule.proto as string) && !(port === "dport" && icmp)) fail(port, `protocol '${rule.proto}' does not support ports`);
  }
  for (const key of ["source", "dest"] as const) {
    const value = rule[key];
    if (!value) continue;
    if (value.startsWith("+")) {
      const m = /^\+(guest\/|dc\/|sdn\/)?([A-Za-z][A-Za-z0-9\-_]+)$/.exec(value);
      if (!m) fail(key, `invalid ipset name '${value}'`);
      const name = (m as RegExpExecArray)[2] as string;
      if (!ctx.own.ipsets.has(name) && !ctx.cluster?.ipsets.has(name)) fail(key, `no such ipset '${name}'`);
    } else {
      const m = NAME.exec(value);
      if (m) {
        const alias = (m[2] as string).toLowerCase();
        if (!ctx.own.aliases.has(alias) && !ctx.cluster?.aliases.has(alias)) fail(key, `no such alias '${value}'`);
      }
    }
  }
}

/**
 * A rule as the next request sees it, after pve-firewall wrote it to its `.fw` file and parsed
 * it back (Firewall.pm `$format_rules` and parse_fw_rule): `enable` is 0 only when written as
 * disabled, else 1; a group rule keeps only its interface and comment; an interface only where
 * the scope allows one; a blank comment is dropped.
 */
function persisted(rule: FirewallRule, env: RuleEnv): FirewallRule {
  const out: FirewallRule = { type: rule.type as string, action: rule.action as string };
  out.enable = rule.enable !== undefined && Number(rule.enable) === 0 ? "0" : "1";
  if (ALLOW_IFACE[env] && rule.iface) out.iface = rule.iface;
  if (rule.type !== "group") {
    for (const k of ["macro", "source", "dest", "proto", "dport", "sport", "log", "icmp-type"]) {
      if (rule[k]) out[k] = rule[k] as string;
    }
  }
  if (rule.comment && !/^\s*$/.test(rule.comment)) out.comment = rule.comment;
  return out;
}

/** Firewall.pm copy_rule_data: each rule key the request carries; an empty value or `-` removes the key. */
function copyRuleData(rule: FirewallRule, ctx: HandlerCtx): FirewallRule {
  for (const k of RULE_KEYS) {
    const v = str(ctx, k);
    if (v === undefined) continue;
    if (v === "" || v === "-") delete rule[k];
    else rule[k] = v;
  }
  return rule;
}

interface RuleList {
  rules: FirewallRule[];
  ctx: RuleContext;
  save(rules: FirewallRule[]): void;
}

/** pve-firewall@6.0.4 src/PVE/API2/Firewall/Rules.pm RulesBase: list, get, create, update, delete. */
function rulesApi(out: Record<string, Handler>, base: string, load: (ctx: HandlerCtx) => RuleList): void {
  const withDigest = (rules: FirewallRule[]) => {
    const digest = listDigest(rules);
    return rules.map((r, pos) => ({ ...r, pos, digest, ...(r.enable !== undefined ? { enable: Number(r.enable) } : {}) }));
  };
  const position = (ctx: HandlerCtx, rules: readonly unknown[]): number => {
    const pos = Number(req(ctx, "pos"));
    if (pos >= rules.length) throw die(`no rule at position ${pos}`);
    return pos;
  };
  out[`GET ${base}`] = (ctx) => withDigest(load(ctx).rules);
  out[`GET ${base}/{pos}`] = (ctx) => {
    const list = withDigest(load(ctx).rules);
    return list[position(ctx, list)];
  };
  // create_rule: no digest check; the rule is verified, `enable` defaults to 0, and it goes on
  // top of the list (`unshift @$rules`) whatever `pos` says.
  out[`POST ${base}`] = (ctx) => {
    const list = load(ctx);
    const rule = copyRuleData({}, ctx);
    verifyRule(rule, list.ctx);
    if (str(ctx, "enable") === undefined) rule.enable = "0";
    list.save([persisted(rule, list.ctx.env), ...list.rules]);
    return null;
  };
  // update_rule: digest checked first; `moveto` (when not the rule's own position) reorders and
  // ignores the other arguments, else the rule's keys are set, deleted and verified again.
  out[`PUT ${base}/{pos}`] = (ctx) => {
    const list = load(ctx);
    checkDigest(ctx, listDigest(list.rules));
    const pos = position(ctx, list.rules);
    const rule = list.rules[pos] as FirewallRule;
    const moveto = int(ctx, "moveto");
    if (moveto !== undefined && moveto !== pos) {
      // Rules.pm: the rule lands before the one that was at `moveto`, or last when `moveto` is past the end.
      const moved: FirewallRule[] = [];
      list.rules.forEach((r, i) => {
        if (i === pos) return;
        if (i === moveto) moved.push(rule);
        moved.push(r);
      });
      if (moveto >= list.rules.length) moved.push(rule);
      list.save(moved);
      return null;
    }
    const updated = copyRuleData({ ...rule }, ctx);
    for (const k of deleteList(ctx)) {
      // Firewall.pm delete_rule_properties
      if (!RULE_KEYS.includes(k) && k !== "pos" && k !== "digest") throw paramError({ delete: `no such property ('${k}')` });
      if (k === "type" || k === "action") throw paramError({ delete: `unable to delete required property '${k}'` });
      delete updated[k];
    }
    verifyRule(updated, list.ctx);
    list.save(list.rules.map((r, i) => (i === pos ? persisted(updated, list.ctx.env) : r)));
    return null;
  };
  out[`DELETE ${base}/{pos}`] = (ctx) => {
    const list = load(ctx);
    checkDigest(ctx, listDigest(list.rules));
    const pos = position(ctx, list.rules);
    list.save(list.rules.filter((_, i) => i !== pos));
    return null;
  };
}

function nodeOf(ctx: HandlerCtx): string {
  const node = req(ctx, "node");
  ctx.sim.state.node(node);
  return node;
}

/** pve-firewall@6.0.4 src/PVE/API2/Firewall/Groups.pm `$rename_fw_rules`: group rules naming the old group name the new one. */
function renameGroupRefs(state: SimState, from: string, to: string): void {
  const scopes = [state.firewall, ...[...state.nodes.values()].map((n) => n.firewall), ...state.guestFirewall.values()];
  for (const scope of scopes) {
    for (const rule of scope.rules) if (rule.type === "group" && rule.action === from) rule.action = to;
  }
}

function groupHandlers(out: Record<string, Handler>): void {
  const groupList = (state: SimState) =>
    [...state.groups.keys()].sort().map((group) => {
      const comment = state.groups.get(group)?.comment;
      return { group, ...(comment ? { comment } : {}) };
    });
  // Groups.pm list_security_groups: sorted by name, the comment only when set, one digest for the list.
  out["GET /cluster/firewall/groups"] = (ctx) => {
    const list = groupList(ctx.sim.state);
    const digest = listDigest(list);
    return list.map((g) => ({ ...g, digest }));
  };
  // Groups.pm create_security_group: `rename` names the existing group and `group` its new
  // name; a rename rewrites every rule that inserts the group. Name clashes are 400s.
  out["POST /cluster/firewall/groups"] = (ctx) => {
    const groups = ctx.sim.state.groups;
    const name = req(ctx, "group");
    const rename = str(ctx, "rename");
    const comment = str(ctx, "comment");
    if (rename) {
      checkDigest(ctx, listDigest(groupList(ctx.sim.state)));
      const old = groups.get(rename);
      if (!old) throw paramError({ group: `Security group '${rename}' does not exist` });
      if (groups.has(name) && name !== rename) throw paramError({ group: `Security group '${name}' does already exist` });
      if (comment !== undefined) old.comment = comment;
      if (name === rename) return null;
      groups.set(name, old);
      renameGroupRefs(ctx.sim.state, rename, name);
      groups.delete(rename);
      return null;
    }
    if (groups.has(name)) throw paramError({ group: `Security group '${name}' already exists` });
    groups.set(name, { rules: [], ...(comment !== undefined ? { comment } : {}) });
    return null;
  };
  const group = (ctx: HandlerCtx) => {
    const g = ctx.sim.state.groups.get(req(ctx, "group"));
    // Rules.pm GroupRules load_config
    if (!g) throw die(`no such security group '${req(ctx, "group")}'`);
    return g;
  };
  out["DELETE /cluster/firewall/groups/{group}"] = (ctx) => {
    const g = group(ctx);
    if (g.rules.length > 0) throw die(`Security group '${req(ctx, "group")}' is not empty`);
    ctx.sim.state.groups.delete(req(ctx, "group"));
    return null;
  };
  rulesApi(out, "/cluster/firewall/groups/{group}", (ctx) => {
    const g = group(ctx);
    return { rules: g.rules, ctx: { env: "group", own: ctx.sim.state.firewall }, save: (rules) => void (g.rules = rules) };
  });
}

/** Handlers of the firewall endpoints, keyed by `METHOD template`. */
export function firewallHandlers(): Record<string, Handler> {
  const out: Record<string, Handler> = {};
  const scopes: Array<[string, RuleEnv, (ctx: HandlerCtx) => FirewallScope]> = [
    ["/cluster/firewall", "cluster", (ctx) => ctx.sim.state.firewall],
    ["/nodes/{node}/firewall", "host", (ctx) => ctx.sim.state.node(nodeOf(ctx)).firewall],
    ["/nodes/{node}/lxc/{vmid}/firewall", "ct", (ctx) => ctx.sim.state.guestFw(ctx.sim.state.guest(nodeOf(ctx), "lxc", Number(req(ctx, "vmid"))).vmid)],
    ["/nodes/{node}/qemu/{vmid}/firewall", "vm", (ctx) => ctx.sim.state.guestFw(ctx.sim.state.guest(nodeOf(ctx), "qemu", Number(req(ctx, "vmid"))).vmid)],
  ];
  for (const [base, env, scope] of scopes) {
    out[`GET ${base}/options`] = (ctx) => {
      const s = scope(ctx);
      const schema = ctx.sim.schema.find("PUT", `${base}/options`)?.params ?? {};
      return { ...typed(s.options, schema), digest: digestOf(s.options) };
    };
    out[`PUT ${base}/options`] = (ctx) => {
      const s = scope(ctx);
      checkDigest(ctx, digestOf(s.options));
      for (const k of deleteList(ctx)) delete s.options[k];
      for (const [k, v] of Object.entries(ctx.params)) {
        if (k !== "node" && k !== "vmid" && k !== "delete" && k !== "digest" && typeof v === "string") s.options[k] = v;
      }
      return null;
    };
    rulesApi(out, `${base}/rules`, (ctx) => {
      const s = scope(ctx);
      return { rules: s.rules, ctx: { env, own: s, ...(env === "cluster" ? {} : { cluster: ctx.sim.state.firewall }) }, save: (rules) => void (s.rules = rules) };
    });
    const ipset = (ctx: HandlerCtx) => {
      const name = req(ctx, "name");
      const set = scope(ctx).ipsets.get(name);
      if (!set) throw die(`no such IPSet '${name}'`);
      return set;
    };
    out[`GET ${base}/ipset`] = (ctx) =>
      [...scope(ctx).ipsets.entries()].map(([name, s]) => ({ name, ...(s.comment !== undefined ? { comment: s.comment } : {}), digest: digestOf([...s.entries]) }));
    out[`POST ${base}/ipset`] = (ctx) => {
      const s = scope(ctx);
      const name = req(ctx, "name");
      const rename = str(ctx, "rename");
      const comment = str(ctx, "comment");
      if (rename !== undefined) {
        const old = s.ipsets.get(rename);
        if (!old) throw die(`no such IPSet '${rename}'`);
        if (rename !== name && s.ipsets.has(name)) throw die(`IPSet '${name}' already exists`);
        s.ipsets.delete(rename);
        s.ipsets.set(name, { ...old, ...(comment !== undefined ? { comment } : {}) });
        return null;
      }
      if (s.ipsets.has(name)) throw die(`IPSet '${name}' already exists`);
      s.ipsets.set(name, { entries: new Map(), ...(comment !== undefined ? { comment } : {}) });
      return null;
    };
    out[`GET ${base}/ipset/{name}`] = (ctx) =>
      [...ipset(ctx).entries.entries()].map(([cidr, e]) => ({ cidr, ...(e.comment !== undefined ? { comment: e.comment } : {}), ...(e.nomatch !== undefined ? { nomatch: Number(e.nomatch) } : {}) }));
    out[`POST ${base}/ipset/{name}`] = (ctx) => {
      const set = ipset(ctx);
      const cidr = req(ctx, "cidr");
      if (set.entries.has(cidr)) throw die(`address '${cidr}' already exists`);
      set.entries.set(cidr, { ...(str(ctx, "comment") !== undefined ? { comment: str(ctx, "comment") } : {}), ...(str(ctx, "nomatch") !== undefined ? { nomatch: str(ctx, "nomatch") } : {}) });
      return null;
    };
    out[`DELETE ${base}/ipset/{name}`] = (ctx) => {
      const set = ipset(ctx);
      if (set.entries.size > 0 && !flag(ctx, "force")) throw die("IPSet is not empty");
      scope(ctx).ipsets.delete(req(ctx, "name"));
      return null;
    };
    out[`GET ${base}/ipset/{name}/{cidr}`] = (ctx) => {
      const e = ipset(ctx).entries.get(req(ctx, "cidr"));
      if (!e) throw die(`no such IP address '${req(ctx, "cidr")}'`);
      return { cidr: req(ctx, "cidr"), ...e };
    };
    out[`PUT ${base}/ipset/{name}/{cidr}`] = (ctx) => {
      const e = ipset(ctx).entries.get(req(ctx, "cidr"));
      if (!e) throw die(`no such IP address '${req(ctx, "cidr")}'`);
      if (str(ctx, "comment") !== undefined) e.comment = str(ctx, "comment");
      if (str(ctx, "nomatch") !== undefined) e.nomatch = str(ctx, "nomatch");
      return null;
    };
    out[`DELETE ${base}/ipset/{name}/{cidr}`] = (ctx) => {
      if (!ipset(ctx).entries.delete(req(ctx, "cidr"))) throw die(`no such IP address '${req(ctx, "cidr")}'`);
      return null;
    };
    const alias = (ctx: HandlerCtx) => {
      const a = scope(ctx).aliases.get(req(ctx, "name").toLowerCase());
      if (!a) throw die(`no such alias '${req(ctx, "name")}'`);
      return a;
    };
    out[`GET ${base}/aliases`] = (ctx) =>
      [...scope(ctx).aliases.entries()].map(([name, a]) => ({ name, ...a, digest: digestOf([...scope(ctx).aliases]) }));
    out[`POST ${base}/aliases`] = (ctx) => {
      const s = scope(ctx);
      const name = req(ctx, "name").toLowerCase();
      if (s.aliases.has(name)) throw die(`alias '${name}' already exists`);
      s.aliases.set(name, { cidr: req(ctx, "cidr"), ...(str(ctx, "comment") !== undefined ? { comment: str(ctx, "comment") } : {}) });
      return null;
    };
    out[`GET ${base}/aliases/{name}`] = (ctx) => ({ name: req(ctx, "name").toLowerCase(), ...alias(ctx) });
    out[`PUT ${base}/aliases/{name}`] = (ctx) => {
      const a = alias(ctx);
      checkDigest(ctx, digestOf([...scope(ctx).aliases]));
      a.cidr = req(ctx, "cidr");
      if (str(ctx, "comment") !== undefined) a.comment = str(ctx, "comment");
      const rename = str(ctx, "rename");
      if (rename !== undefined) {
        scope(ctx).aliases.delete(req(ctx, "name").toLowerCase());
        scope(ctx).aliases.set(rename.toLowerCase(), a);
      }
      return null;
    };
    out[`DELETE ${base}/aliases/{name}`] = (ctx) => {
      alias(ctx);
      scope(ctx).aliases.delete(req(ctx, "name").toLowerCase());
      return null;
    };
  }
  groupHandlers(out);
  return out;
}
