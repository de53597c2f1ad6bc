import { describe, expect, it } from "vitest";
import { formatIssues } from "../../stacks/load";
import { firstMatch, hostNodeChain, canonicalMacro, PVE_MACROS, type ChainEntry, type Probe } from "../../stacks/firewall-rules";
import type { FirewallRule, StackConfig } from "../../stacks/schema";
import { issuesOf, prodWithSecrets, validate } from "./fixtures";

// The raw stack is untyped YAML: tests reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Values = Record<string, any>;

function check(mutate: (v: Values) => void) {
  const raw = prodWithSecrets();
  mutate(raw.values as Values);
  return validate(raw);
}

function issuesAt(mutate: (v: Values) => void, path: string): string[] {
  return issuesOf(check(mutate))
    .filter((i) => i.path === path)
    .map((i) => i.message);
}

function prod(mutate: (v: Values) => void = () => {}): StackConfig {
  const result = check(mutate);
  if (result.ok !== true) throw new Error(formatIssues(issuesOf(result)));
  return result.config;
}

const guest = (v: Values, vmid: number): Values => v.guests.find((g: Values) => g.vmid === vmid);
const drop = (dport: string, extra: Values = {}) => ({ type: "in", action: "DROP", proto: "tcp", dport, ...extra });

describe("the node's effective chain (pve-firewall's order)", () => {
  const probe = (config: StackConfig, port: number, source: string): Probe => ({ direction: "in", port, source, dest: "10.0.0.13", iface: config.host.managementBridge });

  it("admits NFS from each export client and from no other guest", () => {
    const config = prod();
    const chain = hostNodeChain(config);
    const nfs = firstMatch(chain, probe(config, 2049, "10.0.0.102"));
    expect(nfs.by === "rule" && [nfs.entry.rule.action, nfs.entry.path]).toEqual(["ACCEPT", "host.nfsExports[0].clients[0]"]);
    expect(firstMatch(chain, probe(config, 2049, "10.0.0.12")).by).toBe("policy");
  });

  it("walks the admin group first, then the node's rules, then the datacenter's, then PVE's management ACCEPTs", () => {
    const config = prod((v) => {
      v.firewall.node.rules = [drop("22")];
      v.firewall.rules = [drop("8006")];
    });
    const chain = hostNodeChain(config);
    // The ops guest's scrape of the host's node_exporter and GPU exporter follows the NFS ACCEPTs (stacks/firewall-rules.ts scrapeRules).
    const scrape = `host (derived: scraped by the ops guest, guests[${config.guests.findIndex((g) => g.role?.type === "observability")}])`;
    expect(chain.map((e) => e.path)).toEqual(["host.adminNetworks[0]", "host.adminNetworks[0]", "host.nfsExports[0].clients[0]", scrape, scrape, "firewall.node.rules[0]", "firewall.rules[0]", "host.address"]);
    const ssh = firstMatch(chain, probe(config, 22, "10.0.0.0/24"));
    expect(ssh.by === "rule" && ssh.entry.group).toBe("phoenix-admin");
    const outside = firstMatch(chain, probe(config, 22, "192.168.7.0/24"));
    expect(outside.by === "rule" && outside.entry.path).toBe("firewall.node.rules[0]");
  });

  it("lets an ACCEPT for part of a network pass the rest on, and a DROP for part of it block that part", () => {
    const entry = (rule: Partial<FirewallRule>, path: string): ChainEntry => ({ rule: { type: "in", action: "ACCEPT", enabled: true, ...rule } as FirewallRule, path });
    const p: Probe = { direction: "in", port: 22, source: "10.0.0.0/24", dest: "10.0.0.13", iface: "vmbr0" };
    const half = entry({ proto: "tcp", dport: "22", source: "10.0.0.0/25" }, "a");
    expect(firstMatch([half, entry({ action: "DROP" }, "b")], p)).toMatchObject({ by: "rule", entry: { path: "b" }, partly: false });
    expect(firstMatch([entry({ action: "DROP", source: "10.0.0.128-10.0.0.200" }, "c")], p)).toMatchObject({ by: "rule", entry: { path: "c" }, partly: true });
    expect(firstMatch([entry({ source: "!10.1.0.0/16" }, "d")], p)).toMatchObject({ by: "rule", entry: { path: "d" } });
    expect(firstMatch([entry({ source: "+admins" }, "e")], p)).toMatchObject({ by: "unknown" });
    expect(firstMatch([entry({ iface: "vmbr1" }, "f")], p)).toEqual({ by: "policy" });
    expect(firstMatch([entry({ macro: "PMG", source: "10.0.0.0/16" }, "g")], { ...p, port: 8006 })).toMatchObject({ by: "rule", entry: { path: "g" } });
  });

  it("knows PVE's macro names in PVE's spelling", () => {
    expect(Object.keys(PVE_MACROS).length).toBe(86);
    expect(canonicalMacro("ssh")).toBe("SSH");
    expect(canonicalMacro("WEB")).toBe("Web");
    expect(canonicalMacro("spiceproxy")).toBe("SPICEproxy");
    expect(canonicalMacro("Nope")).toBeUndefined();
    expect(PVE_MACROS.Web).toEqual([{ proto: "tcp", dport: "80" }, { proto: "tcp", dport: "443" }]);
  });
});

describe("validation of the firewall", () => {
  it("item 12: refuses an NFS client whose own firewall keeps tcp/2049 to the node from going out", () => {
    const outDrop = (v: Values) => (guest(v, 1002).firewall.policyOut = "DROP");
    expect(issuesAt(outDrop, "host.nfsExports[0].clients[0]").join("\n")).toContain("VM 1002 drphoenix mounts /fastData/docker-data over NFS, but the DROP policy at guests[8].firewall.policyOut keeps tcp/2049 to the node 10.0.0.13 from going out");
    const withRule = (v: Values) => {
      outDrop(v);
      guest(v, 1002).firewall.rules.push({ type: "out", action: "ACCEPT", proto: "tcp", dport: 2049, dest: "10.0.0.13" });
    };
    expect(issuesAt(withRule, "host.nfsExports[0].clients[0]")).toEqual([]);
  });

  it("item 13: refuses ipfilter on a DHCP guest", () => {
    const dhcp = (v: Values) => {
      guest(v, 1001).network.ip = "dhcp";
      guest(v, 1001).firewall.ipfilter = true;
    };
    expect(issuesAt(dhcp, "guests[7].firewall.ipfilter").join("\n")).toContain("VM 1001 portainer uses DHCP: ipfilter lets a guest send only from its configured address");
  });

  it("item 14: a node DROP with policy ACCEPT and no admin networks locks the admin out", () => {
    const mutate = (v: Values) => {
      v.host.adminNetworks = [];
      v.firewall.policyIn = "ACCEPT";
      v.firewall.node.rules = [drop("22,8006")];
    };
    expect(issuesAt(mutate, "firewall.node.rules[0]").join("\n")).toContain(
      "this DROP rule (in group phoenix-node) drops tcp/22 and tcp/8006 to the node from 10.0.0.0/24, the node's local network (no host.adminNetworks are declared; PVE admits its local network last) before anything admits it, so you would lock yourself out",
    );
  });

  it("item 14: an ACCEPT limited to another interface does not keep SSH open", () => {
    const mutate = (v: Values) => {
      v.host.adminNetworks = [];
      v.firewall.rules = [
        { type: "in", action: "ACCEPT", proto: "tcp", dport: "22,8006", iface: "vmbr1" },
        { type: "in", action: "REJECT", proto: "tcp", dport: "22" },
      ];
    };
    expect(issuesAt(mutate, "firewall.rules[1]").join("\n")).toContain("this REJECT rule drops tcp/22 to the node");
    const onBridge = (v: Values) => {
      mutate(v);
      v.firewall.rules[0].iface = "vmbr0";
    };
    expect(issuesAt(onBridge, "firewall.rules[1]")).toEqual([]);
  });

  it("item 14: declared admin networks stay open whatever the node's rules drop, and PVE's management rule keeps the local network", () => {
    expect(issuesOf(check((v) => (v.firewall.node.rules = [drop("22,8006")])))).toEqual([]);
    expect(issuesOf(check((v) => (v.host.adminNetworks = [])))).toEqual([]);
  });

  it("item 15: macros in PVE's spelling only, and iface as each scope allows", () => {
    const rule = (extra: Values) => ({ type: "in", action: "ACCEPT", ...extra });
    const cases: Array<[(v: Values) => void, string, string]> = [
      [(v) => guest(v, 103).firewall.rules.push(rule({ macro: "ssh" })), "guests[0].firewall.rules[1].macro", "PVE stores this macro as SSH, so 'ssh' would show a change on every run: write SSH"],
      [(v) => guest(v, 103).firewall.rules.push(rule({ macro: "Sshd" })), "guests[0].firewall.rules[1].macro", "PVE has no macro 'Sshd' and refuses the rule"],
      [(v) => guest(v, 103).firewall.rules.push(rule({ macro: "SSH", proto: "tcp", dport: 2222 })), "guests[0].firewall.rules[1]", "a macro brings its own protocol and ports"],
      [(v) => (guest(v, 103).firewall.rules[0].iface = "vmbr0"), "guests[0].firewall.rules[0].iface", "a guest rule names the guest's NIC (net0, net1, …)"],
      [(v) => (v.firewall.groups[0].rules[0].iface = "net0"), "firewall.groups[0].rules[0].iface", "PVE refuses iface in a security group's rules"],
      [(v) => (v.firewall.node.rules = [rule({ proto: "tcp", dport: 9100, iface: "vmbr0" })]), "firewall.node.rules[0].iface", "put an interface-specific node rule in firewall.rules"],
      [(v) => v.firewall.groups.push({ name: "Phoenix-Admin", rules: [rule({ proto: "tcp", dport: 1 })] }), "firewall.groups[1].name", "is Phoenix's own"],
    ];
    for (const [mutate, path, message] of cases) expect(issuesAt(mutate, path).join("\n"), path).toContain(message);
    const fine = (v: Values) => {
      guest(v, 103).firewall.rules[0].iface = "net0";
      v.firewall.rules = [rule({ macro: "SSH", iface: "vmbr0", source: "10.0.0.0/24" })];
    };
    expect(issuesOf(check(fine))).toEqual([]);
  });
});
