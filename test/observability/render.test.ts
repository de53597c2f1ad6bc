/**
 * The ops guest's rendered files for prod, judged by the real tools: promtool
 * (config and rules), amtool, systemd-analyze and shellcheck; the scrape jobs
 * the stack implies; thresholds from the config; and validation of the role.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { alertRules, OBS_PATHS, scrapeJobs } from "../../components/observability/config.render";
import { renderObservabilityFiles, renderObservabilityInstallScript } from "../../components/observability/install.render";
import { observabilityReleases, observabilityRole } from "../../components/observability/releases";
import { validateStack } from "../../stacks/load";
import { admits } from "../../scripts/doctor/firewall";
import { systemdVerify } from "../models/helpers";
import { goldenChecker, loadStack, shellcheck, tempDir } from "../support";
import { configOf, GOLDEN_CA_PEM, layPrometheusFiles, opsIndex, prodRaw, prodWith, testCaPem } from "./helpers";

const expectGolden = goldenChecker(path.join(__dirname, "golden"));
const prod = configOf(prodRaw());
const inputs = { caRootPem: GOLDEN_CA_PEM };
const files = new Map(renderObservabilityFiles(prod, inputs).map((f) => [f.path, f.content]));

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("the ops guest's files for prod", () => {
  it("match their golden files", () => {
    // A certificate's golden keeps a .txt suffix: no tracked file looks like a key or a PEM secret.
    for (const [p, content] of files) expectGolden(`104${p}${p.endsWith(".pem") ? ".txt" : ""}`, content);
    expectGolden("104/install.sh", renderObservabilityInstallScript(prod, inputs));
  });

  it("pass promtool check config, which also loads every rule file", () => {
    const dir = tempDir("obs-promtool");
    const r = run("promtool", ["check", "config", layPrometheusFiles(prod, dir)]);
    expect(r.out, r.out).toMatch(/SUCCESS: 1 rule files found/);
    expect(r.out).toMatch(new RegExp(`SUCCESS: ${alertRules(observabilityRole(prod)).length} rules found`));
    expect(r.status).toBe(0);
  });

  it("pass promtool check rules, and promtool refuses a broken rule", () => {
    const dir = tempDir("obs-rules");
    const configFile = layPrometheusFiles(prod, dir);
    const rules = path.join(path.dirname(configFile), "rules", path.basename(OBS_PATHS.rules));
    expect(run("promtool", ["check", "rules", rules]).status).toBe(0);
    // The same check on a rule with a syntax error fails: the tool judges, the test does not pass blindly.
    execFileSync("sed", ["-i", "0,/expr: /s//expr: sum(/", rules]);
    expect(run("promtool", ["check", "rules", rules]).status).not.toBe(0);
  });

  it("pass amtool check-config", () => {
    const dir = tempDir("obs-amtool");
    const file = path.join(dir, "alertmanager.yml");
    fs.writeFileSync(file, files.get(OBS_PATHS.alertmanagerConfig)!);
    const r = run("amtool", ["check-config", file]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS/);
  });

  it("pass blackbox_exporter --config.check, with the CA root it verifies against", () => {
    const dir = tempDir("obs-blackbox");
    const ca = path.join(dir, "root.pem");
    fs.writeFileSync(ca, testCaPem());
    const file = path.join(dir, "blackbox.yml");
    // The rendered module, its ca_file moved to where the test put the root.
    fs.writeFileSync(file, files.get(OBS_PATHS.blackboxConfig)!.replace(OBS_PATHS.caRoot, ca));
    const r = run("prometheus-blackbox-exporter", ["--config.check", `--config.file=${file}`]);
    expect(r.status, r.out).toBe(0);
    // The same check refuses a field it does not know (it does not open ca_file, so that is not what it judges).
    fs.writeFileSync(file, files.get(OBS_PATHS.blackboxConfig)!.replace("tls_config:", "tls_configuration:"));
    expect(run("prometheus-blackbox-exporter", ["--config.check", `--config.file=${file}`]).status).not.toBe(0);
  });

  it("have units systemd accepts, running each binary with the data on the dataset", () => {
    const dir = tempDir("obs-units");
    const data = observabilityRole(prod).dataDir;
    const expected: Record<string, string[]> = {
      "prometheus.service": ["--config.file=/etc/prometheus/prometheus.yml", "--web.listen-address=:9090", `--storage.tsdb.path=${data}/prometheus`, "--storage.tsdb.retention.time=30d"],
      "alertmanager.service": ["--config.file=/etc/alertmanager/alertmanager.yml", `--storage.path=${data}/alertmanager`, "--web.listen-address=:9093", "--cluster.listen-address="],
      "node-exporter.service": ["--web.listen-address=:9100"],
      "blackbox-exporter.service": ["--config.file=/etc/blackbox_exporter/blackbox.yml", "--web.listen-address=127.0.0.1:9115"],
    };
    for (const [unit, args] of Object.entries(expected)) {
      const verdict = systemdVerify(unit, files.get(`/etc/systemd/system/${unit}`)!, dir);
      expect(verdict.ok, verdict.warnings).toBe(true);
      expect(verdict.argv.slice(1)).toEqual(args);
    }
  });

  it("install with a script shellcheck finds clean, verifying every release before installing it", () => {
    const script = renderObservabilityInstallScript(prod, inputs);
    shellcheck("observability install", script);
    for (const r of observabilityReleases(observabilityRole(prod))) {
      expect(r.url).toMatch(new RegExp(`^https://github.com/prometheus/[a-z_]+/releases/download/v${r.version.replace(/\./g, "\\.")}/[a-z_]+-${r.version.replace(/\./g, "\\.")}\\.linux-amd64\\.tar\\.gz$`));
      expect(script).toContain(r.checksumsUrl!);
    }
    expect(script).toContain("mountpoint -q /var/lib/phoenix-observability");
    expect(script).toMatch(/promtool check config \/etc\/prometheus\/prometheus.yml/);
  });
});

describe("scrape jobs", () => {
  const jobs = new Map(scrapeJobs(prod).map((j) => [j.job, j]));

  it("scrape node_exporter on the host, every container and every Docker host VM (where Phoenix installs it), labelled by guest id, name and role", () => {
    const node = jobs.get("node")!;
    expect(node.targets[0]).toEqual({ address: "10.0.0.13:9100", labels: { guest: "host", name: "phoenix", role: "host" } });
    // Containers through pct exec; the Portainer VMs through their guest agent (components/observability/vm-agents.ts).
    expect(node.targets.map((t) => t.labels.guest).slice(1)).toEqual(prod.guests.filter((g) => g.kind === "lxc" || g.role?.type === "portainer-server" || g.role?.type === "portainer-agent").map((g) => String(g.vmid)));
    expect(node.targets.find((t) => t.labels.guest === "1002")).toEqual({ address: "10.0.0.102:9100", labels: { guest: "1002", name: "drphoenix", role: "portainer-agent" } });
    expect(node.targets.find((t) => t.labels.guest === "802")).toEqual({ address: "10.0.0.142:9100", labels: { guest: "802", name: "vllm-chat", role: "model-server" } });
  });

  it("scrape vLLM and llama.cpp on their API ports, the GPU exporter on the host for lxc-shared GPUs, and Traefik", () => {
    expect(jobs.get("model-servers")!.targets.map((t) => `${t.address} ${t.labels.engine}`)).toEqual(["10.0.0.141:8000 vllm", "10.0.0.142:8000 vllm", "10.0.0.157:8080 llamacpp"]);
    expect(jobs.get("gpu")!.targets.map((t) => t.address)).toEqual(["10.0.0.13:9835"]);
    expect(jobs.get("traefik")!.targets.map((t) => t.address)).toEqual(["10.0.0.12:8080"]);
  });

  it("scrape vrooli's GPU VM for node_exporter and the GPU exporter Phoenix installs after its driver, a configuration promtool accepts", () => {
    const vrooli = loadStack("Pulumi.vrooli.yaml");
    const byJob = new Map(scrapeJobs(vrooli).map((j) => [j.job, j]));
    const hq = { guest: "110", name: "plan-hq", role: "compose-host" };
    expect(byJob.get("node")!.targets).toContainEqual({ address: "10.20.0.110:9100", labels: hq });
    expect(byJob.get("gpu")!.targets).toEqual([{ address: "10.20.0.110:9835", labels: hq }]);
    const r = run("promtool", ["check", "config", layPrometheusFiles(vrooli, tempDir("obs-promtool-vrooli"))]);
    expect(r.status, r.out).toBe(0);
  });

  it("probe Ollama, which serves no metrics, by a GET of its /api/version through the local blackbox_exporter, and alert when it fails", () => {
    const probe = jobs.get("model-servers-probe")!;
    expect(probe.probe).toEqual({ exporter: "127.0.0.1:9115", module: "http_api" });
    expect(probe.targets).toEqual([{ address: "http://10.0.0.155:11434/api/version", labels: { guest: "914", name: "ollama", role: "model-server", engine: "ollama" } }]);
    expect(jobs.get("model-servers")!.targets.some((t) => t.labels.engine === "ollama")).toBe(false);
    const doc = parse(files.get(OBS_PATHS.prometheusConfig)!) as { scrape_configs: { job_name: string; metrics_path?: string; params?: unknown }[] };
    expect(doc.scrape_configs.find((j) => j.job_name === "model-servers-probe")).toMatchObject({ metrics_path: "/probe", params: { module: ["http_api"] } });
    const down = alertRules(observabilityRole(prod)).find((r) => r.alert === "ModelServerDown")!;
    expect(down.expr).toContain(`probe_success{job="model-servers-probe"} == 0`);
  });

  it("probe every TLS endpoint by the name its certificate carries, through the local blackbox_exporter", () => {
    const tls = jobs.get("tls")!;
    expect(tls.probe).toEqual({ exporter: "127.0.0.1:9115", module: "tls_certificate" });
    expect(tls.targets.map((t) => `${t.address} ${t.labels.name}`)).toEqual([
      "internal.thinkheads.ai:443 nginx-gateway",
      "portainer.internal.thinkheads.ai:443 nginx-gateway",
      "grafana.internal.thinkheads.ai:443 nginx-gateway",
      "ca.internal.thinkheads.ai:9000 step-ca",
      "vm-1001.internal.thinkheads.ai:9443 portainer",
    ]);
    const doc = parse(files.get(OBS_PATHS.prometheusConfig)!) as { scrape_configs: { job_name: string; metrics_path?: string; params?: unknown; relabel_configs?: unknown[] }[] };
    const job = doc.scrape_configs.find((j) => j.job_name === "tls")!;
    expect(job).toMatchObject({ metrics_path: "/probe", params: { module: ["tls_certificate"] } });
    expect(job.relabel_configs).toHaveLength(3);
    // The ops guest resolves each name where its certificate is served.
    expect(renderObservabilityInstallScript(prod, inputs)).toContain("'10.0.0.153 internal.thinkheads.ai portainer.internal.thinkheads.ai grafana.internal.thinkheads.ai' '10.0.0.10 ca.internal.thinkheads.ai' '10.0.0.111 vm-1001.internal.thinkheads.ai'");
  });

  it("reach every model server it scrapes through that guest's firewall", () => {
    const ops = prod.guests.find((g) => g.role?.type === "observability")!;
    const opsIp = ops.network.ip.split("/")[0];
    for (const t of jobs.get("model-servers")!.targets) {
      const guest = prod.guests.find((g) => String(g.vmid) === t.labels.guest)!;
      const port = t.address.split(":")[1];
      // The ACCEPT is derived (stacks/firewall-rules.ts scrapeRules); the doctor's model walks the same chain.
      expect(admits(prod, guest, Number(port), opsIp!).verdict, `${guest.name} lets ${opsIp} reach ${port}`).toBe("admitted");
    }
  });
});

describe("the role's configuration", () => {
  it("puts the declared thresholds in the rules", () => {
    const raw = prodWith((guests) => {
      const ops = guests[opsIndex(guests)]!;
      ops.role = { type: "observability", alerts: { zfsCapacityPercent: 71, gpuTemperatureCelsius: 77 } };
    });
    const rules = parse(renderObservabilityFiles(configOf(raw), inputs).find((f) => f.path === OBS_PATHS.rules)!.content) as { groups: { rules: { alert: string; expr: string }[] }[] };
    const expr = (name: string) => rules.groups[0]!.rules.find((r) => r.alert === name)!.expr;
    expect(expr("ZfsCapacity")).toMatch(/> 71$/);
    expect(expr("GpuTemperatureHigh")).toBe("nvidia_smi_temperature_gpu > 77");
    // Unset thresholds keep their defaults.
    expect(expr("HostMemoryPressure")).toMatch(/< 10$/);
  });

  it("is refused, with the path, without a data mount, as a second ops guest, or on DHCP", () => {
    const issues = (edit: (guests: Record<string, unknown>[]) => void) => {
      const r = validateStack(prodWith(edit), { requireSecrets: false });
      return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
    };
    const noMount = issues((guests) => {
      guests[opsIndex(guests)]!.mounts = [];
    });
    expect(noMount.some((i) => /^guests\[\d+\]\.role\.dataDir: .*mount a dataset read-write at \/var\/lib\/phoenix-observability/.test(i)), noMount.join("\n")).toBe(true);
    const second = issues((guests) => {
      const copy = structuredClone(guests[opsIndex(guests)]!);
      guests.push({ ...copy, vmid: 105, name: "ops2", network: { ip: "10.0.0.15/24" } });
    });
    expect(second.some((i) => /^guests\[\d+\]\.role\.type: .*is already the observability/.test(i)), second.join("\n")).toBe(true);
    const dhcp = issues((guests) => {
      guests[opsIndex(guests)]!.network = { ip: "dhcp" };
    });
    expect(dhcp.some((i) => /^guests\[\d+\]\.network\.ip: .*static address/.test(i)), dhcp.join("\n")).toBe(true);
  });
});
