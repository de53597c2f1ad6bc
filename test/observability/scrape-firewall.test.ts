/**
 * The firewall ACCEPTs Phoenix derives for the ops guest's scrape (stacks/firewall-rules.ts
 * scrapeRules): each scrape path is blocked by the guest's or the node's chain without them and
 * open with them, judged by the one evaluator (firstMatch), the same chain the deployed rules,
 * validation and the doctor use.
 */
import { describe, expect, it } from "vitest";
import { guestRules } from "../../components/firewall";
import { scrapeJobs } from "../../components/observability/config.render";
import { logShippingGuests } from "../../components/observability/alloy";
import { admits } from "../../scripts/doctor/firewall";
import { firstMatch, flatten, guestChain, guestRuleList, hostNodeChain, lokiEgressRules, lokiPushRules, nodeRuleList, scrapeRules, type ChainEntry } from "../../stacks/firewall-rules";
import { isolationIssues, reach } from "../../stacks/isolation";
import { guestAddress } from "../../stacks/plan";
import { logShippers, scrapePoints } from "../../stacks/scrape";
import type { Guest } from "../../stacks/schema";
import { loadStack } from "../support";
import { configOf, opsIndex, prodRaw, prodWith } from "./helpers";

const prod = configOf(prodRaw());
const ops = prod.guests.find((g) => g.role?.type === "observability")!;
const opsIp = guestAddress(ops)!;
const hostIp = prod.host.address.split("/")[0]!;
const byRole = (type: string): Guest => prod.guests.find((g) => g.role?.type === type)!;

const inbound = (port: number, source: string, dest: string) => ({ direction: "in" as const, port, source, dest, iface: "net0" });
/** What a chain does with the probe: the deciding rule's action, or the policy's. */
const verdict = (chain: ChainEntry[], probe: ReturnType<typeof inbound>, policy: string) => {
  const o = firstMatch(chain, probe);
  return o.by === "rule" ? o.entry.rule.action : o.by === "policy" ? policy : "unknown";
};

describe("the ops guest's scrape through the firewall", () => {
  it("every guest scrape path is dropped without the derived rules and accepted with them", () => {
    const paths = scrapePoints(prod).filter((p) => p.on !== "host" && p.on.vmid !== ops.vmid);
    // node_exporter on every other container, the model servers (Ollama's API probed), Traefik's entry point, the gateway's exporter.
    expect(new Set(paths.map((p) => p.job))).toEqual(new Set(["node", "model-servers", "model-servers-probe", "traefik", "gateway"]));
    const opened: string[] = [];
    for (const p of paths) {
      const g = p.on as Guest;
      const probe = inbound(p.port, opsIp, guestAddress(g)!);
      const without = flatten(prod, guestRuleList(g, `guests[${prod.guests.indexOf(g)}]`));
      const outcome = firstMatch(guestChain(prod, g), probe);
      expect(outcome.by === "rule" && outcome.entry.rule.action, `${g.name}:${p.port} with`).toBe("ACCEPT");
      // The doctor's model walks the same chain.
      expect(admits(prod, g, p.port, opsIp).verdict).toBe("admitted");
      // A path the user's own rules already open (Traefik's 8080 from the LAN) stays decided by them: they come first.
      if (verdict(without, probe, g.firewall.policyIn) === "ACCEPT") continue;
      expect(outcome.by === "rule" && outcome.entry.path, `${g.name}:${p.port}`).toMatch(/derived: scraped by the ops guest/);
      opened.push(`${g.name}:${p.port}`);
    }
    // The Portainer VMs too: node_exporter comes through their guest agent (components/observability/vm-agents.ts).
    expect(opened).toEqual(expect.arrayContaining(["traefik:9100", "nginx-gateway:9113", "vllm-embed:9100", "vllm-embed:8000", "step-ca:9100", "llamacpp:8080", "ollama:11434", "portainer:9100", "drphoenix:9100"]));
  });

  it("opens vrooli's GPU VM to the ops guest for node_exporter and the GPU exporter it installs, and the isolation check sees the same rules", () => {
    const vrooli = loadStack("Pulumi.vrooli.yaml");
    const hq = vrooli.guests.find((g) => g.name === "plan-hq")!;
    const opsTools = vrooli.guests.find((g) => g.role?.type === "observability")!;
    const points = scrapePoints(vrooli).filter((p) => p.on !== "host" && p.on.vmid === hq.vmid);
    expect(points.map((p) => `${p.job}:${p.port}`)).toEqual(["node:9100", "gpu:9835"]);
    for (const p of points) {
      const outcome = firstMatch(guestChain(vrooli, hq), inbound(p.port, guestAddress(opsTools)!, guestAddress(hq)!));
      expect(outcome.by === "rule" && outcome.entry.path, `plan-hq:${p.port}`).toMatch(/derived: scraped by the ops guest/);
      expect(admits(vrooli, hq, p.port, guestAddress(opsTools)!).verdict).toBe("admitted");
    }
    // The isolated projects stay provably apart with the derived rules in the chains, and none is let in by them.
    expect(isolationIssues(vrooli)).toEqual([]);
    const proj = vrooli.guests.find((g) => g.name === "proj-x")!;
    expect(admits(vrooli, hq, 9100, guestAddress(proj)!).verdict).toBe("blocked");
  });

  it("admits only the ops guest, only on the exporters' ports", () => {
    const traefik = byRole("traefik");
    const gateway = byRole("nginx-gateway");
    expect(admits(prod, traefik, 9100, guestAddress(gateway)!).verdict).toBe("blocked");
    expect(admits(prod, gateway, 9113, opsIp).verdict).toBe("admitted");
    expect(admits(prod, gateway, 9114, opsIp).verdict).toBe("blocked");
    // The ops guest gets none for itself: it scrapes its own services on its loopback.
    expect(scrapeRules(prod, ops)).toEqual([]);
    // East-west: the ops guest reaches a model server through the derived rules alone.
    const vllm = prod.guests.find((g) => g.name === "vllm-embed")!;
    expect(reach(prod, ops, vllm)?.why).toMatch(/derived: scraped by the ops guest/);
  });

  it("opens the host's node_exporter and GPU exporter on the node Phoenix prepares to the ops guest alone", () => {
    const node = prod.host.node ?? prod.proxmox.nodes[0]!.name;
    for (const port of [9100, 9835]) {
      const probe = inbound(port, opsIp, hostIp);
      const withRules = firstMatch(hostNodeChain(prod), probe);
      expect(withRules.by === "rule" && withRules.entry.rule.comment).toMatch(/scraped by the ops guest/);
      const withoutRules = flatten(prod, nodeRuleList(prod, node).filter((e) => !("rule" in e) || !/ops guest/.test(e.rule.comment ?? "")));
      expect(verdict(withoutRules, probe, prod.firewall.policyIn)).not.toBe("ACCEPT");
      expect(firstMatch(hostNodeChain(prod), inbound(port, guestAddress(byRole("traefik"))!, hostIp)).by).toBe("policy");
    }
  });

  it("deploys the rules the chain is evaluated with, and the scrape configuration names the same ports", () => {
    const vllm = prod.guests.find((g) => g.role?.type === "model-server" && g.role.server.engine === "vllm")!;
    const rules = guestRules(vllm, scrapeRules(prod, vllm));
    expect(rules.filter((r) => r.source === opsIp)).toEqual([
      { type: "in", action: "ACCEPT", proto: "tcp", source: opsIp, dport: "9100", comment: "phoenix: node metrics, scraped by the ops guest", enabled: true },
      { type: "in", action: "ACCEPT", proto: "tcp", source: opsIp, dport: "8000", comment: "phoenix: model-servers metrics, scraped by the ops guest", enabled: true },
    ]);
    // The TLS probes go to the gateway's, the CA's and Portainer's own ports; an HTTP probe's URL names the address:port it reaches.
    const scraped = scrapeJobs(prod)
      .filter((j) => j.job !== "tls")
      .flatMap((j) => j.targets.map((t) => t.address.replace(/^http:\/\/([^/]+)\/.*$/, "$1")))
      .filter((a) => !a.startsWith("127.0.0.1:"));
    const admitted = [...prod.guests.flatMap((g) => scrapeRules(prod, g).map((e) => ("rule" in e ? `${guestAddress(g)}:${e.rule.dport}` : ""))), ...scrapeRules(prod, "host").map((e) => ("rule" in e ? `${hostIp}:${e.rule.dport}` : ""))];
    // The ops guest scrapes its own node_exporter at its address: loopback traffic no PVE chain sees.
    expect(new Set(scraped.filter((a) => !a.startsWith(`${opsIp}:`)))).toEqual(new Set(admitted));
  });
});

describe("Loki's ACCEPTs on the ops guest for the journals Alloy pushes", () => {
  const loki = (stack: typeof prod) => (stack.guests.find((g) => g.role?.type === "observability")!.role as { loki: { port: number } }).loki.port;

  it("take the journal of the host and of every guest with Phoenix's agents, each from its own address, and of nothing else", () => {
    const shippers = logShippers(prod);
    expect(shippers.map((s) => (s.on === "host" ? "host" : s.on.vmid))).toEqual(["host", ...prod.guests.filter((g) => g !== ops).map((g) => g.vmid)]);
    for (const { on, address } of shippers) {
      const outcome = firstMatch(guestChain(prod, ops), inbound(loki(prod), address, opsIp));
      expect(outcome.by === "rule" && outcome.entry.path, `${on === "host" ? "host" : on.name}`).toMatch(/derived: Loki takes the journal of/);
      expect(admits(prod, ops, loki(prod), address).verdict).toBe("admitted");
    }
    // Another address on the LAN, and another port from a shipper, stay out.
    expect(admits(prod, ops, loki(prod), "10.0.0.250").verdict).toBe("blocked");
    expect(admits(prod, ops, 3101, hostIp).verdict).toBe("blocked");
    // None on any other machine.
    for (const on of [...prod.guests.filter((g) => g !== ops), "host" as const]) expect(lokiPushRules(prod, on)).toEqual([]);
  });

  it("come after the ops guest's own rules, so its DROP still wins", () => {
    const shipper = guestAddress(byRole("traefik"))!;
    const raw = prodWith((guests) => {
      const fw = guests[opsIndex(guests)]!.firewall as { rules: unknown[] };
      fw.rules.unshift({ type: "in", action: "DROP", proto: "tcp", dport: 3100, source: shipper, comment: "not this one" });
    });
    const dropped = configOf(raw);
    const o = dropped.guests.find((g) => g.role?.type === "observability")!;
    expect(admits(dropped, o, loki(dropped), shipper).verdict).toBe("blocked");
    expect(admits(dropped, o, loki(dropped), hostIp).verdict).toBe("admitted");
  });

  it("open vrooli's ops guest to every shipper; the isolated projects ship no journal and stay apart, their metrics still scraped", () => {
    const vrooli = loadStack("Pulumi.vrooli.yaml");
    const opsTools = vrooli.guests.find((g) => g.role?.type === "observability")!;
    const opsAt = guestAddress(opsTools)!;
    const hq = vrooli.guests.find((g) => g.name === "plan-hq")!;
    const projects = vrooli.guests.filter((g) => g.firewall.groups.includes("projects"));
    expect(projects.map((g) => g.name)).toEqual(["proj-x", "proj-y", "vrooli-dev"]);
    // Loki's port also serves its query and delete API: an isolated member is no shipper (stacks/scrape.ts shipsJournal),
    // so no rule opens it to them, and no Alloy is installed in them.
    expect(logShippers(vrooli).map((s) => (s.on === "host" ? "host" : s.on.name))).toEqual(["host", ...vrooli.guests.filter((g) => g !== opsTools && !projects.includes(g)).map((g) => g.name)]);
    expect(logShippingGuests(vrooli).filter((g) => projects.includes(g))).toEqual([]);
    for (const from of [vrooli.host.address.split("/")[0]!, ...vrooli.guests.filter((g) => g !== opsTools && !projects.includes(g)).map((g) => guestAddress(g)!)]) {
      expect(admits(vrooli, opsTools, loki(vrooli), from).verdict, from).toBe("admitted");
    }
    expect(reach(vrooli, hq, opsTools)?.why).toMatch(/derived: Loki takes the journal of guests\[1\]/);
    for (const p of projects) {
      expect(lokiEgressRules(vrooli, p), p.name).toEqual([]);
      // The group's DROP keeps the member from Loki (and from everything else on the box's network) ...
      expect(admits(vrooli, p, loki(vrooli), opsAt, "out").verdict, p.name).toBe("blocked");
      expect(admits(vrooli, opsTools, loki(vrooli), guestAddress(p)!).verdict, p.name).toBe("blocked");
      // ... while ops-tools still scrapes its node_exporter (the group's own IN ACCEPT for 9100; the reply is
      // RELATED,ESTABLISHED, accepted in PVEFW-FORWARD before the member's OUT DROP: Firewall.pm compile_iptables_filter).
      expect(admits(vrooli, p, 9100, opsAt)).toEqual({ verdict: "admitted", why: "group projects: ACCEPT tcp/9100 from 10.20.0.14 (metrics, from ops-tools)" });
      for (const other of projects) if (other !== p) expect(reach(vrooli, p, other), `${p.name} → ${other.name}`).toBeUndefined();
    }
    expect(isolationIssues(vrooli)).toEqual([]);
  });

  it("are derived only when a guest's chain would drop the push, and the isolation check still sees them", () => {
    // Nowhere in prod: no guest's OUT chain drops its push.
    expect(prod.guests.flatMap((g) => lokiEgressRules(prod, g))).toEqual([]);
    // A guest with outbound DROP gets it, and only it.
    const raw = prodWith((guests) => {
      (guests.find((g) => g.name === "traefik")!.firewall as Record<string, unknown>).policyOut = "DROP";
    });
    const dropped = configOf(raw);
    const traefik = dropped.guests.find((g) => g.name === "traefik")!;
    expect(lokiEgressRules(dropped, traefik).map((e) => "rule" in e && `${e.rule.type} ${e.rule.dport} ${e.rule.dest}`)).toEqual([`out ${loki(dropped)} ${opsIp}`]);
    expect(admits(dropped, traefik, loki(dropped), opsIp, "out").verdict).toBe("admitted");
    expect(admits(dropped, traefik, 443, opsIp, "out").verdict).toBe("blocked");
  });
});
