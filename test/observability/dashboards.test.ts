/**
 * Phoenix's dashboards: promtool parses every PromQL query (as recording rules
 * in a generated rules file), every metric name a query reads is in one of the
 * exporters' lists (components/observability/metrics/*.txt, whichever exist),
 * and the log panels select only labels Alloy sets.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { DASHBOARDS, dashboardJson, type Dashboard } from "../../components/observability/dashboards/dashboards";
import { ROOT, tempDir } from "../support";
import { metricNamesIn } from "./helpers";

const METRICS_DIR = path.join(ROOT, "components", "observability", "metrics");

/** Every exporter list beside the exporters, whoever added it. */
function allMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const f of fs.readdirSync(METRICS_DIR).filter((n) => n.endsWith(".txt"))) {
    for (const l of fs.readFileSync(path.join(METRICS_DIR, f), "utf8").split("\n")) if (l.trim() !== "" && !l.startsWith("#")) names.add(l.trim());
  }
  return names;
}

interface DashboardQuery {
  where: string;
  expr: string;
}

function promqlQueries(ds: readonly Dashboard[]): DashboardQuery[] {
  return ds.flatMap((d) => d.panels.filter((p) => p.type !== "logs").flatMap((p) => p.queries.map((q) => ({ where: `${d.uid} / ${p.title}`, expr: q.expr }))));
}

/** Grafana's variables replaced by what they stand for at query time, so promtool can parse the query. */
const concrete = (expr: string) => expr.replaceAll("$__rate_interval", "5m");

/** promtool check rules on one recording rule per query: exit status and output. */
function promtoolParse(queries: DashboardQuery[]): { status: number | null; out: string } {
  const dir = tempDir("dash-promql");
  const file = path.join(dir, "dashboards.yml");
  fs.writeFileSync(file, stringify({ groups: [{ name: "dashboards", rules: queries.map((q, i) => ({ record: `phoenix:dashboard_query_${i}`, expr: concrete(q.expr) })) }] }));
  const r = spawnSync("promtool", ["check", "rules", file], { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe("the dashboards", () => {
  const queries = promqlQueries(DASHBOARDS);

  it("cover the machine, the model servers and the gateway", () => {
    expect(DASHBOARDS.map((d) => d.uid)).toEqual(["phoenix-machine", "phoenix-models", "phoenix-gateway"]);
    expect(queries.length).toBeGreaterThan(20);
  });

  it("hold PromQL that promtool parses, and promtool refuses a broken query", () => {
    const r = promtoolParse(queries);
    expect(r.out).toMatch(new RegExp(`SUCCESS: ${queries.length} rules found`));
    expect(r.status, r.out).toBe(0);
    const broken = promtoolParse([{ where: "broken", expr: "sum by (name (rate(up[5m]))" }]);
    expect(broken.status).not.toBe(0);
  });

  it("read only metric names the pinned exporters export", () => {
    const known = allMetricNames();
    const unknown: string[] = [];
    for (const q of queries) {
      const names = metricNamesIn(concrete(q.expr));
      expect(names.length, `${q.where} reads no metric`).toBeGreaterThan(0);
      for (const n of names) if (!known.has(n)) unknown.push(`${q.where}: ${n}`);
    }
    expect(unknown).toEqual([]);
    // A name from another vLLM version is caught.
    expect(known.has("vllm:gpu_cache_usage_perc")).toBe(false);
    expect(metricNamesIn(concrete(`sum by (name) (rate(vllm:avg_generation_throughput_toks_per_s[$__rate_interval]))`)).filter((n) => !known.has(n))).toEqual(["vllm:avg_generation_throughput_toks_per_s"]);
  });

  it("select log streams only by the labels Alloy sets", () => {
    // alloy.render.ts: guest, name, role in labels; unit and level by relabelling.
    const alloyLabels = new Set(["guest", "name", "role", "unit", "level"]);
    const logs = DASHBOARDS.flatMap((d) => d.panels.filter((p) => p.type === "logs").flatMap((p) => p.queries.map((q) => q.expr)));
    expect(logs.length).toBe(DASHBOARDS.length);
    for (const expr of logs) {
      expect(expr).toMatch(/^\{[^}]+\}$/);
      for (const m of expr.matchAll(/([a-z_]+)\s*(=~|!=|!~|=)/g)) expect(alloyLabels.has(m[1]!), `${expr}: ${m[1]}`).toBe(true);
    }
  });

  it("are valid JSON with a panel per definition, each naming a provisioned datasource", () => {
    for (const d of DASHBOARDS) {
      const json = JSON.parse(dashboardJson(d)) as { uid: string; panels: { datasource: { uid: string }; targets: { expr: string }[]; gridPos: { x: number; w: number } }[] };
      expect(json.uid).toBe(d.uid);
      expect(json.panels).toHaveLength(d.panels.length);
      for (const p of json.panels) {
        expect(["phoenix-prometheus", "phoenix-loki"]).toContain(p.datasource.uid);
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      }
    }
  });
});
