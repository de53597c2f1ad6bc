/**
 * The rendered gateway in a real nginx (Debian's, with njs) on 127.0.0.1, in
 * front of a Node HTTPS server standing in for Traefik: proves the routing,
 * streaming, WebSocket and TLS behaviour the config text only promises.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as https from "node:https";
import * as path from "node:path";
import type { Duplex } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderGatewayConfig, type GatewayLayout } from "../../components/core/nginx.render";
import { backends, modelRoutes } from "../../stacks/routing";
import { httpsReply, testGatewayLayout, type Reply, prodConfig, startNginx, tempDir, testPki, writeFiles } from "./helpers";

// API keys are off here: this file is about routing; test/core/gateway-auth-live.test.ts covers the keys.
const config = prodConfig();
(config.guests.find((g) => g.role?.type === "nginx-gateway")!.role as { apiKeys: { enabled: boolean } }).apiKeys.enabled = false;
const DOMAIN = config.host.domain;
const PORTAINER = `portainer.${DOMAIN}`;
/** Traefik's zone: service hosts live there, apart from the names the gateway answers on. */
const SVC = `svc.${DOMAIN}`;
const WEBAPP = `webapp.${SVC}`;

interface Echo {
  host: string;
  method: string;
  url: string;
  model: string | null;
  bodyBytes: number;
}

let dir: string;
let layout: GatewayLayout;
let caPem: string;
let traefik: https.Server;
let nginx: Awaited<ReturnType<typeof startNginx>>;
/** Called by the test once it has seen the first streamed chunk; the stand-in holds the rest until then. */
let releaseStream: () => void = () => undefined;
/** When the stand-in finished the streamed response; 0 while it is still open. */
let streamEndedAt = 0;
/** Hosts whose model list the stand-in answers with 502, as a server that is down would. */
const downHosts = new Set<string>();

function standInTraefik(cert: string, key: string): https.Server {
  const models = modelRoutes(config);
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const host = req.headers.host ?? "";
      if (req.method === "GET" && req.url === "/v1/models") {
        if (downHosts.has(host)) {
          res.writeHead(502).end();
          return;
        }
        res.setHeader("Content-Type", "application/json");
        res.end(JSON.stringify({ object: "list", data: models.filter((m) => m.host === host).map((m) => ({ id: m.id, object: "model", owned_by: host })) }));
        return;
      }
      let parsed: { model?: string; stream?: boolean } = {};
      try {
        parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
      } catch {
        // Not every route carries JSON; the echo says so with model: null.
      }
      if (parsed.stream) {
        res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
        res.write(`data: ${JSON.stringify({ host, model: parsed.model, chunk: 1 })}\n\n`);
        const finish = () => {
          streamEndedAt = Date.now();
          res.end("data: [DONE]\n\n");
        };
        const timer = setTimeout(finish, 3000);
        releaseStream = () => {
          clearTimeout(timer);
          finish();
        };
        return;
      }
      const echo: Echo = { host, method: req.method ?? "", url: req.url ?? "", model: parsed.model ?? null, bodyBytes: body.length };
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify(echo));
    });
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex) => {
    const accept = crypto.createHash("sha1").update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nX-Echo-Host: ${req.headers.host}\r\nX-Echo-Url: ${req.url}\r\n\r\n`);
    socket.pipe(socket);
  });
  return server;
}

function request(opts: { host?: string; method?: string; path: string; body?: string | Buffer; headers?: Record<string, string> }): Promise<Reply> {
  const host = opts.host ?? DOMAIN;
  return httpsReply({ host: "127.0.0.1", port: layout.httpsPort, servername: host, ca: caPem, method: opts.method ?? "GET", path: opts.path, headers: { host, ...(opts.body ? { "content-type": "application/json" } : {}), ...opts.headers } }, opts.body);
}

const post = (p: string, value: unknown) => request({ method: "POST", path: p, body: JSON.stringify(value) });

beforeAll(async () => {
  dir = tempDir("gateway-live");
  const pki = testPki(dir);
  caPem = pki.caPem;
  const [gwCert, gwKey] = pki.issue("gateway", [DOMAIN, PORTAINER]);
  // webapp's host is left out on purpose: the gateway must then refuse the hop (see the TLS test).
  const [tCert, tKey] = pki.issue("traefik", backends(config).map((b) => b.host).filter((h) => h !== WEBAPP));
  traefik = standInTraefik(tCert, tKey);
  await new Promise<void>((resolve) => traefik.listen(0, "127.0.0.1", resolve));
  const traefikPort = (traefik.address() as { port: number }).port;

  layout = await testGatewayLayout(dir, { certFile: gwCert, keyFile: gwKey });
  writeFiles("/", renderGatewayConfig(config, { traefik: { address: "127.0.0.1", port: traefikPort }, caRootPem: pki.caPem, layout }));
  fs.mkdirSync(path.join(layout.acmeRoot, ".well-known/acme-challenge"), { recursive: true });
  fs.writeFileSync(path.join(layout.acmeRoot, ".well-known/acme-challenge/token-123"), "token-123.thumbprint");
  nginx = await startNginx(dir, layout.httpsPort);
});

afterAll(async () => {
  await nginx?.stop();
  await new Promise<void>((resolve) => (traefik ? traefik.close(() => resolve()) : resolve()));
  traefik?.closeAllConnections();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("the rendered gateway in a real nginx", () => {
  it("answers its own /healthz with HSTS and the security headers", async () => {
    const r = await request({ path: "/healthz" });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ status: "ok" });
    expect(r.headers["strict-transport-security"]).toBe("max-age=31536000; includeSubDomains");
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
    expect(r.headers["content-security-policy"]).toBe("frame-ancestors 'self'");
    expect(r.headers["referrer-policy"]).toBe("strict-origin-when-cross-origin");
  });

  it("routes a chat request by its model to the chat server's Traefik host", async () => {
    const r = await post("/v1/chat/completions", { model: "Qwen3-4B-FP8", messages: [{ role: "user", content: "hi" }] });
    expect(r.status).toBe(200);
    const echo = JSON.parse(r.body) as Echo;
    expect(echo).toMatchObject({ host: `vllm-chat.${SVC}`, method: "POST", url: "/v1/chat/completions", model: "Qwen3-4B-FP8" });
    expect(r.headers["strict-transport-security"]).toBeDefined();
  });

  it("routes embeddings and the other engines' models to their own hosts", async () => {
    const cases: [string, string, string][] = [
      ["/v1/embeddings", "granite-embedding-english-r2", `vllm-embed.${SVC}`],
      ["/v1/embeddings", "nomic-embed-text", `ollama.${SVC}`],
      ["/v1/completions", "gemma-3-4b-it", `llamacpp.${SVC}`],
      ["/v1/chat/completions", "llama3.1:8b", `ollama.${SVC}`],
    ];
    for (const [p, model, host] of cases) {
      const r = await post(p, { model, input: "text" });
      expect(r.status, `${model} on ${p}`).toBe(200);
      expect(JSON.parse(r.body), `${model} on ${p}`).toMatchObject({ host, url: p, model });
    }
  });

  it("answers an unknown model with an OpenAI-style 404", async () => {
    const r = await post("/v1/chat/completions", { model: "gpt-imaginary", messages: [] });
    expect(r.status).toBe(404);
    expect(r.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(r.body) as { error: Record<string, unknown> };
    expect(body.error).toEqual({ message: expect.stringContaining("gpt-imaginary"), type: "invalid_request_error", param: "model", code: "model_not_found" });
  });

  it("answers a body that is not JSON with a 400 in the same shape", async () => {
    const r = await request({ method: "POST", path: "/v1/chat/completions", body: "not json" });
    expect(r.status).toBe(400);
    expect((JSON.parse(r.body) as { error: { code: string; type: string } }).error).toMatchObject({ type: "invalid_request_error", code: "invalid_json" });
  });

  it("passes a streamed completion through before the upstream has finished", async () => {
    streamEndedAt = 0;
    const first = await new Promise<{ upstreamDone: boolean; text: string; rest: Promise<string> }>((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port: layout.httpsPort, servername: DOMAIN, ca: caPem, method: "POST", path: "/v1/chat/completions", headers: { host: DOMAIN, "content-type": "application/json" } },
        (res) => {
          res.setEncoding("utf8");
          let text = "";
          let seen = false;
          const rest = new Promise<string>((done) => res.on("end", () => done(text)));
          res.on("data", (d: string) => {
            text += d;
            if (!seen) {
              seen = true;
              resolve({ upstreamDone: streamEndedAt !== 0, text, rest });
            }
          });
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ model: "Qwen3-4B-FP8", stream: true, messages: [] }));
    });
    // The stand-in holds the rest until released (or 3 s): a buffering proxy shows nothing before that.
    expect(first.upstreamDone, "the first chunk arrived only after the upstream finished: the stream was buffered").toBe(false);
    expect(first.text).toContain('"chunk":1');
    releaseStream();
    expect(await first.rest).toContain("data: [DONE]");
  });

  it("routes a chunked request body (no Content-Length) by its model", async () => {
    const reply = await new Promise<Omit<Reply, "ms">>((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port: layout.httpsPort, servername: DOMAIN, ca: caPem, method: "POST", path: "/v1/embeddings", headers: { host: DOMAIN, "content-type": "application/json", "transfer-encoding": "chunked" } },
        (res) => {
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on("error", reject);
      const payload = JSON.stringify({ input: "y".repeat(300_000), model: "nomic-embed-text" });
      for (let i = 0; i < payload.length; i += 50_000) req.write(payload.slice(i, i + 50_000));
      req.end();
    });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ host: `ollama.${SVC}`, model: "nomic-embed-text" });
  });

  it("streams over HTTP/2 as well", async () => {
    streamEndedAt = 0;
    const client = http2.connect(`https://${DOMAIN}:${layout.httpsPort}`, { ca: caPem, servername: DOMAIN, host: "127.0.0.1", lookup: (_h, _o, cb) => cb(null, "127.0.0.1", 4) });
    try {
      const stream = client.request({ ":method": "POST", ":path": "/v1/chat/completions", "content-type": "application/json" });
      stream.end(JSON.stringify({ model: "Qwen3-4B-FP8", stream: true }));
      const upstreamDone = await new Promise<boolean>((resolve, reject) => {
        stream.once("data", () => resolve(streamEndedAt !== 0));
        stream.on("error", reject);
      });
      expect(upstreamDone, "the first chunk arrived only after the upstream finished: the stream was buffered").toBe(false);
      releaseStream();
      await new Promise((resolve) => stream.on("end", resolve).resume());
    } finally {
      client.close();
    }
  });

  it("accepts a 20 MB request body and hands all of it to the backend", async () => {
    const input = "x".repeat(20 * 1024 * 1024);
    const payload = JSON.stringify({ model: "granite-embedding-english-r2", input });
    const r = await request({ method: "POST", path: "/v1/embeddings", body: payload });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ host: `vllm-embed.${SVC}`, bodyBytes: Buffer.byteLength(payload) });
  });

  it("aggregates /v1/models over every model server", async () => {
    const r = await request({ path: "/v1/models" });
    expect(r.status).toBe(200);
    const list = JSON.parse(r.body) as { object: string; data: { id: string; owned_by: string }[] };
    expect(list.object).toBe("list");
    expect(list.data.map((m) => m.id).sort()).toEqual(modelRoutes(config).map((m) => m.id).sort());
    const one = await request({ path: "/v1/models/llama3.1:8b" });
    expect(JSON.parse(one.body)).toEqual({ id: "llama3.1:8b", object: "model", owned_by: `ollama.${SVC}` });
    expect((await request({ path: "/v1/models/nope" })).status).toBe(404);
  });

  it("still lists the other servers' models when one server is down", async () => {
    downHosts.add(`ollama.${SVC}`);
    try {
      const r = await request({ path: "/v1/models" });
      expect(r.status).toBe(200);
      const ids = (JSON.parse(r.body) as { data: { id: string }[] }).data.map((m) => m.id).sort();
      expect(ids).toEqual(modelRoutes(config).filter((m) => m.service !== "ollama").map((m) => m.id).sort());
    } finally {
      downHosts.clear();
    }
  });

  it("strips /qdrant/ and keeps other paths as they are", async () => {
    const q = JSON.parse((await request({ path: "/qdrant/collections?x=1" })).body) as Echo;
    expect(q).toMatchObject({ host: `qdrant.${SVC}`, url: "/collections?x=1" });
    const n = JSON.parse((await request({ path: "/n8n/rest/settings" })).body) as Echo;
    expect(n).toMatchObject({ host: `n8n.${SVC}`, url: "/n8n/rest/settings" });
  });

  it("refuses the hop to Traefik when its certificate does not name the service host", async () => {
    const r = await request({ path: "/some/page" });
    expect(r.status).toBe(502);
    expect(nginx.log()).toMatch(/upstream SSL certificate does not match "webapp\.svc\.internal\.thinkheads\.ai"/);
  });

  it("upgrades WebSockets on /n8n/ and on the Portainer host, and carries frames both ways", async () => {
    for (const [host, p, target] of [
      [DOMAIN, "/n8n/rest/push", `n8n.${SVC}`],
      [PORTAINER, "/api/websocket/exec", `portainer.${SVC}`],
    ] as const) {
      const { res, socket } = await new Promise<{ res: http.IncomingMessage; socket: Duplex }>((resolve, reject) => {
        const req = https.request({
          host: "127.0.0.1",
          port: layout.httpsPort,
          servername: host,
          ca: caPem,
          path: p,
          headers: { host, connection: "Upgrade", upgrade: "websocket", "sec-websocket-version": "13", "sec-websocket-key": crypto.randomBytes(16).toString("base64") },
        });
        req.on("upgrade", (res, socket) => resolve({ res, socket }));
        req.on("response", (res) => reject(new Error(`${host}${p}: no upgrade, status ${res.statusCode}`)));
        req.on("error", reject);
        req.end();
      });
      expect(res.statusCode).toBe(101);
      expect(res.headers["x-echo-host"]).toBe(target);
      expect(res.headers["x-echo-url"]).toBe(p);
      const echoed = await new Promise<string>((resolve) => {
        socket.once("data", (d: Buffer) => resolve(d.toString()));
        socket.write("frame-bytes");
      });
      expect(echoed).toBe("frame-bytes");
      socket.destroy();
    }
  });

  it("redirects port 80 to HTTPS except the ACME challenge path", async () => {
    const get = (p: string) =>
      new Promise<Omit<Reply, "ms">>((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port: layout.httpPort, path: p, headers: { host: DOMAIN } }, (res) => {
            let body = "";
            res.on("data", (d: Buffer) => (body += d.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          })
          .on("error", reject);
      });
    const redirect = await get("/v1/models?x=1");
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toBe(`https://${DOMAIN}/v1/models?x=1`);
    const challenge = await get("/.well-known/acme-challenge/token-123");
    expect(challenge.status).toBe(200);
    expect(challenge.body).toBe("token-123.thumbprint");
  });

  it("refuses anything but TLS 1.2 and 1.3", async () => {
    const tls11 = await new Promise<string>((resolve) => {
      const req = https.request({ host: "127.0.0.1", port: layout.httpsPort, servername: DOMAIN, ca: caPem, path: "/healthz", maxVersion: "TLSv1.1", minVersion: "TLSv1" }, () => resolve("connected"));
      req.on("error", (e) => resolve(e.message));
      req.end();
    });
    expect(tls11).not.toBe("connected");
  });

  it("writes its access log as JSON lines", async () => {
    const lines = fs.readFileSync(path.join(layout.logDir, "access.json"), "utf8").trim().split("\n");
    const entry = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    expect(entry).toMatchObject({ host: DOMAIN, method: expect.any(String), status: expect.any(Number) });
  });
});
