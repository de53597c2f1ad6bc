/**
 * The gateway's status page (components/core/nginx/status.js), the first place the doctor looks:
 * one request gives every route's health as Traefik and the gateway see it. The doctor reports
 * from it and probes layer by layer only the services it shows unhealthy (or does not list);
 * when the page cannot be read (not an admin network, the gateway down), it probes everything.
 */
import * as https from "node:https";
import type { X509Certificate } from "node:crypto";
import type { Failure, Finding } from "./diagnose";
import type { Address } from "./plan";

export const STATUS_PAGE_PATH = "/_phoenix/status";

export interface StatusPageRow {
  route: string | null;
  service: string;
  traefik: "UP" | "DOWN" | "unknown";
  servers: Record<string, string>;
  /** null: the gateway does not route to the service. */
  gateway: { status: number | null; ms: number; error?: string } | null;
  ok: boolean;
}

export interface StatusPage {
  generated: string;
  ok: boolean;
  traefikError: string | null;
  routes: StatusPageRow[];
}

export type StatusPageResult = { page: StatusPage } | { error: string };

/** The page's JSON, checked for the shape the doctor reads; anything else is an error naming what is wrong. */
export function parseStatusPage(text: string): StatusPage {
  let page: StatusPage;
  try {
    page = JSON.parse(text) as StatusPage;
  } catch {
    // Not quoted: whatever answered there is not the page, and its text is not the doctor's to print.
    throw new Error("not a status page: the answer is not JSON");
  }
  if (page === null || typeof page !== "object" || !Array.isArray(page.routes)) throw new Error("not a status page: no routes");
  for (const [i, r] of page.routes.entries()) {
    if (typeof r.service !== "string" || !["UP", "DOWN", "unknown"].includes(r.traefik) || typeof r.ok !== "boolean") throw new Error(`not a status page: routes[${i}] has no service, traefik state or ok`);
  }
  return page;
}

/**
 * GET the page over TLS as an admin's browser would: the name clients use as SNI and Host, the
 * CA root when known (otherwise unverified: the gateway checks report the certificate).
 */
export function fetchStatusPage(connect: Address, host: string, caRoot: X509Certificate | undefined, timeoutMs = 15_000): Promise<StatusPageResult> {
  return new Promise((resolve) => {
    const req = https.request(
      { host: connect.host, port: connect.port, servername: host, path: STATUS_PAGE_PATH, headers: { host, accept: "application/json" }, ...(caRoot ? { ca: caRoot.toString() } : { rejectUnauthorized: false }), agent: false, timeout: timeoutMs },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => {
          if (res.statusCode !== 200) return resolve({ error: `HTTP ${res.statusCode}${res.statusCode === 403 ? " (this machine is not in host.adminNetworks)" : ""}` });
          try {
            resolve({ page: parseStatusPage(body) });
          } catch (e) {
            resolve({ error: e instanceof Error ? e.message : String(e) });
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err) => resolve({ error: err.message }));
    req.end();
  });
}

const downStatus = (s: number) => s === 502 || s === 503 || s === 504;

/** Each row as findings: Traefik's view at the traefik layer, the gateway's at the gateway layer. */
export function statusPageFindings(page: StatusPage): Finding[] {
  return page.routes.flatMap((row): Finding[] => {
    const where = row.route ?? "(no gateway route)";
    const servers = Object.entries(row.servers ?? {}).map(([url, s]) => `${url} ${s}`).join(", ") || "no servers reported";
    const traefik: Finding =
      row.traefik === "UP"
        ? { service: row.service, layer: "traefik", check: "status page", status: "ok", detail: `Traefik: ${servers}` }
        : row.traefik === "DOWN"
          ? { service: row.service, layer: "traefik", check: "status page", status: "fail", failure: "backend-down", detail: `Traefik's health check: ${servers}` }
          : { service: row.service, layer: "traefik", check: "status page", status: "warn", detail: `Traefik reports no state${page.traefikError ? ` (${page.traefikError})` : ""}` };
    if (row.gateway === null) return [traefik];
    const g = row.gateway;
    let gateway: Finding;
    if (g.status === null) gateway = { service: row.service, layer: "gateway", check: "status page", status: "fail", failure: "probe-error", detail: `${where}: ${g.error ?? "no answer"} after ${g.ms} ms` };
    else if (g.status >= 200 && g.status < 400) gateway = { service: row.service, layer: "gateway", check: "status page", status: "ok", detail: `${where}: HTTP ${g.status} in ${g.ms} ms` };
    else {
      const failure: Failure = downStatus(g.status) ? "backend-down" : g.status === 404 ? "route-missing" : "unhealthy";
      gateway = { service: row.service, layer: "gateway", check: "status page", status: "fail", failure, detail: `${where}: HTTP ${g.status} in ${g.ms} ms` };
    }
    return [traefik, gateway];
  });
}

/** The services the page shows healthy: the doctor need not probe them layer by layer. */
export function healthyOnPage(page: StatusPage): Set<string> {
  const bad = new Set(page.routes.filter((r) => !r.ok).map((r) => r.service));
  return new Set(page.routes.map((r) => r.service).filter((s) => !bad.has(s)));
}
