import * as fs from "node:fs/promises";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { implementation as health, probe, type ServiceHealthInputs, type ServiceHealthOutputs } from "../../providers/portainer/health";
import { generateCertificates, type SimCertificates } from "../pve-sim/tls";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";

let sim: PortainerSim;
let certs: SimCertificates;
let qdrant: https.Server;
let qdrantUp = true;
let gateway: string;
beforeAll(async () => {
  sim = await startPortainerSim();
  certs = await generateCertificates();
  // The gateway's /qdrant/ route with the prefix stripped, answering as Qdrant does.
  qdrant = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    if (req.url === "/qdrant/healthz" && qdrantUp) return res.writeHead(200).end("healthz check passed");
    res.writeHead(502).end("bad gateway");
  });
  await new Promise<void>((r) => qdrant.listen(0, "127.0.0.1", r));
  gateway = `https://127.0.0.1:${(qdrant.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await sim.stop();
  await new Promise((r) => qdrant.close(r));
  await fs.rm(certs.dir, { recursive: true, force: true });
});

const qdrantCheck = (): ServiceHealthInputs => ({ url: `${gateway}/qdrant/healthz`, caPem: certs.caPem, expectStatus: 200, bodyIncludes: "healthz check passed", timeoutSeconds: 1, intervalMs: 50 });

describe("ServiceHealth", () => {
  it("Portainer's /api/system/status answers 200 over verified TLS", async () => {
    expect(await probe({ url: `${sim.url}/api/system/status`, caPem: sim.caPem, expectStatus: 200 })).toEqual({ healthy: true, answer: "HTTP 200" });
    expect((await probe({ url: `${sim.url}/api/system/status`, expectStatus: 200 })).answer).toMatch(/certificate/);
  });

  it("Qdrant's /healthz through the gateway route: create waits for it, read reports it going away", async () => {
    const { id, outs } = await health.create(qdrantCheck());
    expect(outs).toMatchObject({ healthy: true, lastAnswer: "HTTP 200" });
    qdrantUp = false;
    const { props } = await health.read(id, outs as ServiceHealthOutputs);
    expect(props).toMatchObject({ healthy: false, lastAnswer: 'HTTP 502 without "healthz check passed"' });
    const started = Date.now();
    await expect(health.create(qdrantCheck())).rejects.toThrow(/did not answer HTTP 200 with "healthz check passed" within 1 s; last answer: HTTP 502/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    qdrantUp = true;
  });

  it("connects to a given address while TLS and Host still name the URL's host (the gateway, without internal DNS)", async () => {
    const port = new URL(gateway).port;
    const url = `https://phoenix-test.invalid:${port}/qdrant/healthz`;
    expect((await probe({ url, caPem: certs.caPem, expectStatus: 200 })).answer).toMatch(/ENOTFOUND/);
    // Reached the server, which presents a certificate for localhost, not for the URL's host: refused.
    expect((await probe({ url, address: "127.0.0.1", caPem: certs.caPem, expectStatus: 200 })).answer).toMatch(/altnames/);
    expect(await probe({ url: `https://localhost:${port}/qdrant/healthz`, address: "127.0.0.1", caPem: certs.caPem, expectStatus: 200, bodyIncludes: "healthz check passed" })).toEqual({ healthy: true, answer: "HTTP 200" });
  });

  it("check refuses plain HTTP and absurd timings", async () => {
    const res = await health.check({}, { ...qdrantCheck(), url: "http://x/healthz", intervalMs: 1 });
    expect(res.failures?.map((f) => f.property)).toEqual(["url", "intervalMs"]);
  });
});
