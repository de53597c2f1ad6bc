import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { gatewayHostNames } from "../../components/core/nginx.render";
import { internalHosts, ownCertificateName } from "../../stacks/routing";
import { renderTraefikDynamic } from "../../components/core/traefik.render";
import { renderHostsBlock } from "../../components/render/hosts";
import { readStackFile, validateStack } from "../../stacks/load";
import { firstMatch, guestChain } from "../../stacks/firewall-rules";
import { loadStack, ROOT, shellcheck, tempDir } from "../support";

/** Runs the block against a copy of /etc/hosts in a temp dir. */
function apply(hostsFile: string, snippet: string): void {
  execFileSync("bash", ["-euo", "pipefail", "-c", snippet.replaceAll("/etc/hosts", hostsFile)]);
}

describe("internal names", () => {
  const config = loadStack("Pulumi.prod.yaml");

  it("point the CA at Traefik for every service host, and Traefik and the gateway at the CA", () => {
    const ca = internalHosts(config, "step-ca");
    expect(ca.map((e) => e.ip)).toEqual(["10.0.0.153", "10.0.0.12", "10.0.0.111"]);
    expect(ca[1]!.names).toContain("vllm-chat.svc.internal.thinkheads.ai");
    expect(ca[1]!.names).toContain("traefik.internal.thinkheads.ai");
    // Portainer's server answers its own ACME challenge, for its own name; its service host stays Traefik's
    expect(ca[2]!.names).toEqual(["vm-1001.internal.thinkheads.ai"]);
    expect(ca[1]!.names).toContain("portainer.svc.internal.thinkheads.ai");
    expect(internalHosts(config, "traefik")).toEqual([{ ip: "10.0.0.10", names: ["ca.internal.thinkheads.ai"] }]);
    expect(internalHosts(config, "nginx-gateway")).toEqual([{ ip: "10.0.0.10", names: ["ca.internal.thinkheads.ai"] }]);
  });

  it("resolve every name a guest orders a certificate for, as the CA resolves it, to that guest", () => {
    // What each guest really asks Step-CA for, read from its rendered files.
    const gateway = gatewayHostNames(config).map((name) => ({ name, guest: "10.0.0.153" }));
    const dynamic = parse(renderTraefikDynamic(config).content) as { http: { routers: Record<string, { rule: string; tls?: { certResolver?: string } }> } };
    const traefik = Object.values(dynamic.http.routers)
      .filter((r) => r.tls?.certResolver)
      .map((r) => ({ name: /^Host\(`([^`]+)`\)$/.exec(r.rule)![1]!, guest: "10.0.0.12" }));
    const portainer = [{ name: ownCertificateName(config, config.guests.find((g) => g.vmid === 1001)!)!, guest: "10.0.0.111" }];
    const orders = [...gateway, ...traefik, ...portainer];
    expect(orders.map((o) => o.name)).toContain("portainer.internal.thinkheads.ai");
    // The CA's /etc/hosts after its install script's block, read as Go's resolver reads it (first match wins).
    const dir = tempDir("ca-hosts");
    const file = path.join(dir, "hosts");
    fs.writeFileSync(file, "127.0.0.1 localhost\n");
    apply(file, renderHostsBlock(internalHosts(config, "step-ca")));
    const resolve = (name: string) => fs.readFileSync(file, "utf8").split("\n").map((l) => l.split(/\s+/)).find((f) => f.slice(1).includes(name))?.[0];
    for (const o of orders) expect({ name: o.name, at: resolve(o.name) }).toEqual({ name: o.name, at: o.guest });
    fs.rmSync(dir, { recursive: true });
  });

  it("refuse a route host that is another guest's name", () => {
    const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
    const routes = raw.values.routes as Array<Record<string, unknown>>;
    routes.push({ host: "qdrant.svc.internal.thinkheads.ai", service: "qdrant" }, { host: "ca.internal.thinkheads.ai", service: "qdrant" }, { host: "traefik.internal.thinkheads.ai", service: "qdrant" });
    const result = validateStack(raw, { requireSecrets: false });
    expect(result.ok).toBe(false);
    const messages = result.ok === false ? result.issues.filter((i) => /^routes\[\d+\]\.host$/.test(i.path)).map((i) => i.message) : [];
    expect(messages.join("\n")).toMatch(/zone svc\.internal\.thinkheads\.ai/);
    expect(messages.join("\n")).toMatch(/the CA's own name/);
    expect(messages.join("\n")).toMatch(/Traefik's dashboard/);
  });

  it("open the CA's ACME validation where a DROP policy would stop it, and refuse a DROP the user declares", () => {
    const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
    const guests = raw.values.guests as Array<{ vmid: number; firewall: { rules?: Array<{ comment?: string; [k: string]: unknown }> } }>;
    const at = (vmid: number) => guests.findIndex((g) => g.vmid === vmid);
    const withoutCa = (vmid: number) => (guests[at(vmid)]!.firewall.rules = guests[at(vmid)]!.firewall.rules!.filter((r) => !/Step-CA/.test(r.comment ?? "")));
    withoutCa(1001); // Portainer's http-01 on port 80
    withoutCa(102); // Traefik's tls-alpn-01 on 443
    // Without the stack's own ACCEPTs, Phoenix derives them (after the guest's rules, before its DROP policy).
    const derived = validateStack(raw, { requireSecrets: false });
    expect(derived.ok === false ? derived.issues.filter((i) => /Step-CA validates/.test(i.message)) : []).toEqual([]);
    const config = derived.ok === true ? derived.config : undefined;
    expect(config).toBeDefined();
    const portainer = config!.guests.find((g) => g.vmid === 1001)!;
    expect(firstMatch(guestChain(config!, portainer), { direction: "in", port: 80, source: "10.0.0.10", dest: "10.0.0.111", iface: "net0" })).toMatchObject({
      by: "rule",
      entry: { rule: { type: "in", action: "ACCEPT", dport: "80", source: "10.0.0.10" }, path: expect.stringMatching(/derived: Step-CA's http-01 validation/) },
    });
    // A guest that already admits it gets nothing more: the stack as shipped.
    const shipped = loadStack("Pulumi.prod.yaml");
    expect(guestChain(shipped, shipped.guests.find((g) => g.vmid === 1001)!).filter((e) => /derived: Step-CA/.test(e.path))).toEqual([]);
    // A DROP the user declares still wins, and validation says which rule.
    guests[at(1001)]!.firewall.rules!.unshift({ type: "in", action: "DROP", proto: "tcp", dport: 80, source: "10.0.0.10", comment: "no ACME here" });
    const result = validateStack(raw, { requireSecrets: false });
    const issues = result.ok === false ? result.issues.filter((i) => /Step-CA validates/.test(i.message)) : [];
    expect(issues.map((i) => i.path)).toEqual([`guests[${at(1001)}].firewall.rules[0]`]);
    expect(issues[0]!.message).toBe(
      "Step-CA validates vm-1001.internal.thinkheads.ai (http-01) by connecting from 10.0.0.10 to VM 1001 portainer at 10.0.0.111:80, but this DROP rule drops it there: add { type: in, action: ACCEPT, proto: tcp, dport: 80, source: 10.0.0.10 } ahead of it",
    );
  });

  it("are written in a block of their own, keeping PVE's and the user's lines, and a re-run changes nothing", () => {
    const dir = tempDir("hosts");
    const file = path.join(dir, "hosts");
    const pve = "127.0.0.1 localhost\n# --- BEGIN PVE ---\n10.0.0.12 traefik.internal.thinkheads.ai traefik\n# --- END PVE ---\n10.9.9.9 mine\n";
    fs.writeFileSync(file, pve);
    const snippet = renderHostsBlock(internalHosts(config, "traefik"));
    shellcheck("hosts block", `#!/bin/bash\n${snippet}\n`);
    apply(file, snippet);
    const once = fs.readFileSync(file, "utf8");
    expect(once).toBe(`${pve}# BEGIN phoenix internal names\n10.0.0.10 ca.internal.thinkheads.ai\n# END phoenix internal names\n`);
    const mtime = fs.statSync(file).mtimeMs;
    apply(file, snippet);
    expect(fs.readFileSync(file, "utf8")).toBe(once);
    expect(fs.statSync(file).mtimeMs).toBe(mtime);
    apply(file, renderHostsBlock([{ ip: "10.0.0.11", names: ["ca.internal.thinkheads.ai"] }]));
    expect(fs.readFileSync(file, "utf8")).toBe(`${pve}# BEGIN phoenix internal names\n10.0.0.11 ca.internal.thinkheads.ai\n# END phoenix internal names\n`);
    fs.rmSync(dir, { recursive: true });
  });
});
