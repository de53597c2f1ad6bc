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
import { guestIp } from "../../stacks/routing";
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

/** An HTTPS stand-in on a free local port, presenting the lab certificate; returns its port. */
async function serve(certs: SimCertificates, closers: Array<() => Promise<void>>, answer: (path: string) => { status: number; body: string }): Promise<number> {
  const server = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    const a = answer(req.url ?? "");
    res.writeHead(a.status);
    res.end(a.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

export async function startLabNetwork(config: StackConfig): Promise<LabNetwork> {
  const routes: Route = new Map();
  // The VM templates whose image digest is read from a publisher's SHA256SUMS.
  const published = config.templates.flatMap((t) => (t.kind === "vm" && t.source.sha256SumsUrl !== undefined ? [{ image: t.source.url, sums: new URL(t.source.sha256SumsUrl) }] : []));
  const names = new Set<string>(["IP:127.0.0.1", `DNS:${config.host.domain}`, `DNS:*.${config.host.domain}`]);
  for (const g of config.guests) if (guestAddress(g)) names.add(`IP:${guestAddress(g)}`);
  for (const p of published) names.add(`DNS:${p.sums.hostname}`);
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
    const port = await serve(certs, closers, (path) => {
      const stack = healthPaths.get(path);
      const up = stack !== undefined && portainer?.state.stacks.some((s) => s.Name === stack) === true;
      return up ? { status: 200, body: "healthz check passed" } : { status: 502, body: "bad gateway" };
    });
    routes.set(`${guestIp(gateway)}:443`, port);
  }

  // The publishers of the VM templates' images: each serves its SHA256SUMS, over TLS the
  // process trusts (the lab CA is added to the default agent's roots while the network is up).
  if (published.length > 0) {
    const sums = new Map(published.map((p) => [p.sums.pathname, `${imageDigest(p.image)} *${new URL(p.image).pathname.split("/").pop()!}\n`]));
    const port = await serve(certs, closers, (path) => {
      const text = sums.get(path);
      return text === undefined ? { status: 404, body: "not found" } : { status: 200, body: text };
    });
    for (const p of published) routes.set(`${p.sums.hostname}:443`, port);
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
