/**
 * Phoenix's Grafana dashboards, as data: the machine at a glance, the model
 * servers and the gateway. Each panel's PromQL reads only metric names kept in
 * the exporters' lists (components/observability/metrics/), which
 * test/observability/dashboards.test.ts checks, after promtool has parsed
 * every query. Labels are the ones the scrape jobs set (config.render.ts:
 * guest, name, role, engine) or the exporters' own.
 */

/** The datasources Grafana is provisioned with (grafana.render.ts), by uid. */
export const DATASOURCE = { prometheus: "phoenix-prometheus", loki: "phoenix-loki", alertmanager: "phoenix-alertmanager" } as const;

export interface Query {
  expr: string;
  legend?: string;
}

export interface Panel {
  title: string;
  /** timeseries and stat read PromQL; logs reads LogQL from Loki. */
  type: "timeseries" | "stat" | "table" | "logs";
  queries: Query[];
  /** Grafana's unit id (percent, bytes, s, reqps, celsius, …). */
  unit?: string;
  /** Columns out of 24. */
  width?: number;
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  panels: Panel[];
}

/** Grafana's own rate window for the panel's resolution; the tests substitute a fixed one before promtool parses. */
const W = "$__rate_interval";

const p95 = (bucket: string, by: string) => `histogram_quantile(0.95, sum by (${by}, le) (rate(${bucket}[${W}])))`;

const machine: Dashboard = {
  uid: "phoenix-machine",
  title: "Phoenix: the machine at a glance",
  description: "The host, its ZFS pools, its GPUs and every guest.",
  panels: [
    { title: "Targets down", type: "stat", queries: [{ expr: "count(up == 0) or vector(0)" }] },
    { title: "Host CPU busy", type: "timeseries", unit: "percent", queries: [{ expr: `100 * (1 - avg(rate(node_cpu_seconds_total{guest="host",mode="idle"}[${W}])))`, legend: "host" }] },
    {
      title: "Host memory available",
      type: "timeseries",
      unit: "percent",
      queries: [{ expr: `100 * node_memory_MemAvailable_bytes{guest="host"} / node_memory_MemTotal_bytes{guest="host"}`, legend: "available" }],
    },
    {
      title: "ZFS ARC",
      type: "timeseries",
      unit: "bytes",
      queries: [
        { expr: `node_zfs_arc_size{guest="host"}`, legend: "size" },
        { expr: `node_zfs_arc_c_max{guest="host"}`, legend: "max" },
      ],
    },
    { title: "ZFS pools not online", type: "table", queries: [{ expr: `node_zfs_zpool_state{state!="online"} == 1`, legend: "{{zpool}} {{state}}" }] },
    {
      title: "ZFS datasets full",
      type: "timeseries",
      unit: "percent",
      queries: [{ expr: `100 * (1 - node_filesystem_avail_bytes{fstype="zfs"} / node_filesystem_size_bytes{fstype="zfs"})`, legend: "{{name}} {{mountpoint}}" }],
    },
    { title: "GPU temperature", type: "timeseries", unit: "celsius", queries: [{ expr: "nvidia_smi_temperature_gpu", legend: "{{name}} {{uuid}}" }] },
    { title: "GPU utilisation", type: "timeseries", unit: "percent", queries: [{ expr: "100 * nvidia_smi_utilization_gpu_ratio", legend: "{{name}} {{uuid}}" }] },
    { title: "GPU memory used", type: "timeseries", unit: "percent", queries: [{ expr: "100 * nvidia_smi_memory_used_bytes / nvidia_smi_memory_total_bytes", legend: "{{name}} {{uuid}}" }] },
    { title: "GPU power", type: "timeseries", unit: "watt", queries: [{ expr: "nvidia_smi_power_draw_watts", legend: "{{name}} {{uuid}}" }] },
    { title: "Guests answering", type: "table", queries: [{ expr: `up{job="node"}`, legend: "{{guest}} {{name}} {{role}}" }] },
    {
      title: "Guest memory available",
      type: "timeseries",
      unit: "percent",
      queries: [{ expr: `100 * node_memory_MemAvailable_bytes{guest!="host"} / node_memory_MemTotal_bytes{guest!="host"}`, legend: "{{guest}} {{name}}" }],
    },
    { title: "Host journal: errors", type: "logs", width: 24, queries: [{ expr: `{guest="host", level=~"emerg|alert|crit|err"}` }] },
  ],
};

const models: Dashboard = {
  uid: "phoenix-models",
  title: "Phoenix: model servers",
  description: "vLLM and llama.cpp: requests, tokens per second, latency, queue and KV-cache use. Ollama serves no metrics: a probe of its API says whether it answers, and how fast.",
  panels: [
    {
      title: "Model servers up",
      type: "table",
      queries: [
        { expr: `up{job="model-servers"}`, legend: "{{name}} ({{engine}})" },
        { expr: `probe_success{job="model-servers-probe"}`, legend: "{{name}} ({{engine}}, API probe)" },
      ],
    },
    { title: "Ollama API probe time", type: "timeseries", unit: "s", queries: [{ expr: `probe_duration_seconds{job="model-servers-probe"}`, legend: "{{name}}" }] },
    { title: "vLLM requests finished", type: "timeseries", unit: "reqps", queries: [{ expr: `sum by (name, finished_reason) (rate(vllm:request_success_total[${W}]))`, legend: "{{name}} {{finished_reason}}" }] },
    {
      title: "Tokens per second",
      type: "timeseries",
      queries: [
        { expr: `sum by (name) (rate(vllm:generation_tokens_total[${W}]))`, legend: "{{name}} generated" },
        { expr: `sum by (name) (rate(vllm:prompt_tokens_total[${W}]))`, legend: "{{name}} prompt" },
        { expr: `sum by (name) (rate(llamacpp:tokens_predicted_total[${W}]))`, legend: "{{name}} generated" },
        { expr: `sum by (name) (rate(llamacpp:prompt_tokens_total[${W}]))`, legend: "{{name}} prompt" },
      ],
    },
    {
      title: "Latency (p95)",
      type: "timeseries",
      unit: "s",
      queries: [
        { expr: p95("vllm:e2e_request_latency_seconds_bucket", "name"), legend: "{{name}} end to end" },
        { expr: p95("vllm:time_to_first_token_seconds_bucket", "name"), legend: "{{name}} first token" },
      ],
    },
    {
      title: "Queue",
      type: "timeseries",
      queries: [
        { expr: "vllm:num_requests_waiting", legend: "{{name}} waiting" },
        { expr: "vllm:num_requests_running", legend: "{{name}} running" },
        { expr: "llamacpp:requests_deferred", legend: "{{name}} deferred" },
        { expr: "llamacpp:requests_processing", legend: "{{name}} processing" },
      ],
    },
    { title: "vLLM KV-cache use", type: "timeseries", unit: "percent", queries: [{ expr: "100 * vllm:kv_cache_usage_perc", legend: "{{name}}" }] },
    { title: "Model server journals", type: "logs", width: 24, queries: [{ expr: `{role="model-server"}` }] },
  ],
};

const gateway: Dashboard = {
  uid: "phoenix-gateway",
  title: "Phoenix: the gateway",
  description: "Every route through nginx and Traefik: status codes, latency, certificates.",
  panels: [
    { title: "Requests by route and status", type: "timeseries", unit: "reqps", queries: [{ expr: `sum by (service, code) (rate(traefik_service_requests_total[${W}]))`, legend: "{{service}} {{code}}" }] },
    {
      title: "Server errors by route",
      type: "timeseries",
      unit: "percent",
      queries: [{ expr: `100 * sum by (service) (rate(traefik_service_requests_total{code=~"5.."}[${W}])) / sum by (service) (rate(traefik_service_requests_total[${W}]))`, legend: "{{service}}" }],
    },
    { title: "Latency by route (p95)", type: "timeseries", unit: "s", queries: [{ expr: p95("traefik_service_request_duration_seconds_bucket", "service"), legend: "{{service}}" }] },
    { title: "Backends up (Traefik)", type: "table", queries: [{ expr: "traefik_service_server_up", legend: "{{service}} {{url}}" }] },
    {
      title: "nginx",
      type: "timeseries",
      queries: [
        { expr: `rate(nginx_http_requests_total[${W}])`, legend: "requests/s" },
        { expr: "nginx_connections_active", legend: "connections" },
      ],
    },
    { title: "Certificate validity left", type: "table", unit: "h", queries: [{ expr: `(probe_ssl_earliest_cert_expiry{job="tls"} - time()) / 3600`, legend: "{{instance}}" }] },
    { title: "Gateway and Traefik journals", type: "logs", width: 24, queries: [{ expr: `{role=~"nginx-gateway|traefik"}` }] },
  ],
};

export const DASHBOARDS: readonly Dashboard[] = [machine, models, gateway];

/**
 * A dashboard in Grafana's JSON model (grafana@v12 docs/sources/dashboards/build-dashboards/view-dashboard-json-model:
 * uid, title, panels with gridPos, datasource {type, uid} and targets with refId). unverified: schemaVersion 39
 * is the one this file is written to; Grafana migrates an older schemaVersion forward when it loads it.
 */
export function dashboardJson(d: Dashboard): string {
  let x = 0;
  let y = 0;
  const panels = d.panels.map((p, i) => {
    const w = p.width ?? 12;
    if (x + w > 24) {
      x = 0;
      y += 8;
    }
    const gridPos = { x, y, w, h: 8 };
    x += w;
    const ds = p.type === "logs" ? { type: "loki", uid: DATASOURCE.loki } : { type: "prometheus", uid: DATASOURCE.prometheus };
    return {
      id: i + 1,
      type: p.type,
      title: p.title,
      gridPos,
      datasource: ds,
      targets: p.queries.map((q, k) => ({ refId: String.fromCharCode(65 + k), datasource: ds, expr: q.expr, ...(q.legend ? { legendFormat: q.legend } : {}) })),
      ...(p.unit ? { fieldConfig: { defaults: { unit: p.unit }, overrides: [] } } : {}),
    };
  });
  const doc = { uid: d.uid, title: d.title, description: d.description, tags: ["phoenix"], editable: false, schemaVersion: 39, time: { from: "now-6h", to: "now" }, refresh: "1m", panels };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
