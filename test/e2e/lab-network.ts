/**
 * The lab network as an e2e apply sees it: the guests' addresses answered by local stand-ins.
 *
 * - Step-CA's root: one throwaway CA stands in for the root the CA guest's install prints, and
 *   signs the certificate every stand-in presents, so Phoenix verifies TLS the way it does
 *   against the real guests (names and addresses from the stack).
 * - Portainer at the portainer-server VM's address: the Portainer simulator.
 * - The gateway's address: answers a routed stack's health path only while the Portainer
 *   simulator holds that stack (Qdrant's `/qdrant/healthz` answers once `qdrant` is deployed).
 *
 * - The publishers of the VM templates' images: their SHA256SUMS.
 *
 * Connections to a mapped `address:port` go to the stand-in's local port instead (the TLS name
 * checked stays the one asked for), for this process only, until `close()`.
 */
import * as crypto from "node:crypto";
import * as https from "node:https";
import * as tls from "node:tls";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { formatStepCaOutput } from "../../components/core/step-ca.render";
import { guestIp } from "../../components/core/routing";
import { serviceUrls } from "../../stacks/outputs";
import { guestAddress } from "../../stacks/plan";
import type { StackConfig } from "../../stacks/schema";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { generateCertificates, type SimCertificates } from "../pve-sim/tls";

export interface LabNetwork {
  /** What the CA guest's install prints, with the stand-in root. */
  caStdout: string;
  caPem: string;
  portainer?: PortainerSim;
  close(): Promise<void>;
}

type Route = Map<string, number>;

/** The digest the stand-in publisher lists for an image URL. */
export function imageDigest(url: string): string {
  return crypto.createHash("sha256").update(`phoenix e2e image ${url}`).digest("hex");
}

/** Redirects connections to mapped `host:port` pairs; returns the undo. */
function redirect(routes: Route): () => void {
  const original = net.Socket.prototype.connect;
  const patched = function (this: net.Socket, ...args: unknown[]) {
    const first = Array.isArray(args[0]) ? (args[0] as unknown[])[0] : args[0];
    if (first !== null && typeof first === "object") {
      const o = first as { host?: string; port?: number };
      const to = routes.get(`${o.host}:${o.port}`);
      if (to !== undefined) {
        o.host = "127.0.0.1";
        o.port = to;
      }
    }
    return (original as (...a: unknown[]) => net.Socket).apply(this, args);
  };
  net.Socket.prototype.connect = patched as typeof original;
  return () => {
    net.Socket.prototype.connect = original;
  };
}

async function listen(server: https.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

export async function startLabNetwork(config: StackConfig): Promise<LabNetwork> {
  const routes: Route = new Map();
  const names = new Set<string>(["IP:127.0.0.1"]);
  for (const g of config.guests) if (guestAddress(g)) names.add(`IP:${guestAddress(g)}`);
  names.add(`DNS:*.${config.host.domain}`);
  for (const t of config.templates) if (t.kind === "vm" && t.source.sha256SumsUrl !== undefined) names.add(`DNS:${new URL(t.source.sha256SumsUrl).hostname}`);
  names.add(`DNS:${config.host.domain}`);
  const certs: SimCertificates = await generateCertificates([...names]);
  const closers: Array<() => Promise<void>> = [];

  let portainer: PortainerSim | undefined;
  const server = config.guests.find((g) => g.role?.type === "portainer-server");
  if (server && server.role?.type === "portainer-server") {
    const agents = config.guests.filter((g) => g.role?.type === "portainer-agent").map((g) => `tcp://${guestIp(g)}:9001`);
    portainer = await startPortainerSim({ agents, certificates: certs });
    routes.set(`${guestIp(server)}:${server.role.port}`, Number(new URL(portainer.url).port));
    const p = portainer;
    closers.push(() => p.stop());
  }

  const gateway = config.guests.find((g) => g.role?.type === "nginx-gateway");
  if (gateway) {
    // Each routed service's health URL, as the docker tier checks it: path → the stack that must be deployed.
    const healthPaths = new Map<string, string>();
    for (const [name, url] of Object.entries(serviceUrls(config))) {
      const service = config.services.find((s) => s.name === name);
      if (service?.healthPath) healthPaths.set(new URL(`${url.replace(/\/$/, "")}${service.healthPath}`).pathname, name);
    }
    const stand = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      const stack = healthPaths.get(req.url ?? "");
      const up = stack !== undefined && portainer?.state.stacks.some((s) => s.Name === stack) === true;
      res.writeHead(up ? 200 : 502);
      res.end(up ? "healthz check passed" : "bad gateway");
    });
    routes.set(`${guestIp(gateway)}:443`, await listen(stand));
    closers.push(() => new Promise<void>((resolve) => { stand.closeAllConnections(); stand.close(() => resolve()); }));
  }

  // The publishers of the VM templates' images: each serves its SHA256SUMS, over TLS the
  // process trusts (the lab CA is added to the default agent's roots while the network is up).
  const images = new Map<string, string>();
  for (const t of config.templates) {
    if (t.kind !== "vm" || t.source.sha256SumsUrl === undefined) continue;
    const file = new URL(t.source.url).pathname.split("/").pop()!;
    images.set(new URL(t.source.sha256SumsUrl).pathname, `${imageDigest(t.source.url)} *${file}\n`);
  }
  if (images.size > 0) {
    const publisher = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      const text = images.get(req.url ?? "");
      res.writeHead(text === undefined ? 404 : 200);
      res.end(text ?? "not found");
    });
    const port = await listen(publisher);
    for (const t of config.templates) if (t.kind === "vm" && t.source.sha256SumsUrl !== undefined) routes.set(`${new URL(t.source.sha256SumsUrl).hostname}:443`, port);
    closers.push(() => new Promise<void>((resolve) => { publisher.closeAllConnections(); publisher.close(() => resolve()); }));
    const options = https.globalAgent.options;
    const before = options.ca;
    options.ca = [...tls.rootCertificates, certs.caPem];
    closers.push(async () => {
      options.ca = before;
    });
  }

  const undo = redirect(routes);
  return {
    caStdout: formatStepCaOutput(certs.caPem),
    caPem: certs.caPem,
    portainer,
    async close() {
      undo();
      await Promise.all(closers.map((c) => c()));
    },
  };
}
