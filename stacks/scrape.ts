/**
 * What the ops guest's Prometheus scrapes over the network, derived once from the stack:
 * which machine (the host node or a guest), which port, for which job. The scrape
 * configuration (components/observability/config.render.ts scrapeJobs) is built from it, and
 * so are the firewall ACCEPTs that let the ops guest reach those ports
 * (stacks/firewall-rules.ts scrapeRules), so the two can never disagree.
 */
import { guestAddress } from "./plan";
import type { Guest, StackConfig } from "./schema";

/** Traefik's internal entry point ("traefik"): its ping, dashboard and Prometheus metrics (metrics.prometheus.entryPoint defaults to it). */
export const TRAEFIK_INTERNAL_PORT = 8080;

export type ScrapeJobName = "node" | "gpu" | "model-servers" | "traefik" | "gateway";

/** One exporter the ops guest scrapes over the network: on the host node, or in a guest. */
export interface ScrapePoint {
  job: ScrapeJobName;
  /** The guest it runs in, or "host" for the node Phoenix prepares (host.address). */
  on: Guest | "host";
  port: number;
  /** Labels beyond the machine's own (the model server's engine). */
  labels?: Record<string, string>;
}

/** The ops guest, when the stack has one. */
export function opsGuest(config: Pick<StackConfig, "guests">): Guest | undefined {
  return config.guests.find((g) => g.role?.type === "observability");
}

/**
 * Every exporter the ops guest scrapes over the network, in job order. Guests on DHCP have no
 * address to scrape and are left out; the ops guest's own services are scraped on its loopback.
 */
export function scrapePoints(config: StackConfig): ScrapePoint[] {
  // Validation refuses a second ops guest, but walks the firewall of an invalid stack too: the first one decides.
  const ops = opsGuest(config);
  if (ops?.role?.type !== "observability") return [];
  const role = ops.role;
  const withAddress = config.guests.filter((g) => guestAddress(g) !== undefined);
  const points: ScrapePoint[] = [];
  // node_exporter on the host (its ZFS collector is on by default: node_exporter@v1.12.1 collector/zfs_common.go:19) and in every
  // container, where Phoenix installs it (components/observability/exporters.ts); not yet in VMs, whose image does not carry it.
  points.push({ job: "node", on: "host", port: role.nodeExporter.port }, ...withAddress.filter((g) => g.kind === "lxc").map((g): ScrapePoint => ({ job: "node", on: g, port: role.nodeExporter.port })));
  // The GPU exporter runs where the driver is: on the host for lxc-shared GPUs, in the VM a GPU is passed through to.
  if (config.host.gpus.some((g) => g.mode === "lxc-shared")) points.push({ job: "gpu", on: "host", port: role.gpuExporterPort });
  const passthrough = new Set(config.host.gpus.filter((g) => g.mode === "vm-passthrough").map((g) => g.id));
  for (const g of withAddress) if (g.kind === "vm" && g.gpus.some((id) => passthrough.has(id))) points.push({ job: "gpu", on: g, port: role.gpuExporterPort });
  // vLLM serves /metrics on its API port; llama-server with --metrics (stacks/options/llamacpp.ts).
  // Ollama 0.12.6 is left out: unverified that it serves Prometheus metrics at all (no /metrics route was found).
  for (const g of withAddress) {
    if (g.role?.type === "model-server" && g.role.server.engine !== "ollama") points.push({ job: "model-servers", on: g, port: g.role.server.port, labels: { engine: g.role.server.engine } });
  }
  // Traefik's Prometheus metrics on its internal entry point.
  for (const g of withAddress) if (g.role?.type === "traefik") points.push({ job: "traefik", on: g, port: TRAEFIK_INTERNAL_PORT });
  // The gateway's nginx-prometheus-exporter (components/observability/exporters.render.ts), reading nginx's loopback stub_status.
  for (const g of withAddress) if (g.role?.type === "nginx-gateway") points.push({ job: "gateway", on: g, port: role.nginxExporter.port });
  return points;
}
