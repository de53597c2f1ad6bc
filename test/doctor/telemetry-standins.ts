/**
 * Stand-ins for the ops guest's Prometheus and Loki HTTP APIs, answering the
 * queries the doctor makes (scripts/doctor/telemetry.ts) in the shapes the
 * real ones do: Prometheus v3.5 /api/v1/query (a vector of {metric, value:
 * [seconds, "value"]}), Loki v3.6 /loki/api/v1/query_range (streams of
 * {stream, values: [["<ns>", line]]}). They refuse requests the real APIs
 * would refuse for what the doctor relies on (a missing query, times that are
 * not numbers) and record every query.
 */
import * as http from "node:http";

export interface Target {
  guest: string;
  job: string;
  instance: string;
  up: 0 | 1;
  samples: number;
  /** Unix seconds of the last scrape. */
  at: number;
}

export interface LogLine {
  labels: Record<string, string>;
  /** Unix nanoseconds. */
  ns: bigint;
  line: string;
}

export interface TelemetryStandIns {
  prometheus: http.Server;
  loki: http.Server;
  targets: Target[];
  lines: LogLine[];
  queries: string[];
  reset(): void;
}

/** The label matchers of a selector {a="x", b="y"}: only equality, which is all the doctor writes. */
function matchers(selector: string): Record<string, string> | undefined {
  const body = /^\{(.*)\}$/.exec(selector)?.[1];
  if (body === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const part of body.split(/,\s*/).filter((p) => p !== "")) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)=("(?:[^"\\]|\\.)*")$/.exec(part);
    if (!m) return undefined;
    out[m[1]!] = JSON.parse(m[2]!) as string;
  }
  return out;
}

const send = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

export function telemetryStandIns(): TelemetryStandIns {
  const state: TelemetryStandIns = {
    targets: [],
    lines: [],
    queries: [],
    reset() {
      state.targets = [];
      state.lines = [];
      state.queries = [];
    },
  } as unknown as TelemetryStandIns;

  state.prometheus = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const query = url.searchParams.get("query");
    if (url.pathname !== "/api/v1/query") return send(res, 404, { status: "error", error: "not found" });
    if (!query || Number.isNaN(Number(url.searchParams.get("time") ?? "0"))) return send(res, 400, { status: "error", errorType: "bad_data", error: "invalid parameter" });
    state.queries.push(`prometheus ${query}`);
    const m = /^(up|scrape_samples_scraped|timestamp\(up)(\{[^}]*\})\)?$/.exec(query);
    const sel = m ? matchers(m[2]!) : undefined;
    if (!m || !sel) return send(res, 400, { status: "error", errorType: "bad_data", error: `the stand-in does not know ${query}` });
    const now = Number(url.searchParams.get("time") ?? Date.now() / 1000);
    const result = state.targets
      .filter((t) => Object.entries(sel).every(([k, v]) => (t as unknown as Record<string, string>)[k] === v))
      .map((t) => {
        const value = m[1] === "up" ? t.up : m[1] === "scrape_samples_scraped" ? t.samples : t.at;
        // timestamp() drops the metric name; the others keep it.
        const metric = { ...(m[1] === "timestamp(up" ? {} : { __name__: m[1]! }), guest: t.guest, job: t.job, instance: t.instance };
        return { metric, value: [now, String(value)] };
      });
    send(res, 200, { status: "success", data: { resultType: "vector", result } });
  });

  state.loki = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/loki/api/v1/query_range") return send(res, 404, { status: "error" });
    const query = url.searchParams.get("query") ?? "";
    const sel = matchers(query);
    const [start, end] = [url.searchParams.get("start"), url.searchParams.get("end")];
    if (!sel || !start || !end || !/^\d+$/.test(start) || !/^\d+$/.test(end)) return send(res, 400, { status: "error", error: "invalid query or time range" });
    state.queries.push(`loki ${query}`);
    const limit = Number(url.searchParams.get("limit") ?? "100");
    const backward = (url.searchParams.get("direction") ?? "backward") === "backward";
    const hits = state.lines
      .filter((l) => l.ns >= BigInt(start) && l.ns <= BigInt(end) && Object.entries(sel).every(([k, v]) => l.labels[k] === v))
      .sort((a, b) => (a.ns < b.ns ? -1 : 1) * (backward ? -1 : 1))
      .slice(0, limit);
    const streams = new Map<string, { stream: Record<string, string>; values: [string, string][] }>();
    for (const h of hits) {
      const key = JSON.stringify(h.labels);
      if (!streams.has(key)) streams.set(key, { stream: h.labels, values: [] });
      streams.get(key)!.values.push([String(h.ns), h.line]);
    }
    send(res, 200, { status: "success", data: { resultType: "streams", result: [...streams.values()] } });
  });
  return state;
}
