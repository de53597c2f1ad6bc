/**
 * The doctor reads the gateway's status page first (scripts/doctor/status-page.ts): here a stand-in
 * gateway serves it over TLS in the shape components/core/nginx/status.js writes (proven in
 * test/core/gateway-status-live.test.ts). Services the page shows healthy are reported from it
 * without a probe; the others are probed layer by layer; an unreadable page means probing everything.
 */
import * as fs from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDoctor, type DoctorDeps } from "../../scripts/doctor";
import type { ExecResult } from "../../scripts/doctor/channels";
import type { GuestRef } from "../../scripts/doctor/plan";
import type { Report } from "../../scripts/doctor/report";
import type { StatusPage } from "../../scripts/doctor/status-page";
import { loadStack, ROOT, tempDir } from "../support";
import { testPki } from "../core/helpers";

const config = loadStack("Pulumi.prod.yaml");
const DOMAIN = config.host.domain;

let server: https.Server;
let port: number;
let dir: string;
/** What the stand-in answers: a page, or an HTTP status (403: not an admin network). */
let answer: StatusPage | number;
/** The guests and node commands the doctor ran, to see what it probed. */
const guestCalls: number[] = [];
const nodeCalls: string[] = [];

function page(change: (rows: StatusPage["routes"]) => void = () => undefined): StatusPage {
  const rows: StatusPage["routes"] = config.services.map((s) => ({
    route: config.routes.find((r) => r.service === s.name) ? `${DOMAIN}/${s.name}` : null,
    service: s.name,
    traefik: "UP",
    servers: { [`http://10.0.0.1:${s.port}`]: "UP" },
    gateway: config.routes.find((r) => r.service === s.name) ? { status: 200, ms: 4 } : null,
    ok: true,
  }));
  change(rows);
  return { generated: "2026-01-01T00:00:00.000Z", ok: rows.every((r) => r.ok), traefikError: null, routes: rows };
}

const ok = (stdout: string): ExecResult => ({ code: 0, stdout, stderr: "" });

function deps(): DoctorDeps {
  return {
    cwd: ROOT,
    stackOutputs: async () => undefined,
    channels: async () => ({
      node: {
        run: async (command: string) => {
          nodeCalls.push(command);
          return ok(command.includes("curl") ? "200 0" : "");
        },
      },
      guest: {
        run: async (guest: GuestRef, command: string) => {
          guestCalls.push(guest.vmid);
          // Healthy in the guest and on the host; Traefik answers 503 for the service host.
          if (command.includes("curl")) return ok(command.includes(".svc.") ? "503 0" : "200 0");
          return ok("active active\nprocess 42\nlisten 0.0.0.0:6333\nlisten 0.0.0.0:8000\nlisten 0.0.0.0:5678\nlisten 0.0.0.0:3000\n");
        },
      },
    }),
    // The gateway is the stand-in; every other address is refused at once (telemetry, the gateway layer's probe).
    resolve: (a) => (a.port === 443 && a.host === config.guests.find((g) => g.role?.type === "nginx-gateway")!.network.ip.split("/")[0] ? { host: "127.0.0.1", port } : { host: "127.0.0.1", port: 1 }),
  };
}

async function doctor(): Promise<{ code: number; report: Report }> {
  guestCalls.length = 0;
  nodeCalls.length = 0;
  const { code, text } = await runDoctor(["prod", "--json", "--ca", `${dir}/ca.crt`], deps());
  return { code, report: JSON.parse(text) as Report };
}

beforeAll(async () => {
  dir = tempDir("doctor-status-page");
  const pki = testPki(dir);
  const [cert, key] = pki.issue("gateway", [DOMAIN]);
  server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    if (req.url !== "/_phoenix/status" || req.headers.host !== DOMAIN) return void res.writeHead(404).end();
    if (typeof answer === "number") return void res.writeHead(answer).end("<html>403 Forbidden</html>");
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("the doctor and the gateway's status page", () => {
  it("reports from the page when every route is healthy, without probing a guest", async () => {
    answer = page();
    const { code, report } = await doctor();
    expect(code).toBe(0);
    expect(report.notes).toContain(`status page https://${DOMAIN}/_phoenix/status: ${config.services.length} service(s) healthy there, the others probed layer by layer`);
    // (The node's own kernel preflight runs as always: service "node".)
    expect(new Set(report.findings.filter((f) => f.service !== "node").map((f) => f.check))).toEqual(new Set(["status page"]));
    expect(report.findings.find((f) => f.service === "qdrant" && f.layer === "gateway")?.detail).toBe(`${DOMAIN}/qdrant: HTTP 200 in 4 ms`);
    expect(guestCalls).toEqual([]);
  });

  it("probes only what the page shows down, and diagnoses it", async () => {
    answer = page((rows) => {
      const q = rows.find((r) => r.service === "qdrant")!;
      Object.assign(q, { traefik: "DOWN", servers: { "http://10.0.0.1:6333": "DOWN" }, gateway: { status: 503, ms: 3 }, ok: false });
    });
    const { code, report } = await doctor();
    expect(code).toBe(1);
    expect(report.diagnoses.map((d) => d.service)).toEqual(["qdrant"]);
    expect(report.diagnoses[0]).toMatchObject({ layer: "traefik", check: "status page", failure: "backend-down", detail: "Traefik's health check: http://10.0.0.1:6333 DOWN" });
    // Layer-by-layer probes ran for qdrant alone.
    const probed = new Set(report.findings.filter((f) => f.check !== "status page" && f.service !== "node").map((f) => f.service));
    expect(probed).toEqual(new Set(["qdrant"]));
    expect(new Set(guestCalls)).toEqual(new Set([1002, 101]));
  });

  it("falls back to probing every layer when the page cannot be read, and says why", async () => {
    answer = 403;
    const { report } = await doctor();
    expect(report.notes).toContain(`status page https://${DOMAIN}/_phoenix/status not read (HTTP 403 (this machine is not in host.adminNetworks)): every layer of every service probed`);
    expect(new Set(report.findings.filter((f) => f.layer === "guest").map((f) => f.service))).toEqual(new Set(config.services.map((s) => s.name)));
  });
});
