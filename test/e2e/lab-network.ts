/**
 * The lab network as an e2e apply sees it: the guests' addresses answered by local stand-ins.
 *
 * - Step-CA's root: one throwaway CA stands in for the root the CA guest's install prints, and
 *   signs the certificate every stand-in presents, so Phoenix verifies TLS the way it does
 *   against the real guests (names and addresses from the stack).
 * - Portainer at the portainer-server VM's address: the Portainer simulator, its server and
 *   agents holding the AGENT_SECRET their containers were last (re)created with in the VMs.
 * - The gateway's address: answers a routed stack's health path only while the Portainer
 *   simulator holds that stack (Qdrant's `/qdrant/healthz` answers once `qdrant` is deployed).
 *
 * - The publishers of the VM templates' images: their SHA256SUMS.
 *
 * Connections to a mapped `address:port` go to the stand-in's local port instead (the TLS name
 * checked stays the one asked for), in this process until `close()`, and in a child Node process
 * started with `childEnv` (the SDK's dynamic-provider host, ./wire).
 */
import * as crypto from "node:crypto";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { formatStepCaOutput } from "../../components/core/step-ca.render";
import { guestIp } from "../../stacks/routing";
import { serviceUrls } from "../../stacks/outputs";
import { guestAddress } from "../../stacks/plan";
import type { StackConfig } from "../../stacks/schema";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { PORTAINER_AGENT_DIR, PORTAINER_DIR } from "../../components/docker/portainer";
import { generateCertificates, type SimCertificates } from "../pve-sim/tls";

export interface LabNetwork {
  /** What the CA guest's install prints, with the stand-in root. */
  caStdout: string;
  caPem: string;
  portainer?: PortainerSim;
  /** Added to a child Node process's environment, it reroutes that process the same way (./lab-reroute.cjs). */
  childEnv: Record<string, string>;
  close(): Promise<void>;
}

type Route = Map<string, number>;

/** The rerouting itself, shared with processes the harness spawns (a preload there). */
const reroute = require("./lab-reroute.cjs") as {
  install(routes: Route, caPem?: string): () => void;
  preloadEnv(routes: Route, caPem?: string): Record<string, string>;
};

/** The digest the stand-in publisher lists for an image URL. */
export function imageDigest(url: string): string {
  return crypto.createHash("sha256").update(`phoenix e2e image ${url}`).digest("hex");
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

/** The environment a VM's compose project's containers were last started with, if they run. */
export type GuestEnv = (vmid: number, composeFile: string) => Record<string, string> | undefined;

export async function startLabNetwork(config: StackConfig, guestEnv?: GuestEnv): Promise<LabNetwork> {
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
    const agentVms = config.guests.filter((g) => g.role?.type === "portainer-agent");
    const agents = agentVms.map((g) => `tcp://${guestIp(g)}:9001`);
    const secretOf = (vmid: number, dir: string) => guestEnv?.(vmid, `${dir}/compose.yaml`)?.AGENT_SECRET;
    const agentSecrets = guestEnv && {
      server: () => secretOf(server.vmid, PORTAINER_DIR),
      agent: (at: string) => {
        const g = agentVms.find((x) => `${guestIp(x)}:9001` === at);
        return g && secretOf(g.vmid, PORTAINER_AGENT_DIR);
      },
    };
    portainer = await startPortainerSim({ agents, certificates: certs, ...(agentSecrets ? { agentSecrets } : {}) });
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
  let trusted: string | undefined;
  if (published.length > 0) {
    const sums = new Map(published.map((p) => [p.sums.pathname, `${imageDigest(p.image)} *${new URL(p.image).pathname.split("/").pop()!}\n`]));
    const port = await serve(certs, closers, (path) => {
      const text = sums.get(path);
      return text === undefined ? { status: 404, body: "not found" } : { status: 200, body: text };
    });
    for (const p of published) routes.set(`${p.sums.hostname}:443`, port);
    trusted = certs.caPem;
  }

  const undo = reroute.install(routes, trusted);
  return {
    caStdout: formatStepCaOutput(certs.caPem),
    caPem: certs.caPem,
    portainer,
    childEnv: reroute.preloadEnv(routes, trusted),
    async close() {
      undo();
      await Promise.all(closers.map((c) => c()));
    },
  };
}
