/** The pure parts of the doctor: the declared firewall, probe interpretation, certificate inspection, diagnosis order, arguments. */
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parseArgs, runDoctor } from "../../scripts/doctor";
import { diagnose, type Finding } from "../../scripts/doctor/diagnose";
import { admits } from "../../scripts/doctor/firewall";
import { planDoctor, type Check } from "../../scripts/doctor/plan";
import { hostResults, inspectChain, parseCurl } from "../../scripts/doctor/probes";
import { readStackFile, validateStack } from "../../stacks/load";
import type { FirewallRule, StackConfig } from "../../stacks/schema";
import { makeCa } from "./pki";
import { ROOT } from "./world";

function prod(): StackConfig {
  const r = validateStack(readStackFile(path.join(ROOT, "Pulumi.prod.yaml")), { requireSecrets: false });
  if (r.ok !== true) throw new Error("prod stack does not validate");
  return r.config;
}

const rule = (r: Partial<FirewallRule>): FirewallRule => ({ type: "in", action: "ACCEPT", proto: "tcp", enabled: true, ...r });

describe("declared firewall", () => {
  const config = prod();
  const chat = config.guests.find((g) => g.vmid === 802)!;
  const withRules = (rules: FirewallRule[], policyIn: "DROP" | "ACCEPT" = "DROP") => ({ ...chat, firewall: { ...chat.firewall, rules, policyIn } });

  it("admits Traefik and drops the node, as prod declares", () => {
    expect(admits(config, chat, 8000, "10.0.0.12")).toEqual({ verdict: "admitted", why: "guests(802).firewall.rules: ACCEPT tcp/8000 from 10.0.0.12 (from Traefik)" });
    expect(admits(config, chat, 8000, "10.0.0.13")).toEqual({ verdict: "blocked", why: "no rule of guest 802 admits tcp/8000 from 10.0.0.13 and its inbound policy is DROP" });
  });

  it("takes the first matching rule, and reads ranges, lists, negation and port ranges", () => {
    const g = withRules([rule({ action: "DROP", source: "10.0.0.12" }), rule({ source: "10.0.0.0/24", dport: "7000:9000" })]);
    expect(admits(config, g, 8000, "10.0.0.12").verdict).toBe("blocked");
    expect(admits(config, g, 8000, "10.0.0.40").verdict).toBe("admitted");
    expect(admits(config, g, 9001, "10.0.0.40").verdict).toBe("blocked");
    expect(admits(config, withRules([rule({ source: "!10.0.0.1-10.0.0.20,10.0.1.0/24", dport: "8000" })]), 8000, "10.0.0.30").verdict).toBe("admitted");
    expect(admits(config, withRules([rule({ source: "!10.0.0.1-10.0.0.20", dport: "8000" })]), 8000, "10.0.0.12").verdict).toBe("blocked");
    expect(admits(config, withRules([rule({ proto: "udp", dport: "8000" })], "ACCEPT"), 8000, "10.0.0.12")).toEqual({ verdict: "admitted", why: "guest 802's inbound policy is ACCEPT" });
  });

  it("says when it cannot decide: an alias or ipset, or a macro PVE does not know", () => {
    expect(admits(config, withRules([rule({ source: "+traefik" })]), 8000, "10.0.0.12").verdict).toBe("unknown");
    expect(admits(config, withRules([{ type: "in", action: "ACCEPT", macro: "Nope", enabled: true }]), 8000, "10.0.0.12").verdict).toBe("unknown");
  });

  it("knows every PVE macro's ports, whatever its spelling (pve-firewall's macro table)", () => {
    const ceph = withRules([{ type: "in", action: "ACCEPT", macro: "ceph", enabled: true }]);
    expect(admits(config, ceph, 6800, "10.0.0.12").verdict).toBe("admitted");
    expect(admits(config, ceph, 8000, "10.0.0.12").verdict).toBe("blocked");
  });

  it("evaluates security groups and the firewall switches", () => {
    const gateway = config.guests.find((g) => g.vmid === 101)!;
    expect(admits(config, gateway, 443, "10.0.0.50").why).toBe("group web: ACCEPT tcp/80,443 from 10.0.0.0/24");
    expect(admits(config, gateway, 443, "192.168.1.5").verdict).toBe("blocked");
    expect(admits({ ...config, firewall: { ...config.firewall, enabled: false } }, gateway, 443, "192.168.1.5").verdict).toBe("admitted");
  });

  it("a hop the stack forgot to open is the diagnosis, ahead of the probes that fail because of it", () => {
    const broken = { ...config, guests: config.guests.map((g) => (g.vmid === 802 ? withRules([]) : g)) };
    const plan = planDoctor(broken, {});
    const hop = plan.checks.find((c) => c.service === "vllm-chat" && c.check.layer === "firewall")!.check as Extract<Check, { layer: "firewall" }>;
    expect(hop.hops[0]!.admission.verdict).toBe("blocked");
    const findings: Finding[] = [
      { service: "vllm-chat", layer: "traefik", check: "route", status: "fail", failure: "backend-down", detail: "→ 502" },
      { service: "vllm-chat", layer: "firewall", check: "Traefik → vllm-chat", status: "fail", failure: "firewall-blocks", detail: hop.hops[0]!.admission.why },
      { service: "vllm-chat", layer: "guest", check: "unit", status: "ok", detail: "" },
    ];
    const [d] = diagnose(findings, plan.contexts);
    expect(d).toMatchObject({ service: "vllm-chat", layer: "firewall", failure: "firewall-blocks" });
    expect(d!.hints[0]).toContain("dport: 8000");
  });
});

describe("probe interpretation", () => {
  const config = prod();
  const hostCheck = (service: string) => planDoctor(config, {}).checks.find((c) => c.service === service && c.check.layer === "host")!.check as Extract<Check, { layer: "host" }>;

  it("reads curl's verdict line and exit codes", () => {
    expect(parseCurl({ code: 0, stdout: "200 0\n", stderr: "" })).toEqual({ status: 200 });
    expect(parseCurl({ code: 0, stdout: "000 7\n", stderr: "curl: (7) Failed to connect" })).toEqual({ failure: "refused", message: "curl: (7) Failed to connect" });
    expect(parseCurl({ code: 0, stdout: "000 60\n", stderr: "curl: (60) SSL certificate problem" })).toMatchObject({ failure: "tls-error" });
    expect(parseCurl({ code: 0, stdout: "000 127\n", stderr: "sh: curl: not found" })).toMatchObject({ failure: "probe-error" });
    expect(parseCurl({ code: 255, stdout: "", stderr: "CT 802 not running" })).toEqual({ failure: "probe-error", message: "curl did not run (exit 255): CT 802 not running" });
  });

  it("a drop the declared firewall predicts is skipped; a refusal is still a failure", () => {
    const chat = hostCheck("vllm-chat");
    expect(chat.nodeAdmission.verdict).toBe("blocked");
    expect(hostResults(chat, { failure: "timeout", message: "timed out" }).map((r) => r.status)).toEqual(["skip", "skip"]);
    expect(hostResults(chat, { failure: "refused", message: "refused" }).map((r) => `${r.status}:${r.failure}`)).toEqual(["fail:refused", "fail:refused"]);
    const portainer = hostCheck("portainer");
    expect(portainer.nodeAdmission.verdict).toBe("admitted");
    expect(hostResults(portainer, { failure: "timeout", message: "timed out" })[0]).toMatchObject({ status: "fail", failure: "timeout" });
    expect(hostResults(portainer, { status: 503 })[1]).toMatchObject({ status: "fail", failure: "unhealthy", detail: "/api/system/status → HTTP 503" });
    expect(hostResults(portainer, { status: 401 })[1]).toMatchObject({ status: "ok" });
  });
});

describe("certificate inspection", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-doctor-pki-"));
  const ca = makeCa(dir, "Inspect Root");
  const leaf = new X509Certificate(ca.issue("leaf", ["gw.example"]).cert);
  const root = new X509Certificate(ca.certPem);
  const at = (ms: number) => new Date(Date.parse(leaf.validFrom) + ms);
  const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);

  it("trusts a chain to the root, checks the name, and warns past two thirds of the lifetime", () => {
    expect(inspectChain([leaf], root, "gw.example", at(1000)).map((r) => `${r.check}:${r.status}`)).toEqual(["certificate:ok", "expiry:ok"]);
    expect(inspectChain([leaf], root, "other.example", at(1000))[0]).toMatchObject({ failure: "cert-name", detail: "gw.example does not cover other.example (DNS:gw.example)" });
    expect(inspectChain([leaf], root, "gw.example", at(lifetime * 0.8))[1]).toMatchObject({ check: "expiry", status: "warn" });
    expect(inspectChain([leaf], root, "gw.example", at(lifetime + 1000))[1]).toMatchObject({ check: "expiry", status: "fail", failure: "cert-expired" });
    expect(inspectChain([leaf], root, "gw.example", at(-60_000))[1]).toMatchObject({ failure: "cert-not-yet-valid" });
  });
});

describe("arguments", () => {
  it("parses the flags and refuses what it does not know", () => {
    expect(parseArgs(["prod", "--json", "--outputs", "o.json", "--ca", "root.pem", "--ssh-key", "k"])).toEqual({ stack: "prod", json: true, outputs: "o.json", ca: "root.pem", sshKey: "k" });
    expect(parseArgs(["--json"])).toMatch(/^usage: npm run doctor/);
    expect(parseArgs(["prod", "--outputs"])).toMatch(/^--outputs needs a file/);
    expect(parseArgs(["prod", "--verbose"])).toMatch(/^unknown option --verbose/);
    expect(parseArgs(["prod", "dev"])).toMatch(/^one stack only/);
  });

  it("exits 2 on a missing stack file, before reaching any machine", async () => {
    const res = await runDoctor(["nosuch"], { cwd: ROOT, channels: () => Promise.reject(new Error("must not connect")) });
    expect(res).toEqual({ code: 2, text: `no stack file Pulumi.nosuch.yaml in ${ROOT}` });
  });
});
