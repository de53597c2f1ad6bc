/**
 * The ops guest's configuration, derived from the stack: Prometheus' scrape
 * jobs (node_exporter on the host and every guest, the GPU exporter where the
 * driver is, the model servers' own /metrics, Traefik), the alert rules with
 * the thresholds the role declares, and Alertmanager's routing. Pure: typed
 * config in, YAML out, every value quoted by the YAML library.
 */
import { stringify } from "yaml";
import { guestAddress } from "../../stacks/plan";
import type { Guest, StackConfig } from "../../stacks/schema";
import type { HostsEntry } from "../render/hosts";
import { caDnsNames, gatewayHost, guestIp, guestOfRole, ownCertificateName } from "../../stacks/routing";
import { machineLabels, scrapePoints } from "../../stacks/scrape";
import { observabilityRole, type ObservabilityRole } from "./releases";

export const OBS_PATHS = {
  prometheusConfig: "/etc/prometheus/prometheus.yml",
  /** Relative to prometheus.yml's folder, which Prometheus resolves rule_files against. */
  rulesGlob: "rules/*.yml",
  rules: "/etc/prometheus/rules/phoenix.yml",
  alertmanagerConfig: "/etc/alertmanager/alertmanager.yml",
  blackboxConfig: "/etc/blackbox_exporter/blackbox.yml",
  /** The Step-CA root, which the TLS probes verify every endpoint's chain against. */
  caRoot: "/etc/blackbox_exporter/step-ca-root.pem",
} as const;

/** The blackbox module that opens a TLS connection and reports the certificate chain's expiry. */
const TLS_MODULE = "tls_certificate";
/** The blackbox module that GETs a plain-HTTP API path (a ScrapePoint's httpProbePath) and wants a 2xx JSON answer. */
const HTTP_MODULE = "http_api";

/** One target of a scrape job, with the labels that say which machine it is. */
export interface ScrapeTarget {
  address: string;
  labels: Record<string, string>;
}

export interface ScrapeJob {
  job: string;
  metricsPath?: string;
  /** URL parameters of every scrape. */
  params?: Record<string, string[]>;
  /** Targets probed through blackbox_exporter at this address with this module, instead of scraped. */
  probe?: { exporter: string; module: string };
  targets: ScrapeTarget[];
}

/** A TLS endpoint users or guests reach, by the name its certificate carries. */
export interface TlsEndpoint {
  name: string;
  ip: string;
  port: number;
}

/**
 * Every TLS endpoint the ops guest can probe: the gateway's names (its host and
 * every route host) on 443, the CA's names on its port, and the names of guests
 * that hold their own certificate (the Portainer server). Traefik's service
 * hosts are left out: its firewall admits only the gateway and the CA.
 */
export function tlsEndpoints(config: StackConfig): TlsEndpoint[] {
  const out: TlsEndpoint[] = [];
  const gateway = config.guests.find((g) => g.role?.type === "nginx-gateway");
  if (gateway && guestAddress(gateway)) {
    for (const name of new Set([gatewayHost(config), ...config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host]))])) out.push({ name, ip: guestIp(gateway), port: 443 });
  }
  const ca = config.guests.find((g) => g.role?.type === "step-ca");
  if (ca?.role?.type === "step-ca" && guestAddress(ca)) for (const name of caDnsNames(config, ca.role)) out.push({ name, ip: guestIp(ca), port: ca.role.port });
  for (const g of config.guests) {
    const own = ownCertificateName(config, g);
    if (own && g.role?.type === "portainer-server" && guestAddress(g)) out.push({ name: own, ip: guestIp(g), port: g.role.port });
  }
  return out;
}

/** What the ops guest's /etc/hosts must hold so the probes reach each name where its certificate is served. */
export function probeHosts(config: StackConfig): HostsEntry[] {
  const byIp = new Map<string, string[]>();
  for (const e of tlsEndpoints(config)) byIp.set(e.ip, [...new Set([...(byIp.get(e.ip) ?? []), e.name])]);
  return [...byIp].map(([ip, names]) => ({ ip, names }));
}

/** The scrape jobs the stack implies: the ops guest's own services on its loopback, then every exporter stacks/scrape.ts derives, grouped by job. */
export function scrapeJobs(config: StackConfig): ScrapeJob[] {
  const role = observabilityRole(config);
  // The labels that name a machine are its logs' too (stacks/scrape.ts machineLabels).
  const labels = (on: Guest | "host"): Record<string, string> => machineLabels(config, on);
  const local = (port: number) => [{ address: `127.0.0.1:${port}`, labels: labels(guestOfRole(config, "observability")) }];
  const jobs: ScrapeJob[] = [
    { job: "prometheus", targets: local(role.prometheus.port) },
    { job: "alertmanager", targets: local(role.alertmanager.port) },
  ];
  // The points come in job order (node, gpu, model-servers, model-servers-probe, traefik, gateway); the firewall admits the ops guest to each (stacks/firewall-rules.ts).
  for (const p of scrapePoints(config)) {
    const address = p.on === "host" ? `${config.host.address.split("/")[0]}:${p.port}` : `${guestIp(p.on)}:${p.port}`;
    const target: ScrapeTarget = { address, labels: { ...labels(p.on), ...p.labels } };
    // A probed point's target is the URL blackbox_exporter GETs (blackbox_exporter@v0.28.0 prober/http.go:385 adds http:// only when missing).
    if (p.httpProbePath !== undefined) target.address = `http://${target.address}${p.httpProbePath}`;
    const job = jobs.find((j) => j.job === p.job);
    if (job) job.targets.push(target);
    else jobs.push({ job: p.job, ...(p.httpProbePath !== undefined ? { probe: { exporter: `127.0.0.1:${role.blackboxExporter.port}`, module: HTTP_MODULE } } : {}), targets: [target] });
  }
  // prometheus-pve-exporter on this guest asks the PVE API (prometheus-pve-exporter@v3.10.0 src/pve_exporter/http.py: /pve?module=&target=&cluster=&node=).
  jobs.push({ job: "pve", metricsPath: "/pve", params: { module: ["default"], target: [new URL(config.proxmox.endpoint).hostname], cluster: ["1"], node: ["1"] }, targets: local(role.pveExporter.port) });
  const tls = tlsEndpoints(config);
  if (tls.length > 0) {
    const byIp = new Map(config.guests.flatMap((g) => (guestAddress(g) ? [[guestIp(g), g] as const] : [])));
    jobs.push({ job: "tls", probe: { exporter: `127.0.0.1:${role.blackboxExporter.port}`, module: TLS_MODULE }, targets: tls.map((e) => ({ address: `${e.name}:${e.port}`, labels: labels(byIp.get(e.ip)!) })) });
  }
  return jobs;
}

export interface PrometheusConfigOptions {
  scrapeIntervalSeconds: number;
  alertmanagerPort: number;
  /** external_labels: which machine these series come from. */
  machine: string;
}

/** prometheus.yml for any list of jobs: the guest's, or a test's pointed at local ports. */
export function renderPrometheusYaml(jobs: readonly ScrapeJob[], options: PrometheusConfigOptions): string {
  // One static_configs entry per target, so each carries its own labels.
  const doc = {
    global: { scrape_interval: `${options.scrapeIntervalSeconds}s`, evaluation_interval: `${options.scrapeIntervalSeconds}s`, external_labels: { machine: options.machine } },
    rule_files: [OBS_PATHS.rulesGlob],
    alerting: { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${options.alertmanagerPort}`] }] }] },
    scrape_configs: jobs.map((j) => ({
      job_name: j.job,
      ...(j.metricsPath ? { metrics_path: j.metricsPath } : {}),
      ...(j.params ? { params: j.params } : {}),
      // blackbox_exporter@v0.28.0 README: the target goes in the `target` parameter, the scrape to the exporter.
      ...(j.probe ? { metrics_path: "/probe", params: { module: [j.probe.module] } } : {}),
      static_configs: j.targets.map((t) => ({ targets: [t.address], labels: t.labels })),
      ...(j.probe
        ? {
            relabel_configs: [
              { source_labels: ["__address__"], target_label: "__param_target" },
              { source_labels: ["__param_target"], target_label: "instance" },
              { target_label: "__address__", replacement: j.probe.exporter },
            ],
          }
        : {}),
    })),
  };
  return `# Phoenix: Prometheus configuration. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

export function renderPrometheusConfig(config: StackConfig): string {
  const role = observabilityRole(config);
  return renderPrometheusYaml(scrapeJobs(config), { scrapeIntervalSeconds: role.scrapeIntervalSeconds, alertmanagerPort: role.alertmanager.port, machine: config.host.domain });
}

export interface AlertRule {
  alert: string;
  expr: string;
  forMinutes: number;
  severity: "warning" | "critical";
  summary: string;
}

/**
 * The alert rules, each threshold from role.alerts. Metric names come from the
 * exporters' lists in metrics/ (test/observability/metric-names.test.ts).
 */
export function alertRules(role: ObservabilityRole): AlertRule[] {
  const a = role.alerts;
  const down = a.downForMinutes;
  return [
    { alert: "TargetDown", expr: `up{job!="model-servers"} == 0`, forMinutes: down, severity: "warning", summary: "{{ $labels.job }} on {{ $labels.name }} ({{ $labels.instance }}) does not answer scrapes" },
    // Ollama has no metrics: its probe's probe_success (blackbox_exporter@v0.28.0 prober/handler.go:79) says whether its API answers.
    { alert: "ModelServerDown", expr: `up{job="model-servers"} == 0 or probe_success{job="model-servers-probe"} == 0`, forMinutes: down, severity: "critical", summary: "model server {{ $labels.name }} ({{ $labels.engine }}) does not answer on {{ $labels.instance }}" },
    // node_exporter@v1.12.1 collector/zfs_linux.go:48: one series per state, 1 for the pool's current one.
    { alert: "ZfsPoolNotOnline", expr: `node_zfs_zpool_state{state!="online"} == 1`, forMinutes: 1, severity: "critical", summary: "ZFS pool {{ $labels.zpool }} is {{ $labels.state }}" },
    // A dataset's size is its used plus the space left to it, so this is the pool's fill for datasets without a quota.
    {
      alert: "ZfsCapacity",
      expr: `100 * (1 - node_filesystem_avail_bytes{fstype="zfs"} / node_filesystem_size_bytes{fstype="zfs"}) > ${a.zfsCapacityPercent}`,
      forMinutes: 15,
      severity: "warning",
      summary: `ZFS dataset {{ $labels.device }} on {{ $labels.name }} is more than ${a.zfsCapacityPercent}% full`,
    },
    {
      alert: "HostMemoryPressure",
      expr: `100 * node_memory_MemAvailable_bytes{guest="host"} / node_memory_MemTotal_bytes{guest="host"} < ${a.hostMemoryAvailablePercent}`,
      forMinutes: 10,
      severity: "warning",
      summary: `the host has less than ${a.hostMemoryAvailablePercent}% of its memory available (ZFS ARC included in use)`,
    },
    { alert: "GpuTemperatureHigh", expr: `nvidia_smi_temperature_gpu > ${a.gpuTemperatureCelsius}`, forMinutes: 5, severity: "warning", summary: `GPU {{ $labels.uuid }} is above ${a.gpuTemperatureCelsius} °C` },
    {
      alert: "GpuMemoryHigh",
      expr: `100 * nvidia_smi_memory_used_bytes / nvidia_smi_memory_total_bytes > ${a.gpuMemoryPercent}`,
      forMinutes: 15,
      severity: "warning",
      summary: `GPU {{ $labels.uuid }} has more than ${a.gpuMemoryPercent}% of its memory in use`,
    },
    { alert: "ModelQueueBacklog", expr: `vllm:num_requests_waiting > ${a.modelQueueDepth}`, forMinutes: 5, severity: "warning", summary: `more than ${a.modelQueueDepth} requests wait at {{ $labels.name }}` },
    {
      alert: "CertificateExpiring",
      expr: `probe_ssl_earliest_cert_expiry{job="tls"} - time() < ${a.certificateExpiryHours} * 3600`,
      forMinutes: 5,
      severity: "critical",
      summary: `the certificate of {{ $labels.instance }} expires in less than ${a.certificateExpiryHours} hours: its renewal is failing`,
    },
    { alert: "TlsEndpointFailing", expr: `probe_success{job="tls"} == 0`, forMinutes: down, severity: "warning", summary: "TLS to {{ $labels.instance }} fails (refused, or a certificate the CA root does not verify)" },
    // Traefik's service metrics (traefik@v3.5.3 pkg/metrics/prometheus.go): the gateway sends every route to Traefik, which answers 502-504 when the backend is down.
    {
      alert: "RouteBackendFailing",
      expr: `100 * sum by (service) (rate(traefik_service_requests_total{code=~"502|503|504"}[5m])) / sum by (service) (rate(traefik_service_requests_total[5m])) > ${a.routeErrorPercent}`,
      forMinutes: down,
      severity: "critical",
      summary: `more than ${a.routeErrorPercent}% of the requests to {{ $labels.service }} fail with 502-504: its backend is down`,
    },
    { alert: "GatewayDown", expr: `nginx_up == 0`, forMinutes: down, severity: "critical", summary: "nginx on the gateway {{ $labels.name }} does not answer its stub_status" },
    // ARC pressure: the ARC throttles allocations when memory runs short (node_exporter@v1.12.1 collector/zfs_linux.go, arcstats memory_throttle_count).
    { alert: "ZfsArcMemoryThrottle", expr: `increase(node_zfs_arc_memory_throttle_count{guest="host"}[15m]) > 0`, forMinutes: 0, severity: "warning", summary: "the ZFS ARC on {{ $labels.name }} is throttling for lack of memory" },
    // Phoenix's textfile metrics on the host (exporters.render.ts renderHostTextfileScript).
    { alert: "NvidiaModuleMissing", expr: `phoenix_nvidia_kernels_without_module > 0`, forMinutes: 0, severity: "critical", summary: "{{ $value }} installed kernel(s) have no NVIDIA DKMS module: rebooting into one leaves the GPUs without a driver" },
    { alert: "GpuXidErrors", expr: `increase(phoenix_nvidia_xid_errors[10m]) > 0`, forMinutes: 0, severity: "warning", summary: "NVIDIA Xid errors in the host's kernel log (journalctl -k | grep Xid)" },
    { alert: "BackupFailed", expr: `phoenix_backup_last_task_failed == 1`, forMinutes: 0, severity: "critical", summary: "the last vzdump backup task on {{ $labels.name }} failed" },
    { alert: "GuestNotBackedUp", expr: `pve_not_backed_up_total > 0`, forMinutes: 60, severity: "warning", summary: "{{ $value }} guest(s) are in no backup job" },
    { alert: "LlamaCppBacklog", expr: `llamacpp:requests_deferred > ${a.modelQueueDepth}`, forMinutes: 5, severity: "warning", summary: `more than ${a.modelQueueDepth} requests are deferred at {{ $labels.name }}` },
  ];
}

export function renderRulesYaml(rules: readonly AlertRule[]): string {
  const doc = {
    groups: [
      {
        name: "phoenix",
        rules: rules.map((r) => ({ alert: r.alert, expr: r.expr, for: `${r.forMinutes}m`, labels: { severity: r.severity }, annotations: { summary: r.summary } })),
      },
    ],
  };
  return `# Phoenix: alert rules, thresholds from the stack's observability role. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

/**
 * blackbox_exporter's modules: a TLS handshake verified against the Step-CA root, the server name taken from the target;
 * and an HTTP GET of an API path that must answer 2xx with a JSON object (Ollama's /api/version: {"version":"…"}).
 */
export function renderBlackboxYaml(): string {
  // blackbox_exporter@v0.28.0 example.yml (tcp.tls, http_2xx_example) and prober/tcp.go:72-80 (ServerName defaults to the target's host);
  // prober/http.go:591-603: no valid_status_codes means any 2xx.
  const doc = {
    modules: {
      [TLS_MODULE]: { prober: "tcp", timeout: "5s", tcp: { tls: true, tls_config: { ca_file: OBS_PATHS.caRoot } } },
      [HTTP_MODULE]: { prober: "http", timeout: "5s", http: { method: "GET", fail_if_body_not_matches_regexp: ["^\\{"] } },
    },
  };
  return `# Phoenix: blackbox_exporter modules. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

/**
 * Alertmanager groups alerts per alert and machine and shows them in its UI;
 * a critical alert silences the warnings of the same instance. No receiver
 * sends anything yet (a webhook would be a secret: webhook_configs' url_file).
 */
export function renderAlertmanagerYaml(): string {
  const doc = {
    route: { receiver: "phoenix", group_by: ["alertname", "name"], group_wait: "30s", group_interval: "5m", repeat_interval: "4h" },
    receivers: [{ name: "phoenix" }],
    inhibit_rules: [{ source_matchers: ['severity="critical"'], target_matchers: ['severity="warning"'], equal: ["instance"] }],
  };
  return `# Phoenix: Alertmanager configuration. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}
