/**
 * What the ops guest saw of a failing backend, when the stack has one: the last
 * scrape of every target on the backend's guest from Prometheus (up, samples,
 * when), and the unit's recent journal lines from Loki, so a route failing at
 * the gateway shows whether its backend stopped answering scrapes, and why.
 * Read over the HTTP APIs from the machine running the doctor, which the ops
 * guest's firewall admits from the admin networks.
 */
import { CONTROL_CHARS } from "../../stacks/patterns";
import { guestIp } from "../../stacks/routing";
import type { StackConfig } from "../../stacks/schema";
import type { Address, ServiceContext } from "./plan";

export interface TelemetrySource {
  prometheus: Address;
  loki: Address;
}

/** Where Prometheus and Loki answer, or undefined when the stack has no ops guest (or it uses DHCP). */
export function telemetrySource(config: StackConfig): TelemetrySource | undefined {
  const ops = config.guests.find((g) => g.role?.type === "observability");
  if (ops?.role?.type !== "observability" || ops.network.ip === undefined || ops.network.ip === "dhcp") return undefined;
  const host = guestIp(ops);
  return { prometheus: { host, port: ops.role.prometheus.port }, loki: { host, port: ops.role.loki.port } };
}

export interface ScrapeState {
  job: string;
  instance: string;
  up: boolean;
  samples?: number;
  /** When Prometheus last scraped the target (ISO time). */
  lastScrape?: string;
}

export interface Telemetry {
  scrapes: ScrapeState[];
  /** The unit whose journal `logs` holds; without one, the whole guest's. */
  unit?: string;
  /** The unit's (or, without one, the guest's) newest journal lines, oldest first. */
  logs: string[];
  /** What could not be read (Prometheus or Loki down): reported, never a failure of the doctor. */
  errors: string[];
}

export interface TelemetryOptions {
  resolve: (a: Address) => Address;
  now: Date;
  /** How many journal lines; 20 unless said. */
  lines?: number;
  timeoutMs?: number;
}

/** A label value as a PromQL/LogQL string literal (both take Go's escapes, which JSON's are a subset of). */
const literal = (v: string) => JSON.stringify(v);

/** A journal line made safe for a terminal: control characters shown, never interpreted. */
const printable = (line: string) => line.replace(/\n/g, "\\n").replace(new RegExp(CONTROL_CHARS.source, "g"), "\uFFFD");

interface PromVector {
  status: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
  error?: string;
}

interface LokiStreams {
  status: string;
  data?: { resultType: string; result: { stream: Record<string, string>; values: [string, string, ...unknown[]][] }[] };
}

async function getJson<T>(to: Address, path: string, params: Record<string, string>, timeoutMs: number): Promise<T> {
  const url = `http://${to.host}:${to.port}${path}?${new URLSearchParams(params).toString()}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/**
 * prometheus@v3.5.5 web/api/v1/api.go: GET /api/v1/query?query=…&time=… answers
 * {"status":"success","data":{"resultType":"vector","result":[{"metric":{…},"value":[<unix seconds>,"<value>"]}]}}
 * (json_codec.go, marshalSampleJSON). timestamp(up) is the time of the last scrape.
 */
async function promQuery(source: TelemetrySource, opts: TelemetryOptions, query: string): Promise<Map<string, number>> {
  const body = await getJson<PromVector>(opts.resolve(source.prometheus), "/api/v1/query", { query, time: String(opts.now.getTime() / 1000) }, opts.timeoutMs ?? 5000);
  if (body.status !== "success" || body.data?.resultType !== "vector") throw new Error(`Prometheus: ${body.error ?? "no vector in the answer"}`);
  return new Map(body.data.result.map((r) => [`${r.metric.job ?? ""} ${r.metric.instance ?? ""}`, Number(r.value[1])]));
}

async function lastScrapes(ctx: ServiceContext, source: TelemetrySource, opts: TelemetryOptions): Promise<ScrapeState[]> {
  const sel = `{guest=${literal(String(ctx.guest.vmid))}}`;
  const [up, samples, at] = await Promise.all([promQuery(source, opts, `up${sel}`), promQuery(source, opts, `scrape_samples_scraped${sel}`), promQuery(source, opts, `timestamp(up${sel})`)]);
  return [...up]
    .map(([key, value]): ScrapeState => {
      const [job, instance] = key.split(" ") as [string, string];
      const t = at.get(key);
      return { job, instance, up: value === 1, ...(samples.has(key) ? { samples: samples.get(key)! } : {}), ...(t !== undefined ? { lastScrape: new Date(t * 1000).toISOString() } : {}) };
    })
    .sort((a, b) => `${a.job} ${a.instance}`.localeCompare(`${b.job} ${b.instance}`));
}

/**
 * loki@v3.6.15 pkg/loki/modules.go: GET /loki/api/v1/query_range; pkg/loghttp/params.go: query, limit,
 * start, end (Unix nanoseconds), direction; pkg/loghttp/query.go: {"status","data":{"resultType":"streams",
 * "result":[{"stream":{…},"values":[["<ns>","<line>"],…]}]}}. Labels are the ones Alloy sets (alloy.render.ts).
 */
async function recentLines(ctx: ServiceContext, source: TelemetrySource, opts: TelemetryOptions): Promise<string[]> {
  const limit = opts.lines ?? 20;
  const selector = `{guest=${literal(String(ctx.guest.vmid))}${ctx.unit ? `, unit=${literal(ctx.unit)}` : ""}}`;
  const end = BigInt(opts.now.getTime()) * 1_000_000n;
  const start = end - 3_600_000_000_000n;
  const body = await getJson<LokiStreams>(opts.resolve(source.loki), "/loki/api/v1/query_range", { query: selector, limit: String(limit), start: String(start), end: String(end), direction: "backward" }, opts.timeoutMs ?? 5000);
  if (body.status !== "success" || body.data?.resultType !== "streams") throw new Error("Loki: no streams in the answer");
  const entries = body.data.result.flatMap((s) => s.values.map(([ns, line]) => ({ ns: BigInt(ns), line })));
  entries.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
  return entries.slice(-limit).map((e) => `${new Date(Number(e.ns / 1_000_000n)).toISOString()} ${printable(e.line)}`);
}

export async function backendTelemetry(ctx: ServiceContext, source: TelemetrySource, opts: TelemetryOptions): Promise<Telemetry> {
  const errors: string[] = [];
  const reason = (what: string, e: unknown) => `${what}: ${e instanceof Error ? e.message : String(e)}`;
  const [scrapes, logs] = await Promise.all([
    lastScrapes(ctx, source, opts).catch((e: unknown) => (errors.push(reason(`Prometheus at ${source.prometheus.host}:${source.prometheus.port}`, e)), [])),
    recentLines(ctx, source, opts).catch((e: unknown) => (errors.push(reason(`Loki at ${source.loki.host}:${source.loki.port}`, e)), [])),
  ]);
  return { scrapes, ...(ctx.unit ? { unit: ctx.unit } : {}), logs, errors };
}

/** The lines the table prints under a diagnosis. */
export function renderTelemetry(t: Telemetry): string[] {
  const out: string[] = [];
  if (t.scrapes.length > 0) {
    out.push("  last scrapes (Prometheus):");
    for (const s of t.scrapes) out.push(`    ${s.job} ${s.instance}: ${s.up ? "up" : "DOWN"}${s.samples !== undefined ? `, ${s.samples} samples` : ""}${s.lastScrape ? `, at ${s.lastScrape}` : ""}`);
  }
  if (t.logs.length > 0) out.push(`  recent journal${t.unit ? ` of ${t.unit}` : ""} (Loki):`, ...t.logs.map((l) => `    ${l}`));
  for (const e of t.errors) out.push(`  (not read: ${e})`);
  return out;
}
