/**
 * API keys on the gateway's /v1 in a real nginx with njs: the rendered config in
 * front of a Node HTTPS stand-in for Traefik that records what reaches it
 * (the pattern of gateway-live.test.ts). 401 and 429 in OpenAI's shape, the key
 * kept from the upstream, the logs and the rendered files, and no check at all
 * when a stack turns the keys off.
 */
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderGatewayConfig, type GatewayLayout } from "../../components/core/nginx.render";
import { backends, keyedModelServices, modelRoutes } from "../../stacks/routing";
import type { StackConfig } from "../../stacks/schema";
import { httpsReply, testGatewayLayout, type Reply, nginxTest, prodConfig, startNginx, tempDir, testPki, writeFiles } from "./helpers";

const KEY_WEBAPP = "a".repeat(8) + "0123456789abcdef0123456789abcdef-webapp";
const KEY_N8N = "b".repeat(8) + "0123456789abcdef0123456789abcdef-n8n";
const KEY_BATCH = "c".repeat(8) + "0123456789abcdef0123456789abcdef-batch";

/** prod with its gateway's apiKeys replaced. */
function withApiKeys(apiKeys: unknown): StackConfig {
  const config = structuredClone(prodConfig());
  const gw = config.guests.find((g) => g.role?.type === "nginx-gateway")!;
  (gw.role as { apiKeys: unknown }).apiKeys = apiKeys;
  return config;
}

interface Seen {
  url: string;
  authorization: string | undefined;
  host: string | undefined;
}

interface Gateway {
  dir: string;
  layout: GatewayLayout;
  caPem: string;
  seen: Seen[];
  stop: () => Promise<void>;
  log: () => string;
}

/** The rendered gateway in nginx, in front of a stand-in Traefik that answers every request with 200 and records it. */
async function startGateway(name: string, config: StackConfig, apiKeys?: Record<string, string>, modelApiKey?: string): Promise<Gateway> {
  const dir = tempDir(name);
  const pki = testPki(dir);
  const domain = config.host.domain;
  const [gwCert, gwKey] = pki.issue("gateway", [domain]);
  const [tCert, tKey] = pki.issue("traefik", backends(config).map((b) => b.host));
  const seen: Seen[] = [];
  const models = modelRoutes(config);
  const traefik = https.createServer({ cert: fs.readFileSync(tCert), key: fs.readFileSync(tKey) }, (req, res) => {
    seen.push({ url: req.url ?? "", authorization: req.headers.authorization, host: req.headers.host });
    req.resume();
    req.on("end", () => {
      res.setHeader("Content-Type", "application/json");
      if (req.url === "/v1/models") res.end(JSON.stringify({ object: "list", data: models.filter((m) => m.host === req.headers.host).map((m) => ({ id: m.id, object: "model" })) }));
      else res.end(JSON.stringify({ ok: true }));
    });
  });
  await new Promise<void>((resolve) => traefik.listen(0, "127.0.0.1", resolve));
  const layout = await testGatewayLayout(dir, { certFile: gwCert, keyFile: gwKey }, true);
  const files = renderGatewayConfig(config, { traefik: { address: "127.0.0.1", port: (traefik.address() as { port: number }).port }, caRootPem: pki.caPem, layout, ...(apiKeys ? { apiKeys } : {}), ...(modelApiKey ? { modelApiKey } : {}) });
  writeFiles("/", files);
  const checked = nginxTest(dir);
  expect(checked.ok, checked.output).toBe(true);
  const nginx = await startNginx(dir, layout.httpsPort);
  return {
    dir,
    layout,
    caPem: pki.caPem,
    seen,
    log: nginx.log,
    stop: async () => {
      await nginx.stop();
      traefik.closeAllConnections();
      await new Promise<void>((resolve) => traefik.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function request(gw: Gateway, opts: { method?: string; path: string; key?: string; authorization?: string; body?: unknown }): Promise<Reply> {
  const host = prodConfig().host.domain;
  const auth = opts.authorization ?? (opts.key === undefined ? undefined : `Bearer ${opts.key}`);
  return httpsReply(
    {
      host: "127.0.0.1",
      port: gw.layout.httpsPort,
      servername: host,
      ca: gw.caPem,
      method: opts.method ?? "GET",
      path: opts.path,
      headers: { host, ...(auth ? { authorization: auth } : {}), ...(opts.body === undefined ? {} : { "content-type": "application/json" }) },
    },
    opts.body === undefined ? undefined : JSON.stringify(opts.body),
  );
}

const chat = (gw: Gateway, key?: string) => request(gw, { method: "POST", path: "/v1/chat/completions", ...(key === undefined ? {} : { key }), body: { model: "Qwen3-4B-FP8", messages: [] } });

describe("API keys on /v1 in a real nginx", () => {
  let gw: Gateway;
  // webapp at the prod default rate; n8n at 1 request a minute with no burst, to reach 429 at once; batch with a burst of 3.
  const config = withApiKeys({ enabled: true, clients: [{ name: "webapp", rate: "10r/s", burst: 20 }, { name: "n8n", rate: "1r/m", burst: 0 }, { name: "batch", rate: "1r/m", burst: 3 }] });

  beforeAll(async () => {
    gw = await startGateway("gateway-auth-live", config, { webapp: KEY_WEBAPP, n8n: KEY_N8N, batch: KEY_BATCH });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  const expectOpenAiError = (r: Reply, status: number, error: { type: string; code: string }) => {
    expect(r.status).toBe(status);
    expect(r.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(r.body)).toEqual({ error: { message: expect.any(String), type: error.type, param: null, code: error.code } });
  };

  it("answers a request without a key with 401 in OpenAI's shape, WWW-Authenticate and the security headers", async () => {
    const before = gw.seen.length;
    const r = await chat(gw);
    expectOpenAiError(r, 401, { type: "invalid_request_error", code: "invalid_api_key" });
    expect(r.headers["www-authenticate"]).toMatch(/^Bearer( |$)/);
    expect(r.headers["strict-transport-security"]).toBe("max-age=31536000; includeSubDomains");
    expect(gw.seen.length, "the request reached the upstream").toBe(before);
  });

  it("answers a wrong key, another scheme and the model list without a key with 401", async () => {
    expectOpenAiError(await chat(gw, `${KEY_WEBAPP}x`), 401, { type: "invalid_request_error", code: "invalid_api_key" });
    expectOpenAiError(await request(gw, { method: "POST", path: "/v1/embeddings", authorization: `Basic ${Buffer.from(`u:${KEY_WEBAPP}`).toString("base64")}`, body: { model: "nomic-embed-text" } }), 401, { type: "invalid_request_error", code: "invalid_api_key" });
    expectOpenAiError(await request(gw, { path: "/v1/models" }), 401, { type: "invalid_request_error", code: "invalid_api_key" });
  });

  it("proxies a request with a client's key and keeps the key from the upstream", async () => {
    const before = gw.seen.length;
    const r = await chat(gw, KEY_WEBAPP);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ ok: true });
    const reached = gw.seen.slice(before);
    expect(reached.map((s) => s.url)).toEqual(["/v1/chat/completions"]);
    expect(reached[0]!.authorization).toBeUndefined();
  });

  it("lists /v1/models with one key: its subrequests are neither refused nor counted, and carry no key", async () => {
    const before = gw.seen.length;
    // n8n may make 1 request a minute: its one request fans out to a subrequest per model server.
    const r = await request(gw, { path: "/v1/models", key: KEY_N8N });
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { data: { id: string }[] }).data.map((m) => m.id).sort()).toEqual(modelRoutes(config).map((m) => m.id).sort());
    const reached = gw.seen.slice(before);
    expect(reached.length).toBe(new Set(modelRoutes(config).map((m) => m.service)).size);
    expect(reached.every((s) => s.authorization === undefined)).toBe(true);
  });

  it("answers a client over its rate with 429 in OpenAI's shape, and not the other clients", async () => {
    // n8n spent its one request a minute on the model list above.
    expectOpenAiError(await chat(gw, KEY_N8N), 429, { type: "requests", code: "rate_limit_exceeded" });
    expect((await chat(gw, KEY_WEBAPP)).status).toBe(200);
  });

  it("answers 429 once a client's burst is spent", async () => {
    // One a minute plus a burst of 3: the first four pass at once (nodelay), the rest are refused.
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await chat(gw, KEY_BATCH)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
  });

  it("leaves the other routes alone: no key asked, the client's Authorization passed on", async () => {
    const before = gw.seen.length;
    const r = await request(gw, { path: "/qdrant/collections", authorization: "Bearer qdrant-own-token" });
    expect(r.status).toBe(200);
    expect(gw.seen.slice(before).map(({ url, authorization }) => ({ url, authorization }))).toEqual([{ url: "/collections", authorization: "Bearer qdrant-own-token" }]);
  });

  it("keeps the keys out of the rendered files, the access log and the error log", () => {
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else files.push(path.join(d, e.name));
      }
    };
    walk(gw.dir);
    expect(files.some((f) => f.endsWith("access.json"))).toBe(true);
    for (const f of files) {
      const text = fs.readFileSync(f, "latin1");
      for (const key of [KEY_WEBAPP, KEY_N8N, KEY_BATCH]) expect(text.includes(key), f).toBe(false);
    }
    expect(gw.log()).not.toContain(KEY_WEBAPP);
    expect(gw.log()).not.toContain(KEY_N8N);
  });
});

describe("API keys turned off", () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway("gateway-noauth-live", withApiKeys({ enabled: false, clients: [] }));
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it("serves /v1 without a key and passes the client's Authorization on, as before", async () => {
    const before = gw.seen.length;
    expect((await chat(gw)).status).toBe(200);
    expect((await chat(gw, "a-model-server-key")).status).toBe(200);
    expect(gw.seen.slice(before).map((s) => s.authorization)).toEqual([undefined, "Bearer a-model-server-key"]);
  });
});

describe("API keys in front of a vLLM server that requires its own key", () => {
  const MODEL_KEY = "model-server-key-0123456789abcdef";
  let gw: Gateway;
  const config = withApiKeys({ enabled: true, clients: [{ name: "webapp", rate: "10r/s", burst: 20 }] });
  const vllm = config.guests.find((g) => g.role?.type === "model-server" && g.role.server.engine === "vllm")!;
  (vllm.role as { server: { requireApiKey: boolean } }).server.requireApiKey = true;
  const keyed = keyedModelServices(config);
  const keyedHosts = new Set(modelRoutes(config).filter((m) => keyed.has(m.service)).map((m) => m.host));
  beforeAll(async () => {
    gw = await startGateway("gateway-modelkey-live", config, { webapp: KEY_WEBAPP }, MODEL_KEY);
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it("sends phoenix:modelApiKey to that server in place of the client's key, and no key to the others", async () => {
    expect(keyed.size).toBe(1);
    const before = gw.seen.length;
    const keyedModel = modelRoutes(config).find((m) => keyed.has(m.service))!.id;
    expect((await request(gw, { method: "POST", path: "/v1/chat/completions", key: KEY_WEBAPP, body: { model: keyedModel, messages: [] } })).status).toBe(200);
    expect((await request(gw, { path: "/v1/models", key: KEY_WEBAPP })).status).toBe(200);
    const reached = gw.seen.slice(before);
    expect(reached.filter((s) => keyedHosts.has(s.host ?? "")).map((s) => [s.url, s.authorization])).toEqual([
      ["/v1/chat/completions", `Bearer ${MODEL_KEY}`],
      ["/v1/models", `Bearer ${MODEL_KEY}`],
    ]);
    const others = reached.filter((s) => !keyedHosts.has(s.host ?? ""));
    expect(others.length).toBeGreaterThan(0);
    expect(others.every((s) => s.authorization === undefined)).toBe(true);
  });

  it("keeps the model key in one file only root reads", () => {
    const files = renderGatewayConfig(config, { traefik: { address: "127.0.0.1", port: 1 }, caRootPem: "pem", apiKeys: { webapp: KEY_WEBAPP }, modelApiKey: MODEL_KEY });
    const holding = files.filter((f) => f.content.includes(MODEL_KEY));
    expect(holding.map((f) => [path.basename(f.path), f.mode, f.owner])).toEqual([["model-api-key.conf", "0600", "root:root"]]);
    expect(() => renderGatewayConfig(config, { traefik: { address: "127.0.0.1", port: 1 }, caRootPem: "pem", apiKeys: { webapp: KEY_WEBAPP } })).toThrow(/phoenix:modelApiKey/);
    expect(() => renderGatewayConfig(config, { traefik: { address: "127.0.0.1", port: 1 }, caRootPem: "pem", apiKeys: { webapp: KEY_WEBAPP }, modelApiKey: 'short"; evil' })).toThrow(/16–512 characters/);
  });
});

describe("API clients whose names are nginx map parameters", () => {
  it("loads and routes with clients named default and include", async () => {
    const KEY_DEFAULT = "d".repeat(8) + "0123456789abcdef0123456789abcdef-default";
    const KEY_INCLUDE = "i".repeat(8) + "0123456789abcdef0123456789abcdef-include";
    const gw = await startGateway("gateway-mapnames-live", withApiKeys({ enabled: true, clients: [{ name: "default", rate: "10r/s", burst: 5 }, { name: "include", rate: "1r/m", burst: 0 }] }), { default: KEY_DEFAULT, include: KEY_INCLUDE });
    try {
      expect((await chat(gw, KEY_DEFAULT)).status).toBe(200);
      expect((await chat(gw, KEY_INCLUDE)).status).toBe(200);
      // include's own zone: one a minute, so the second is refused, and default's is not.
      expect((await chat(gw, KEY_INCLUDE)).status).toBe(429);
      expect((await chat(gw, KEY_DEFAULT)).status).toBe(200);
      expect((await chat(gw)).status).toBe(401);
    } finally {
      await gw.stop();
    }
  });
});
