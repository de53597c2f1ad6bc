/**
 * The health scripts run for real against small HTTP servers that answer like
 * each engine, with journalctl and systemctl stand-ins on PATH: a healthy
 * engine passes, and every way of failing ends non-zero with a message that
 * says what failed and the unit's journal tail.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderHealthScript } from "../../components/models/health.render";
import type { ModelServerSpec } from "../../components/models/server";
import { prodSpec, standIn, tempDir } from "./helpers";

type Handler = (req: http.IncomingMessage, body: string) => { status: number; body: unknown };

let dir: string;
let bin: string;
const servers: http.Server[] = [];

beforeAll(() => {
  dir = tempDir("health");
  bin = path.join(dir, "bin");
  // The journal stand-in records how it was asked and prints recognisable lines.
  standIn(bin, "journalctl", `echo "$*" >>"${dir}/journalctl.calls"\necho "engine log line one"\necho "engine log line two: CUDA out of memory"\n`);
  // systemctl reports the state and restart count the test writes into files.
  standIn(
    bin,
    "systemctl",
    `case "$1" in
  is-active) cat "${dir}/state" 2>/dev/null || echo active ;;
  show) cat "${dir}/restarts" 2>/dev/null || echo 0 ;;
  *) exit 1 ;;
esac
`,
  );
});

afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function engine(handler: Handler): Promise<number> {
  const server = http.createServer((req, res) => {
    let received = "";
    req.on("data", (chunk: Buffer) => (received += chunk.toString("utf8")));
    req.on("end", () => {
      const { status, body } = handler(req, received);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(typeof body === "string" ? body : JSON.stringify(body, null, 2));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** A port nothing listens on: a server bound and closed again. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function onPort<S extends ModelServerSpec>(spec: S, port: number, server: Partial<S["server"]> = {}): S {
  return { ...spec, server: { ...spec.server, ...server, port } };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a health script without blocking the event loop the stand-in servers answer on. */
function run(script: string, env: Record<string, string> = {}, state: { unit?: string; restarts?: string } = {}): Promise<Run> {
  fs.writeFileSync(path.join(dir, "state"), state.unit ?? "active\n");
  fs.writeFileSync(path.join(dir, "restarts"), state.restarts ?? "0\n");
  fs.rmSync(path.join(dir, "journalctl.calls"), { force: true });
  const file = path.join(dir, "health.sh");
  fs.writeFileSync(file, script);
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      "bash",
      [file],
      { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, PHOENIX_HEALTH_SECONDS: "1", PHOENIX_HEALTH_INTERVAL: "0.1", ...env }, encoding: "utf8" },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr, seconds: (Date.now() - started) / 1000 }),
    );
  });
}

const journalCalls = () => fs.readFileSync(path.join(dir, "journalctl.calls"), "utf8");

function expectJournalTail(r: Run, unit: string): void {
  expect(r.stderr).toContain(`--- last 50 journal lines of ${unit} ---\nengine log line one\nengine log line two: CUDA out of memory\n`);
  expect(journalCalls()).toBe(`-u ${unit} -n 50 --no-pager\n`);
}

const vllmModels = (...ids: string[]) => ({ object: "list", data: ids.map((id) => ({ id, object: "model", owned_by: "vllm" })) });
/** What vLLM and llama-server answer a 1-token chat completion with (trimmed). */
const chatAnswer = (model: string) => ({ id: "chatcmpl-1", object: "chat.completion", model, choices: [{ index: 0, message: { role: "assistant", content: "OK" }, finish_reason: "length" }] });
const embedAnswer = (model: string) => ({ object: "list", model, data: [{ object: "embedding", index: 0, embedding: [0.1, -0.2] }] });

/** A vLLM that passes its readiness endpoints; `generate` answers the POSTs. */
function vllmLike(model: string, generate: Handler): Handler {
  return (req, body) => (req.method === "POST" ? generate(req, body) : req.url === "/health" ? { status: 200, body: "" } : { status: 200, body: vllmModels(model) });
}

describe("vLLM health", () => {
  it("passes when /health answers, /v1/models lists the served name and a 1-token chat completion answers", async () => {
    const posts: unknown[] = [];
    const port = await engine(
      vllmLike("Qwen3-4B-FP8", (req, body) => {
        posts.push([req.url, req.headers["content-type"], JSON.parse(body)]);
        return { status: 200, body: chatAnswer("Qwen3-4B-FP8") };
      }),
    );
    const r = await run(renderHealthScript(onPort(prodSpec(802), port)));
    expect(r).toMatchObject({ code: 0, stdout: "vllm.service: healthy\n", stderr: "" });
    expect(posts).toEqual([["/v1/chat/completions", "application/json", { model: "Qwen3-4B-FP8", messages: [{ role: "user", content: "Reply with OK." }], max_tokens: 1 }]]);
  });

  it("fails when generation fails although /health and /v1/models answer, with the server's answer and the journal tail", async () => {
    const port = await engine(vllmLike("Qwen3-4B-FP8", () => ({ status: 500, body: { error: { message: "RuntimeError: Ninja is required to load C++ extensions", code: 500 } } })));
    const r = await run(renderHealthScript(onPort(prodSpec(802), port)), { PHOENIX_HEALTH_SECONDS: "30" });
    expect(r.code).toBe(1);
    // No waiting for the deadline: the engine is up, and it failed the request.
    expect(r.seconds).toBeLessThan(5);
    expect(r.stderr).toMatch(/^vllm\.service: the endpoints answer but chat Qwen3-4B-FP8 failed: POST \/v1\/chat\/completions: 500: \{ "error": \{ "message": "RuntimeError: Ninja is required/);
    expectJournalTail(r, "vllm.service");
  });

  it("fails an embedding server whose /v1/embeddings answers without a vector", async () => {
    const port = await engine(vllmLike("granite-embedding-english-r2", () => ({ status: 200, body: { object: "list", data: [] } })));
    const r = await run(renderHealthScript(onPort(prodSpec(801), port)));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('vllm.service: the endpoints answer but embedding granite-embedding-english-r2 failed: POST /v1/embeddings answered without "embedding": { "object": "list", "data": [] }');
    const ok = await engine(vllmLike("granite-embedding-english-r2", () => ({ status: 200, body: embedAnswer("granite-embedding-english-r2") })));
    expect(await run(renderHealthScript(onPort(prodSpec(801), ok)))).toMatchObject({ code: 0, stdout: "vllm.service: healthy\n" });
  });

  it("fails when the generation request times out", async () => {
    const slow = http.createServer((req, res) => {
      if (req.method !== "POST") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(req.url === "/health" ? {} : vllmModels("Qwen3-4B-FP8")));
      }
      // A POST is never answered.
    });
    servers.push(slow);
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    const r = await run(renderHealthScript(onPort(prodSpec(802), (slow.address() as AddressInfo).port)), { PHOENIX_HEALTH_REQUEST_SECONDS: "1" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vllm\.service: the endpoints answer but chat Qwen3-4B-FP8 failed: POST \/v1\/chat\/completions: curl: curl: \(28\) Operation timed out/);
  });

  it("fails naming the missing model, with what the server listed and the journal tail", async () => {
    const port = await engine((req) => (req.url === "/health" ? { status: 200, body: "" } : { status: 200, body: vllmModels("some-other-model") }));
    const r = await run(renderHealthScript(onPort(prodSpec(802), port)));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vllm\.service: not healthy after 1s; last check: GET \/v1\/models does not list Qwen3-4B-FP8; it answered: \{ "object": "list", "data": \[ \{ "id": "some-other-model", "object": "model"/);
    expectJournalTail(r, "vllm.service");
  });

  it("sends the API key from the root-only env file when the server requires one", async () => {
    const key = "phoenix-test-key-0123456789abcdef";
    const port = await engine((req) =>
      req.url === "/health"
        ? { status: 200, body: "" }
        : req.headers.authorization !== `Bearer ${key}`
          ? { status: 401, body: { error: "Unauthorized" } }
          : req.method === "POST"
            ? { status: 200, body: chatAnswer("Qwen3-4B-FP8") }
            : { status: 200, body: vllmModels("Qwen3-4B-FP8") },
    );
    const envFile = path.join(dir, "vllm.env");
    fs.writeFileSync(envFile, `VLLM_API_KEY=${key}\n`, { mode: 0o600 });
    const script = renderHealthScript(onPort(prodSpec(802), port, { requireApiKey: true }));
    expect(script).not.toContain(key);
    expect(await run(script, { PHOENIX_VLLM_ENV_FILE: envFile })).toMatchObject({ code: 0, stdout: "vllm.service: healthy\n" });
    fs.writeFileSync(envFile, "VLLM_API_KEY=wrong-key-0123456789abcdef\n");
    const wrong = await run(script, { PHOENIX_VLLM_ENV_FILE: envFile });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("last check: GET /v1/models: curl: (22) The requested URL returned error: 401");
  });

  it("fails at the deadline when nothing listens, saying the connection failed", async () => {
    const r = await run(renderHealthScript(onPort(prodSpec(801), await closedPort())));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^vllm\.service: not healthy after 1s; last check: GET \/health: curl: \(7\) Failed to connect to 127\.0\.0\.1 port \d+/);
    expectJournalTail(r, "vllm.service");
  });
});

describe("Ollama health", () => {
  const tags = (...names: string[]) => ({ models: names.map((name) => ({ name, model: name, size: 1 })) });

  const ollamaLike = (generate: Handler): Handler => (req, body) => (req.method === "POST" ? generate(req, body) : { status: 200, body: tags("nomic-embed-text:latest", "llama3.1:8b", "undeclared:1b") });
  const ollamaAnswers: Handler = (req) =>
    req.url === "/api/embed" ? { status: 200, body: { model: "nomic-embed-text", embeddings: [[0.1, 0.2]] } } : { status: 200, body: { model: "llama3.1:8b", response: "OK", done: true } };

  it("passes when /api/tags lists every declared model, untagged ones as :latest, and each model answers", async () => {
    const posts: unknown[] = [];
    const port = await engine(
      ollamaLike((req, body) => {
        posts.push([req.url, JSON.parse(body)]);
        return ollamaAnswers(req, body);
      }),
    );
    expect(await run(renderHealthScript(onPort(prodSpec(914), port)))).toMatchObject({ code: 0, stdout: "ollama.service: healthy\n" });
    expect(posts).toEqual([
      ["/api/generate", { model: "llama3.1:8b", prompt: "Reply with OK.", stream: false, options: { num_predict: 1 } }],
      ["/api/embed", { model: "nomic-embed-text", input: "Phoenix health check" }],
    ]);
  });

  it("fails when a pulled model cannot generate, though /api/tags lists it", async () => {
    const port = await engine(ollamaLike((req, body) => (req.url === "/api/generate" ? { status: 500, body: { error: "llama runner process has terminated: exit status 2" } } : ollamaAnswers(req, body))));
    const r = await run(renderHealthScript(onPort(prodSpec(914), port)));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ollama.service: the endpoints answer but generate llama3.1:8b failed: POST /api/generate: 500: { "error": "llama runner process has terminated: exit status 2" }');
    expectJournalTail(r, "ollama.service");
  });

  it("fails naming the declared model that was not pulled", async () => {
    const port = await engine(() => ({ status: 200, body: tags("llama3.1:8b") }));
    const r = await run(renderHealthScript(onPort(prodSpec(914), port)));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("ollama.service: not healthy after 1s; last check: GET /api/tags does not list nomic-embed-text:latest; it answered:");
    expectJournalTail(r, "ollama.service");
  });
});

describe("llama.cpp health", () => {
  it("waits through 503 while the model loads, then passes", async () => {
    let healthCalls = 0;
    const port = await engine((req) => {
      if (req.method === "POST") return { status: 200, body: chatAnswer("gemma-3-4b-it") };
      if (req.url === "/health") return ++healthCalls < 4 ? { status: 503, body: { error: { message: "Loading model" } } } : { status: 200, body: { status: "ok" } };
      return { status: 200, body: { object: "list", data: [{ id: "gemma-3-4b-it", object: "model" }] } };
    });
    const r = await run(renderHealthScript(onPort(prodSpec(917), port)), { PHOENIX_HEALTH_SECONDS: "10" });
    expect(r, r.stderr).toMatchObject({ code: 0, stdout: "llama-server.service: healthy\n" });
    expect(healthCalls).toBe(4);
  });

  it("stops waiting at once when the unit has failed", async () => {
    const port = await engine(() => ({ status: 503, body: { error: { message: "Loading model" } } }));
    const r = await run(renderHealthScript(onPort(prodSpec(917), port)), { PHOENIX_HEALTH_SECONDS: "30" }, { unit: "failed\n" });
    expect(r.code).toBe(1);
    expect(r.seconds).toBeLessThan(5);
    expect(r.stderr).toContain("llama-server.service: the unit is failed; last check: GET /health: curl: (22) The requested URL returned error: 503");
    expectJournalTail(r, "llama-server.service");
  });

  it("stops waiting when the unit restarts while being checked", async () => {
    const port = await engine(() => {
      fs.writeFileSync(path.join(dir, "restarts"), "1\n");
      return { status: 503, body: "" };
    });
    const r = await run(renderHealthScript(onPort(prodSpec(917), port)), { PHOENIX_HEALTH_SECONDS: "30" });
    expect(r.code).toBe(1);
    expect(r.seconds).toBeLessThan(5);
    expect(r.stderr).toContain("llama-server.service: the unit restarted while being checked");
  });
});
