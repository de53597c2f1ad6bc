/**
 * The exporters outside the ops guest's own services: their install scripts
 * (shellcheck), units (systemd-analyze), the pve-exporter's root-only token
 * file, and the simulator's access endpoints the bridged metrics user, token
 * and ACL call.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand } from "../../providers/ssh";
import { startSshd, type SshRig } from "../rig/sshd";
import { EXPORTER_UNITS, renderGuestExportersFiles, renderGuestExportersScript, renderHostExportersScript, renderHostTextfileScript, renderPveExporterConfig, renderPveExporterFiles, renderPveExporterPrepare, PVE_EXPORTER } from "../../components/observability/exporters.render";
import { systemdVerify } from "../models/helpers";
import { loadStack, shellcheck, tempDir } from "../support";
import { startSimulator } from "../pve-sim/server";
import { rawCall } from "../pve-sim/http";
import { configOf, prodRaw } from "./helpers";

const prod = configOf(prodRaw());
const gateway = prod.guests.find((g) => g.role?.type === "nginx-gateway")!;
const TOKEN = "phoenix-metrics@pve!metrics=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

describe("exporter installs", () => {
  it("are strict bash and shellcheck-clean: a container's, the gateway's, the host's and its textfile script", () => {
    shellcheck("guest exporters", renderGuestExportersScript(prod, prod.guests.find((g) => g.role?.type === "traefik")!));
    shellcheck("gateway exporters", renderGuestExportersScript(prod, gateway));
    shellcheck("host exporters", renderHostExportersScript(prod));
    shellcheck("host textfile metrics", renderHostTextfileScript(prod));
    shellcheck("pve-exporter prepare", `#!/usr/bin/env bash\nset -euo pipefail\n${renderPveExporterPrepare(prod)}\n`);
  });

  it("run node_exporter everywhere and nginx-prometheus-exporter on the gateway against its loopback stub_status, units passing systemd-analyze", () => {
    const files = new Map(renderGuestExportersFiles(prod, gateway).map((f) => [f.path, f.content]));
    expect([...files.keys()]).toEqual([`/etc/systemd/system/${EXPORTER_UNITS.node}`, `/etc/systemd/system/${EXPORTER_UNITS.nginx}`]);
    const nginx = files.get(`/etc/systemd/system/${EXPORTER_UNITS.nginx}`)!;
    expect(nginx).toContain("--nginx.scrape-uri=http://127.0.0.1:8081/stub_status");
    const dir = tempDir("exporter-units");
    for (const [p, content] of files) {
      const verdict = systemdVerify(p.split("/").pop()!, content, dir);
      expect(verdict.ok, verdict.warnings).toBe(true);
    }
  });

  it("in a VM a GPU is passed through to (vrooli's plan-hq), run node_exporter and the GPU exporter, sandboxed as a VM allows, units passing systemd-analyze", () => {
    const vrooli = loadStack("Pulumi.vrooli.yaml");
    const hq = vrooli.guests.find((g) => g.name === "plan-hq")!;
    shellcheck("plan-hq exporters", renderGuestExportersScript(vrooli, hq));
    const files = new Map(renderGuestExportersFiles(vrooli, hq).map((f) => [f.path, f.content]));
    expect([...files.keys()]).toEqual([`/etc/systemd/system/${EXPORTER_UNITS.node}`, `/etc/systemd/system/${EXPORTER_UNITS.gpu}`]);
    const dir = tempDir("vm-exporter-units");
    for (const [p, content] of files) {
      // A VM has its own kernel: the mount-namespace sandbox applies (components/render/systemd-sandbox.ts).
      expect(content, p).toMatch(/^ProtectSystem=strict$/m);
      const verdict = systemdVerify(p.split("/").pop()!, content, dir);
      expect(verdict.ok, verdict.warnings).toBe(true);
    }
    expect(files.get(`/etc/systemd/system/${EXPORTER_UNITS.gpu}`)).toContain("--web.listen-address=:9835");
    // A Portainer VM has no GPU: node_exporter alone.
    const portainer = prod.guests.find((g) => g.role?.type === "portainer-server")!;
    expect(renderGuestExportersFiles(prod, portainer).map((f) => f.path)).toEqual([`/etc/systemd/system/${EXPORTER_UNITS.node}`]);
  });

  it("the host's node_exporter reads the textfile directory and the GPU exporter runs where containers share GPUs", () => {
    const script = renderHostExportersScript(prod);
    const units = [...script.matchAll(/<<'PHOENIX_FILE'\n([\s\S]*?)\nPHOENIX_FILE/g)].map((m) => Buffer.from(m[1]!.replace(/\n/g, ""), "base64").toString("utf8"));
    expect(units.some((u) => u.includes("--collector.textfile.directory=/var/lib/phoenix/textfile"))).toBe(true);
    expect(units.some((u) => u.includes("OnUnitActiveSec=5min"))).toBe(true);
    expect(script).toContain("nvidia_gpu_exporter_1.14.0_linux_x86_64.tar.gz");
    expect(renderHostTextfileScript(prod)).toContain("dkms status -m nvidia -v 580.95.05");
  });
});

describe("the host's exporters on the node (the rig's sandbox)", () => {
  let rig: SshRig;
  beforeAll(async () => {
    rig = await startSshd();
  });
  afterAll(async () => {
    await rig?.stop();
  });
  const run = (script: string) => runCommand(rig.connection, "bash -s", { stdin: script });

  it("install node_exporter and the GPU exporter from archives checked against their checksums files, under the node's root, and change nothing the second time", async () => {
    const script = renderHostExportersScript(prod);
    const first = await run(script);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/phoenix-host-exporters: installed 5 changed file\(s\)/);
    const sb = rig.sandbox;
    for (const bin of ["usr/local/bin/node_exporter", "usr/local/bin/nvidia_gpu_exporter", "usr/local/lib/phoenix/textfile-metrics"]) expect(sb.exists(bin), bin).toBe(true);
    expect(sb.read(`etc/systemd/system/${EXPORTER_UNITS.node}`)).toContain("--collector.textfile.directory=/var/lib/phoenix/textfile");
    expect(sb.exists("var/lib/phoenix/textfile")).toBe(true);
    expect(sb.read("etc/passwd")).toMatch(/^node-exporter:.*\n^gpu-exporter:/m);
    expect(sb.state().systemdEnabled).toEqual(expect.arrayContaining([EXPORTER_UNITS.node, EXPORTER_UNITS.gpu, `${EXPORTER_UNITS.textfile}.timer`]));
    expect(sb.read("var/lib/phoenix/phoenix-host-exporters.files")).toContain(`${sb.root}/etc/systemd/system/${EXPORTER_UNITS.node}`);
    const second = await run(script);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("phoenix-host-exporters: files unchanged");
    // Nothing was downloaded again: each release's version marker held.
    expect(sb.calls("curl").filter((c) => c.includes("-o"))).toHaveLength(4);
  });

  it("refuses an archive its release's checksums file does not list, installing nothing", async () => {
    rig.sandbox.update((s) => (s.releases = {}));
    // The archive from elsewhere than the release whose checksums file is fetched: that file does not list it.
    const tampered = renderHostExportersScript(prod).replace("/v1.12.1/node_exporter-", "/v1.12.1/mirror/node_exporter-");
    rig.sandbox.write("usr/local/bin/node_exporter", "");
    rig.sandbox.write("var/lib/phoenix/releases/node_exporter.version", "0.0.1\n");
    const res = await run(tampered);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/node_exporter .*is not listed in .*\/v1\.12\.1\/sha256sums\.txt; refusing to install an unverified binary/);
  });
});

describe("prometheus-pve-exporter's token", () => {
  it("is written root-only and read by the service through LoadCredential", () => {
    const files = renderPveExporterFiles(prod, TOKEN);
    const conf = files.find((f) => f.path === PVE_EXPORTER.config)!;
    expect(conf.mode).toBe("0600");
    expect(conf.owner).toBe("root:root");
    expect(conf.content).toContain("token_name: metrics");
    expect(conf.content).toContain("user: phoenix-metrics@pve");
    const unit = files.find((f) => f.path.endsWith(EXPORTER_UNITS.pve))!.content;
    expect(unit).toContain(`LoadCredential=pve.yml:${PVE_EXPORTER.config}`);
    expect(unit).not.toContain(TOKEN.split("=")[1]);
  });

  it("refuses a value that is not <user>!<token>=<secret>, without echoing it", () => {
    expect(() => renderPveExporterConfig(prod, "s3cr3t-value")).toThrow(/not <user>!<token>=<secret>$/);
    try {
      renderPveExporterConfig(prod, "s3cr3t-value");
    } catch (e) {
      expect(String(e)).not.toContain("s3cr3t");
    }
  });
});

describe("the simulator's users, tokens and ACLs (pve-access-control 9.1.1)", () => {
  it("creates a user, a token whose value is returned once, and a PVEAuditor ACL; refuses unknown roles and users", async () => {
    const sim = await startSimulator({ nodeName: "pve" });
    try {
      const form = (o: Record<string, string>) => new URLSearchParams(o).toString();
      expect((await rawCall(sim, "POST", "/access/users", { form: form({ userid: "phoenix-metrics@pve", enable: "1", expire: "0", comment: "" }) })).status).toBe(200);
      expect((await rawCall(sim, "POST", "/access/users", { form: form({ userid: "phoenix-metrics@pve" }) })).status).toBe(500);
      const token = await rawCall(sim, "POST", "/access/users/phoenix-metrics%40pve/token/metrics", { form: form({ privsep: "0" }) });
      const data = token.body.data as Record<string, string>;
      expect(data["full-tokenid"]).toBe("phoenix-metrics@pve!metrics");
      expect(data.value).toMatch(/^[0-9a-f-]{36}$/);
      expect((await rawCall(sim, "PUT", "/access/acl", { form: form({ path: "/", roles: "PVEAuditor", users: "phoenix-metrics@pve", propagate: "1" }) })).status).toBe(200);
      expect((await rawCall(sim, "PUT", "/access/acl", { form: form({ path: "/", roles: "PVEMonitor", users: "phoenix-metrics@pve" }) })).status).toBe(500);
      expect((await rawCall(sim, "PUT", "/access/acl", { form: form({ path: "/", roles: "PVEAuditor", users: "nobody@pve" }) })).status).toBe(500);
      const acl = await rawCall(sim, "GET", "/access/acl", {});
      expect(acl.body.data).toEqual([{ path: "/", type: "user", ugid: "phoenix-metrics@pve", roleid: "PVEAuditor", propagate: 1 }]);
      await rawCall(sim, "DELETE", "/access/users/phoenix-metrics%40pve", {});
      expect((await rawCall(sim, "GET", "/access/acl", {})).body.data).toEqual([]);
    } finally {
      await sim.stop();
    }
  });
});
