/**
 * The Ollama probe, live: Debian's blackbox_exporter runs the rendered blackbox.yml and probes, with
 * the rendered module, a stand-in for Ollama's API on 127.0.0.1 that answers GET /api/version as
 * ollama@v0.12.6 server/routes.go:1458 does ({"version":"…"}). The probe succeeds against it, and
 * fails against a server answering 404 or a 200 that is not JSON, and against a closed port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OBS_PATHS, scrapeJobs } from "../../components/observability/config.render";
import { renderObservabilityFiles } from "../../components/observability/install.render";
import { freePort, tempDir } from "../support";
import { configOf, GOLDEN_CA_PEM, prodRaw } from "./helpers";

const prod = configOf(prodRaw());
let exporter: ChildProcess | undefined;
let exporterPort = 0;
let standIn: http.Server | undefined;
let standInPort = 0;

beforeAll(async () => {
  // Ollama's route, a 404 elsewhere (gin's default), and a 2xx that is not Ollama's JSON.
  standIn = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/api/version") res.writeHead(200, { "content-type": "application/json; charset=utf-8" }).end('{"version":"0.12.6"}');
    else if (req.url === "/html") res.writeHead(200, { "content-type": "text/html" }).end("<html>not ollama</html>");
    else res.writeHead(404).end("404 page not found");
  });
  await new Promise<void>((r) => standIn!.listen(0, "127.0.0.1", r));
  standInPort = (standIn.address() as AddressInfo).port;
  const dir = tempDir("obs-probe");
  const config = path.join(dir, "blackbox.yml");
  const rendered = renderObservabilityFiles(prod, { caRootPem: GOLDEN_CA_PEM }).find((f) => f.path === OBS_PATHS.blackboxConfig)!.content;
  // The TLS module's ca_file is not opened until a TLS probe runs; point it at a file that exists anyway.
  fs.writeFileSync(path.join(dir, "root.pem"), GOLDEN_CA_PEM);
  fs.writeFileSync(config, rendered.replace(OBS_PATHS.caRoot, path.join(dir, "root.pem")));
  exporterPort = await freePort();
  exporter = spawn("prometheus-blackbox-exporter", [`--config.file=${config}`, `--web.listen-address=127.0.0.1:${exporterPort}`], { stdio: "ignore" });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${exporterPort}/-/healthy`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error("blackbox_exporter did not become healthy in 10s");
    await new Promise((r) => setTimeout(r, 100));
  }
}, 15_000);

afterAll(async () => {
  if (exporter && exporter.exitCode === null) {
    exporter.kill("SIGTERM");
    await new Promise((r) => exporter!.once("exit", r));
  }
  await new Promise((r) => standIn?.close(r));
});

/** The probe as Prometheus asks for it: the job's module, the target's URL with its address moved to the stand-in. */
async function probeSuccess(target: string): Promise<number> {
  const job = scrapeJobs(prod).find((j) => j.job === "model-servers-probe")!;
  const body = await (await fetch(`http://127.0.0.1:${exporterPort}/probe?module=${job.probe!.module}&target=${encodeURIComponent(target)}`)).text();
  const m = /^probe_success (\d)$/m.exec(body);
  if (!m) throw new Error(`no probe_success in:\n${body}`);
  return Number(m[1]);
}

describe("the Ollama API probe, run by the real blackbox_exporter", () => {
  it("succeeds on Ollama's /api/version and fails on a 404, a non-JSON 200 and a closed port", async () => {
    const target = scrapeJobs(prod).find((j) => j.job === "model-servers-probe")!.targets[0]!.address;
    const local = target.replace(/^http:\/\/[^/]+/, `http://127.0.0.1:${standInPort}`);
    expect(local).toBe(`http://127.0.0.1:${standInPort}/api/version`);
    expect(await probeSuccess(local)).toBe(1);
    expect(await probeSuccess(`http://127.0.0.1:${standInPort}/api/missing`)).toBe(0);
    expect(await probeSuccess(`http://127.0.0.1:${standInPort}/html`)).toBe(0);
    expect(await probeSuccess(`http://127.0.0.1:${await freePort()}/api/version`)).toBe(0);
  }, 20_000);
});
