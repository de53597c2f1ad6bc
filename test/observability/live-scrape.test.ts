/**
 * A real scrape: Debian's prometheus-node-exporter, and Debian's Prometheus
 * running the prod stack's rendered configuration and rules with the node job
 * pointed at that exporter on 127.0.0.1 (every other job left out, so nothing
 * leaves the machine). The metric comes back through the HTTP API with the
 * stack's labels, the rules load, and the node_exporter names the rules read
 * are in the live exporter's output.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alertRules, renderPrometheusYaml, scrapeJobs } from "../../components/observability/config.render";
import { observabilityRole } from "../../components/observability/releases";
import { freePort, tempDir } from "../support";
import { configOf, layPrometheusFiles, metricNamesIn, prodRaw } from "./helpers";

const prod = configOf(prodRaw());
const children: ChildProcess[] = [];
let exporterPort = 0;
let prometheusPort = 0;

function start(cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  child.on("exit", (code) => {
    if (code !== null && code !== 0) console.error(`${cmd} exited ${code}:\n${log}`);
  });
  children.push(child);
  return child;
}

async function until<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${seconds}s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const get = async (port: number, p: string) => {
  const r = await fetch(`http://127.0.0.1:${port}${p}`);
  return r.ok ? r.text() : undefined;
};

beforeAll(async () => {
  exporterPort = await freePort();
  prometheusPort = await freePort();
  start("/usr/bin/prometheus-node-exporter", [`--web.listen-address=127.0.0.1:${exporterPort}`]);
  // The rendered node job, its targets (host first) all pointed at the one local exporter: same labels, local address.
  const node = scrapeJobs(prod).find((j) => j.job === "node")!;
  const local = { ...node, targets: [{ ...node.targets[0]!, address: `127.0.0.1:${exporterPort}` }] };
  const dir = tempDir("obs-live");
  const role = observabilityRole(prod);
  const configFile = layPrometheusFiles(prod, dir, renderPrometheusYaml([local], { scrapeIntervalSeconds: 1, alertmanagerPort: role.alertmanager.port, machine: prod.host.domain }));
  start("/usr/bin/prometheus", [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${prometheusPort}`]);
}, 20_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)));
});

describe("a live scrape with the rendered configuration", () => {
  it("brings node_exporter's metrics back through Prometheus' API with the stack's labels", async () => {
    const query = encodeURIComponent('node_memory_MemAvailable_bytes{job="node",guest="host"}');
    const result = await until("a sample of node_memory_MemAvailable_bytes", 15, async () => {
      const body = await get(prometheusPort, `/api/v1/query?query=${query}`);
      const parsed = body ? (JSON.parse(body) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }) : undefined;
      return parsed && parsed.data.result.length > 0 ? parsed.data.result[0]! : undefined;
    });
    // external_labels (machine) are added only to what leaves Prometheus (alerts, federation, remote write), not to queries.
    expect(result.metric).toMatchObject({ job: "node", guest: "host", name: "phoenix", role: "host" });
    expect(Number(result.value[1])).toBeGreaterThan(0);
  }, 20_000);

  it("loads every rendered alert rule", async () => {
    const body = await until("the rules", 10, () => get(prometheusPort, "/api/v1/rules"));
    const loaded = (JSON.parse(body) as { data: { groups: { rules: { name: string }[] }[] } }).data.groups.flatMap((g) => g.rules.map((r) => r.name));
    expect(loaded).toEqual(alertRules(observabilityRole(prod)).map((r) => r.alert));
  });

  it("finds in the live exporter every node_exporter name the rules read, but for ZFS's (no pool here)", async () => {
    const metrics = await until("node_exporter's /metrics", 10, () => get(exporterPort, "/metrics"));
    const live = new Set([...metrics.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!));
    const read = alertRules(observabilityRole(prod)).flatMap((r) => metricNamesIn(r.expr)).filter((n) => n.startsWith("node_") && !n.startsWith("node_zfs_"));
    expect(read.length).toBeGreaterThan(2);
    expect(read.filter((n) => !live.has(n))).toEqual([]);
  });
});
