/**
 * The gateway's failure limits and status page in a real nginx with njs, in front of a stand-in
 * Traefik whose HTTPS entry point can answer, answer 503 (every server DOWN), stay silent or be
 * gone, and whose API lists the services with their servers' states.
 * One upstream server (Traefik) means nginx itself cannot fail over: what the gateway owes is a
 * fast, documented answer while Traefik or the backend is down, and 200 again once it is back.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONNECT_TIMEOUT_SECONDS, renderGatewayConfig, STATUS_PATH, type GatewayLayout } from "../../components/core/nginx.render";
import { TRAEFIK_SERVICES_API } from "../../components/core/traefik.render";
import { readStackFile, validateStack } from "../../stacks/load";
import { backends } from "../../stacks/routing";
import type { StackConfig } from "../../stacks/schema";
import { httpsReply, testGatewayLayout, type Reply, ROOT, startNginx, tempDir, testPki, writeFiles } from "./helpers";

/** The prod stack with the admin networks given; API keys off, which item 19's own tests cover. */
function prodWith(adminNetworks: string[]): StackConfig {
  const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
  const values = raw.values as Record<string, unknown> & { host: { adminNetworks: string[] }; guests: { role?: Record<string, unknown> }[] };
  values.host = { ...values.host, adminNetworks };
  values.guests = values.guests.map((g) => (g.role?.type === "nginx-gateway" ? { ...g, role: { ...g.role, apiKeys: { enabled: false } } } : g));
  const result = validateStack(raw, { requireSecrets: false });
  if (result.ok !== true) throw new Error(`prod with adminNetworks ${adminNetworks.join(",")} does not validate: ${JSON.stringify(result)}`);
  return result.config;
}

const config = prodWith(["127.0.0.1/32"]);
const DOMAIN = config.host.domain;
const SVC = `svc.${DOMAIN}`;

type Mode = "ok" | "503" | "silent";
let mode: Mode = "ok";
/** Services whose servers the stand-in API reports DOWN. */
const down = new Set<string>();

let dir: string;
let caPem: string;
let traefikPort: number;
let front: net.Server;
let tls: https.Server;
let api: http.Server;
let apiPort: number;
const sockets = new Set<net.Socket>();
let admin: { layout: GatewayLayout; nginx: Awaited<ReturnType<typeof startNginx>> };
let outsider: { layout: GatewayLayout; nginx: Awaited<ReturnType<typeof startNginx>> };

/** Traefik's HTTPS entry point: health paths and requests answered, or Traefik's own 503 while a service has no server UP. */
function standInTls(cert: string, key: string): https.Server {
  return https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    req.resume();
    req.on("end", () => {
      if (mode === "503") {
        // traefik v3.5.3 pkg/server/service/loadbalancer/wrr/wrr.go ServeHTTP: http.Error(..., 503).
        res.writeHead(503, { "Content-Type": "text/plain; charset=utf-8" }).end("no available server\n");
        return;
      }
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify({ host: req.headers.host, url: req.url }));
    });
  });
}

/** Connections arrive here first: handed to the TLS server, or held without a byte while Traefik is "silent". */
function standInFront(): net.Server {
  return net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    if (mode !== "silent") tls.emit("connection", socket);
  });
}

/** Traefik's API on its internal entry point: the file provider's services with their servers' states. */
function standInApi(): http.Server {
  return http.createServer((req, res) => {
    if (req.url !== TRAEFIK_SERVICES_API) {
      res.writeHead(404).end();
      return;
    }
    const services = backends(config).map((b) => ({ name: `${b.service.name}@file`, provider: "file", type: "loadbalancer", status: "enabled", serverStatus: { [b.url]: down.has(b.service.name) ? "DOWN" : "UP" } }));
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify([...services, { name: "api@internal", provider: "internal", status: "enabled" }]));
  });
}

const listen = (server: net.Server, port = 0) => new Promise<number>((resolve) => server.listen(port, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)));

/** Cuts every open connection, so nginx's kept-alive ones to Traefik go too. */
function dropConnections(): void {
  for (const s of sockets) s.destroy();
}

async function gateway(name: string, cfg: StackConfig, gwCert: string, gwKey: string, apiPort: number) {
  const prefix = path.join(dir, name);
  const layout = await testGatewayLayout(prefix, { certFile: gwCert, keyFile: gwKey });
  writeFiles("/", renderGatewayConfig(cfg, { traefik: { address: "127.0.0.1", port: traefikPort, apiPort }, caRootPem: caPem, layout }));
  return { layout, nginx: await startNginx(prefix, layout.httpsPort) };
}

function request(layout: GatewayLayout, opts: { method?: string; path: string; body?: string; accept?: string }): Promise<Reply> {
  return httpsReply(
    { host: "127.0.0.1", port: layout.httpsPort, servername: DOMAIN, ca: caPem, method: opts.method ?? "GET", path: opts.path, agent: false, headers: { host: DOMAIN, ...(opts.body ? { "content-type": "application/json" } : {}), ...(opts.accept ? { accept: opts.accept } : {}) } },
    opts.body,
  );
}

const chat = (layout: GatewayLayout) => request(layout, { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "Qwen3-4B-FP8", messages: [] }) });

interface StatusRow {
  route: string | null;
  service: string;
  traefik: string;
  servers: Record<string, string>;
  gateway: { status: number | null; ms: number } | null;
  ok: boolean;
}

beforeAll(async () => {
  dir = tempDir("gateway-status-live");
  const pki = testPki(dir);
  caPem = pki.caPem;
  const [gwCert, gwKey] = pki.issue("gateway", [DOMAIN]);
  const [tCert, tKey] = pki.issue("traefik", backends(config).map((b) => b.host));
  tls = standInTls(tCert, tKey);
  front = standInFront();
  traefikPort = await listen(front);
  api = standInApi();
  apiPort = await listen(api);
  admin = await gateway("admin", config, gwCert, gwKey, apiPort);
  // The same stack as written: admin networks 10.0.0.0/24, which the test's loopback is not in.
  outsider = await gateway("outsider", prodWith(["10.0.0.0/24"]), gwCert, gwKey, apiPort);
});

afterAll(async () => {
  await admin?.nginx.stop();
  await outsider?.nginx.stop();
  dropConnections();
  for (const s of [front, api]) await new Promise<void>((resolve) => (s?.listening ? s.close(() => resolve()) : resolve()));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("the gateway while Traefik or a backend is down", () => {
  it("relays a healthy answer, then Traefik's 503 (no server UP) as an OpenAI-shaped 503", async () => {
    expect((await chat(admin.layout)).status).toBe(200);
    mode = "503";
    try {
      const r = await chat(admin.layout);
      expect(r.status).toBe(503);
      expect(r.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(r.body)).toEqual({ error: { message: expect.stringContaining("HTTP 503"), type: "server_error", param: null, code: "upstream_unavailable" } });
      expect(r.headers["strict-transport-security"]).toBeDefined();
    } finally {
      mode = "ok";
    }
    expect((await chat(admin.layout)).status).toBe(200);
  });

  it("answers 504 within the bounded connect timeout when Traefik accepts and stays silent, and 200 once it answers again", async () => {
    mode = "silent";
    dropConnections();
    try {
      const r = await chat(admin.layout);
      expect(r.status).toBe(504);
      expect(JSON.parse(r.body)).toMatchObject({ error: { type: "server_error", code: "upstream_unavailable" } });
      expect(r.ms).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_SECONDS * 1000 - 200);
      expect(r.ms).toBeLessThan(CONNECT_TIMEOUT_SECONDS * 1000 + 1500);
    } finally {
      mode = "ok";
      dropConnections();
    }
    expect((await chat(admin.layout)).status).toBe(200);
  });

  it("answers 502 at once when Traefik is gone, and 200 once it listens again", async () => {
    dropConnections();
    await new Promise<void>((resolve) => front.close(() => resolve()));
    try {
      const r = await chat(admin.layout);
      expect(r.status).toBe(502);
      expect(r.ms).toBeLessThan(1000);
      expect(JSON.parse(r.body)).toMatchObject({ error: { message: expect.stringContaining("HTTP 502"), code: "upstream_unavailable" } });
    } finally {
      await listen(front, traefikPort);
    }
    expect((await chat(admin.layout)).status).toBe(200);
  });

  it("streams a 200 untouched with proxy_intercept_errors on (only 502/503/504 are replaced)", async () => {
    const r = await chat(admin.layout);
    expect(JSON.parse(r.body)).toEqual({ host: `vllm-chat.${SVC}`, url: "/v1/chat/completions" });
  });
});

describe("the status page", () => {
  it("lists every route and backend with Traefik's and the gateway's view, for an admin network", async () => {
    down.add("vllm-chat");
    try {
      const r = await request(admin.layout, { path: STATUS_PATH });
      expect(r.status).toBe(200);
      expect(r.headers["content-type"]).toBe("application/json");
      const page = JSON.parse(r.body) as { ok: boolean; traefikError: string | null; routes: StatusRow[] };
      expect(page.ok).toBe(false);
      expect(page.traefikError).toBeNull();
      // Every declared service is listed; every route with a service is its own row.
      expect(new Set(page.routes.map((x) => x.service))).toEqual(new Set(config.services.map((s) => s.name)));
      for (const route of config.routes.filter((x) => x.service)) expect(page.routes.some((x) => x.route === `${route.host ?? DOMAIN}${route.path}` && x.service === route.service)).toBe(true);
      const row = (service: string) => page.routes.find((x) => x.service === service)!;
      expect(row("vllm-chat")).toMatchObject({ traefik: "DOWN", ok: false, route: expect.stringContaining("/v1/chat/completions") });
      expect(row("qdrant")).toMatchObject({ route: `${DOMAIN}/qdrant/`, traefik: "UP", ok: true, gateway: { status: 200 } });
      expect(Object.values(row("qdrant").servers)).toEqual(["UP"]);
      // step-ca has no route: Traefik's view only.
      expect(row("step-ca")).toMatchObject({ route: null, gateway: null, traefik: "UP", ok: true });
    } finally {
      down.clear();
    }
    const healthy = JSON.parse((await request(admin.layout, { path: STATUS_PATH })).body) as { ok: boolean };
    expect(healthy.ok).toBe(true);
  });

  it("reports the gateway's own probe failing and Traefik's API unreachable, within the probes' budget", async () => {
    mode = "503";
    await new Promise<void>((resolve) => api.close(() => resolve()));
    try {
      const r = await request(admin.layout, { path: STATUS_PATH });
      expect(r.status).toBe(200);
      expect(r.ms).toBeLessThan(4000);
      const page = JSON.parse(r.body) as { ok: boolean; traefikError: string | null; routes: StatusRow[] };
      expect(page.ok).toBe(false);
      expect(page.traefikError).toMatch(/HTTP 502/);
      expect(page.routes.find((x) => x.service === "qdrant")).toMatchObject({ traefik: "unknown", gateway: { status: 503 }, ok: false });
    } finally {
      mode = "ok";
      await listen(api, apiPort);
    }
  });

  it("serves a small HTML table to a browser", async () => {
    const r = await request(admin.layout, { path: STATUS_PATH, accept: "text/html" });
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(r.body).toContain("<td>qdrant</td>");
  });

  it("refuses an address outside the admin networks", async () => {
    const r = await request(outsider.layout, { path: STATUS_PATH });
    expect(r.status).toBe(403);
    expect(r.body).not.toContain("qdrant");
    // The rest of the gateway answers that address as before.
    expect((await request(outsider.layout, { path: "/healthz" })).status).toBe(200);
  });
});

describe("Traefik's side of the status page", () => {
  it("serves the services list to the gateway's address alone, on the internal entry point, without the dashboard's password", async () => {
    const { parse } = await import("yaml");
    const { renderTraefikDynamic } = await import("../../components/core/traefik.render");
    const prod = prodWith(["10.0.0.0/24"]);
    const doc = parse(renderTraefikDynamic(prod).content) as { http: { routers: Record<string, { rule: string; entryPoints: string[]; service: string; middlewares?: string[]; tls?: unknown }>; middlewares: Record<string, { ipAllowList?: { sourceRange: string[] } }> } };
    const gatewayIp = prod.guests.find((g) => g.role?.type === "nginx-gateway")!.network.ip.split("/")[0];
    expect(doc.http.routers["gateway-status"]).toEqual({ rule: `Path(\`${TRAEFIK_SERVICES_API}\`)`, entryPoints: ["traefik"], service: "api@internal", middlewares: ["gateway-status-allow"] });
    expect(doc.http.middlewares["gateway-status-allow"]).toEqual({ ipAllowList: { sourceRange: [gatewayIp] } });
  });
});
