/**
 * The prod stack's services as real local servers: one HTTP(S) server per service,
 * a Traefik stand-in routing by Host over TLS, and a gateway stand-in terminating
 * TLS with a swappable certificate and routing by the stack's routes. Guest state
 * (units, sockets, GPU) lives in files the stand-in tools report; the node is a
 * real sshd. Each breakage a test makes is undone by `reset`.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as ts from "typescript";
import { guestIp, guestOfRole, serviceHost } from "../../stacks/routing";
import { telemetryStandIns, type TelemetryStandIns } from "./telemetry-standins";
import { sshNode, guestsViaNode, type NodeExec } from "../../scripts/doctor/channels";
import { GATEWAY_CA_FILE, TRAEFIK_PORT, unitOf, type Address } from "../../scripts/doctor/plan";
import type { DoctorDeps } from "../../scripts/doctor";
import { readStackFile, validateStack } from "../../stacks/load";
import { modelsOf } from "../../stacks/plan";
import type { Service, StackConfig } from "../../stacks/schema";
import type { Sandbox } from "../rig/sandbox";
import { startSshd, type SshRig } from "../rig/sshd";
import { makeCa, type Issued, type TestCa } from "./pki";
import { STATE_FILE, type GuestState } from "./standins";

export const ROOT = path.resolve(__dirname, "..", "..");
export const HOST_DRIVER = "580.95.05";

export type GatewayCert = "valid" | "expired" | "other-ca";

export interface World {
  config: StackConfig;
  ca: TestCa;
  /** An outputs file as `pulumi stack output --json` would print it. */
  outputsFile: string;
  deps: DoctorDeps;
  /** The node's own state (kernels, DKMS), as the rig's stand-ins keep it. */
  node: Sandbox;
  setGuest(vmid: number, change: (s: GuestState) => void): void;
  stopService(name: string): Promise<void>;
  useGatewayCert(kind: GatewayCert): void;
  dropTraefikRoute(service: string): void;
  /** The ops guest's Prometheus and Loki stand-ins: what they answer, what they were asked. */
  telemetry: TelemetryStandIns;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

function loadProd(): StackConfig {
  const result = validateStack(readStackFile(path.join(ROOT, "Pulumi.prod.yaml")), { requireSecrets: false });
  if (result.ok !== true) throw new Error(`Pulumi.prod.yaml does not validate: ${JSON.stringify(result)}`);
  return result.config;
}

function listen(server: http.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Forwards a request and relays the status; an unreachable upstream is a 502, as proxies answer. */
function relay(res: http.ServerResponse, request: (cb: (up: http.IncomingMessage) => void) => http.ClientRequest): void {
  const req = request((up) => {
    res.writeHead(up.statusCode ?? 502);
    up.pipe(res);
  });
  req.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end("Bad Gateway\n");
  });
  req.end();
}

function installStandIns(dir: string): string {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  const script = path.join(dir, "standins.cjs");
  const source = fs.readFileSync(path.join(__dirname, "standins.ts"), "utf8");
  fs.writeFileSync(script, ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText);
  for (const tool of ["pct", "qm", "systemctl", "ss", "nvidia-smi"]) {
    fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(script)} ${tool} "$@"\n`, { mode: 0o755 });
  }
  // A Proxmox node has curl; the rig's sandbox (a node without network tools) does not.
  fs.symlinkSync("/usr/bin/curl", path.join(bin, "curl"));
  return bin;
}

export async function startWorld(): Promise<World> {
  const config = loadProd();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-doctor-"));
  const ca = makeCa(dir, "Phoenix Doctor Test Root");
  const otherCa = makeCa(dir, "Some Other Root");
  const domain = config.host.domain;
  const gatewayNames = [domain, ...config.routes.flatMap((r) => (r.host ? [r.host] : []))];
  const gatewayCerts: Record<GatewayCert, Issued> = {
    valid: ca.issue("gateway", gatewayNames),
    expired: ca.issue("gateway-expired", gatewayNames, { start: "20240101000000Z", end: "20240201000000Z" }),
    "other-ca": otherCa.issue("gateway-other", gatewayNames),
  };
  const traefikCert = ca.issue("traefik", config.services.map((s) => serviceHost(config, s)));
  const backendCert = ca.issue("backend", ["backend.test"]);

  // Where each guest address really is.
  const ports = new Map<string, number>();
  const resolve = (a: Address): Address => ({ host: "127.0.0.1", port: ports.get(`${a.host}:${a.port}`) ?? 1 });
  const ipOf = (vmid: number) => guestIp(config.guests.find((g) => g.vmid === vmid)!);

  const services = new Map<string, { service: Service; server: http.Server; port: number }>();
  const serve = (service: Service): http.Server => {
    const handler: http.RequestListener = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`${service.name} ok\n`);
    };
    return service.scheme === "https" ? https.createServer({ cert: backendCert.cert, key: backendCert.key }, handler) : http.createServer(handler);
  };
  for (const service of config.services) {
    const server = serve(service);
    const port = await listen(server);
    services.set(service.name, { service, server, port });
    ports.set(`${ipOf(service.guest)}:${service.port}`, port);
  }

  const traefikRoutes = new Map<string, Service>();
  const routeAll = () => config.services.forEach((s) => traefikRoutes.set(serviceHost(config, s), s));
  routeAll();
  const traefik = https.createServer({ cert: traefikCert.cert, key: traefikCert.key }, (req, res) => {
    const service = traefikRoutes.get((req.headers.host ?? "").replace(/:\d+$/, ""));
    if (!service) {
      res.writeHead(404);
      return void res.end("404 page not found\n");
    }
    const to = resolve({ host: ipOf(service.guest), port: service.port });
    const lib = service.scheme === "https" ? https : http;
    relay(res, (cb) => lib.request({ host: to.host, port: to.port, path: req.url, rejectUnauthorized: false }, cb));
  });
  ports.set(`${ipOf(config.guests.find((g) => g.role?.type === "traefik")!.vmid)}:${TRAEFIK_PORT}`, await listen(traefik));

  const gateway = https.createServer({ cert: gatewayCerts.valid.cert, key: gatewayCerts.valid.key }, (req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "");
    const url = req.url ?? "/";
    const route = config.routes.filter((r) => (r.host ?? domain) === host && url.startsWith(r.path)).sort((a, b) => b.path.length - a.path.length)[0];
    const model = decodeURIComponent(url.split("/").pop() ?? "");
    const server = route?.byModel ? config.guests.find((g) => modelsOf(g).some((m) => m.id === model)) : undefined;
    const service = route?.byModel ? config.services.find((s) => s.guest === server?.vmid) : config.services.find((s) => s.name === route?.service);
    if (!route || !service) {
      res.writeHead(404);
      return void res.end("not found\n");
    }
    const to = resolve({ host: ipOf(config.guests.find((g) => g.role?.type === "traefik")!.vmid), port: TRAEFIK_PORT });
    const name = serviceHost(config, service);
    const upstreamPath = route.stripPrefix ? `/${url.slice(route.path.length)}` : url;
    relay(res, (cb) => https.request({ host: to.host, port: to.port, path: upstreamPath, servername: name, headers: { host: name }, ca: ca.certPem }, cb));
  });
  const gatewayGuest = config.guests.find((g) => g.role?.type === "nginx-gateway")!;
  ports.set(`${ipOf(gatewayGuest.vmid)}:443`, await listen(gateway));
  // The ops guest's Prometheus and Loki APIs (telemetry-standins.ts), which the doctor reads for failing backends.
  const telemetry = telemetryStandIns();
  const ops = guestOfRole(config, "observability");
  ports.set(`${ipOf(ops.vmid)}:${ops.role.prometheus.port}`, await listen(telemetry.prometheus));
  ports.set(`${ipOf(ops.vmid)}:${ops.role.loki.port}`, await listen(telemetry.loki));

  // The guests: every one running, its units active, its service ports listening, GPU guests with the host's driver.
  const guestsDir = path.join(dir, "guests");
  const healthy = (vmid: number): GuestState => {
    const g = config.guests.find((x) => x.vmid === vmid)!;
    const units = [...new Set([unitOf(g), ...config.services.filter((s) => s.guest === vmid).map((s) => unitOf(g, s.port))])].filter((u): u is string => u !== undefined);
    return {
      running: true,
      units: Object.fromEntries(units.map((u) => [u, { active: "active", pid: process.pid }])),
      listening: config.services.filter((s) => s.guest === vmid).map((s) => `0.0.0.0:${s.port}`),
      ...(g.gpus.length > 0 ? { driver: HOST_DRIVER } : {}),
    };
  };
  const stateFile = (vmid: number) => path.join(guestsDir, String(vmid), STATE_FILE);
  const writeGuests = () => {
    for (const g of config.guests) {
      fs.mkdirSync(path.dirname(stateFile(g.vmid)), { recursive: true });
      fs.writeFileSync(stateFile(g.vmid), JSON.stringify(healthy(g.vmid)));
    }
    const caFile = path.join(guestsDir, String(gatewayGuest.vmid), GATEWAY_CA_FILE);
    fs.mkdirSync(path.dirname(caFile), { recursive: true });
    fs.writeFileSync(caFile, ca.certPem);
  };
  writeGuests();

  const outputsFile = path.join(dir, "outputs.json");
  fs.writeFileSync(outputsFile, JSON.stringify({ caRootPem: ca.certPem, gatewayUrl: `https://${domain}` }));

  const rig: SshRig = await startSshd();
  const bin = installStandIns(dir);
  const ssh = sshNode(rig.connection);
  // The rig's sessions see the sandbox's PATH; the node's curl, pct and qm come first.
  const node: NodeExec = { run: (command) => ssh.run(`export PATH=${bin}:"$PATH" DOCTOR_GUESTS=${guestsDir}; ${command}`) };

  const stopped = new Set<string>();
  return {
    config,
    ca,
    outputsFile,
    node: rig.sandbox,
    deps: { cwd: ROOT, channels: async () => ({ node, guest: guestsViaNode(node) }), resolve, now: () => new Date() },
    setGuest(vmid, change) {
      const s = JSON.parse(fs.readFileSync(stateFile(vmid), "utf8")) as GuestState;
      change(s);
      fs.writeFileSync(stateFile(vmid), JSON.stringify(s));
    },
    async stopService(name) {
      stopped.add(name);
      await close(services.get(name)!.server);
    },
    telemetry,
    useGatewayCert(kind) {
      gateway.setSecureContext({ cert: gatewayCerts[kind].cert, key: gatewayCerts[kind].key });
    },
    dropTraefikRoute(name) {
      traefikRoutes.delete(serviceHost(config, services.get(name)!.service));
    },
    async reset() {
      for (const name of stopped) {
        const s = services.get(name)!;
        s.server = serve(s.service);
        await listen(s.server, s.port);
      }
      stopped.clear();
      routeAll();
      gateway.setSecureContext({ cert: gatewayCerts.valid.cert, key: gatewayCerts.valid.key });
      writeGuests();
      telemetry.reset();
    },
    async stop() {
      await Promise.all([...[...services.values()].filter((s) => !stopped.has(s.service.name)).map((s) => close(s.server)), close(traefik), close(gateway), close(telemetry.prometheus), close(telemetry.loki)]);
      await rig.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
