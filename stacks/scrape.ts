/**
 * What the ops guest's Prometheus scrapes over the network, derived once from the stack:
 * which machine (the host node or a guest), which port, for which job. The scrape
 * configuration (components/observability/config.render.ts scrapeJobs) is built from it, and
 * so are the firewall ACCEPTs that let the ops guest reach those ports
 * (stacks/firewall-rules.ts scrapeRules), so the two can never disagree.
 */
import { guestAddress, trustsInternalCa } from "./plan";
import type { Guest, StackConfig } from "./schema";

/** Traefik's internal entry point ("traefik"): its ping, dashboard and Prometheus metrics (metrics.prometheus.entryPoint defaults to it). */
export const TRAEFIK_INTERNAL_PORT = 8080;

export type ScrapeJobName = "node" | "gpu" | "model-servers" | "model-servers-probe" | "traefik" | "gateway";

/** One exporter the ops guest scrapes over the network: on the host node, or in a guest. */
export interface ScrapePoint {
  job: ScrapeJobName;
  /** The guest it runs in, or "host" for the node Phoenix prepares (host.address). */
  on: Guest | "host";
  port: number;
  /** Labels beyond the machine's own (the model server's engine). */
  labels?: Record<string, string>;
  /** Not scraped: probed with an HTTP GET of this path through the ops guest's blackbox_exporter (a server with no metrics of its own). */
  httpProbePath?: string;
}

/** The ops guest, when the stack has one. */
export function opsGuest(config: Pick<StackConfig, "guests">): Guest | undefined {
  return config.guests.find((g) => g.role?.type === "observability");
}

/**
 * The labels that name a machine in metrics and logs alike: the guest's id, name and role, or for
 * the host "host", the node's name and "host". The scrape targets (components/observability/
 * config.render.ts) and Alloy's journal labels (alloy.render.ts) both take them from here.
 */
export function machineLabels(config: Pick<StackConfig, "host" | "proxmox">, on: Guest | "host"): { guest: string; name: string; role: string } {
  if (on === "host") return { guest: "host", name: config.host.node ?? config.proxmox.nodes[0]!.name, role: "host" };
  return { guest: String(on.vmid), name: on.name, role: on.role?.type ?? "none" };
}

/**
 * Whether Phoenix installs node_exporter and Alloy inside the guest: in every container (through
 * `pct exec`, components/observability/exporters.ts and alloy.ts), and in every VM whose cloud-init
 * user data Phoenix writes (the Docker hosts, stacks/plan.ts trustsInternalCa): that user data
 * installs the QEMU guest agent the same install scripts then arrive through
 * (components/observability/vm-agents.ts). A VM on the provider's generated user data has no
 * guest agent Phoenix can count on. Nor does a VM the HA manager keeps stopped (`ha.state:
 * stopped`): no agent answers in it, and a scrape target or log rule for it would only ever be down.
 */
export function runsNodeAgents(g: Guest): boolean {
  return g.kind === "lxc" || (trustsInternalCa(g) && g.ha?.state !== "stopped");
}

/**
 * Whether Alloy ships this guest's journal to Loki: a guest Phoenix installs its agents in
 * (runsNodeAgents) that is no member of an `isolated` security group. Loki takes pushes on the
 * same unauthenticated HTTP port that serves its query and delete API (components/observability/
 * loki.render.ts auth_enabled: false; grafana/loki v3.6.1 pkg/loki/modules.go serves
 * /loki/api/v1/delete there when retention is on): opening it to an isolated member would let it
 * read and delete every other machine's journal, which its isolation exists to prevent. Its
 * metrics are still scraped (inbound, from the ops guest).
 */
export function shipsJournal(config: Pick<StackConfig, "firewall">, g: Guest): boolean {
  return runsNodeAgents(g) && !config.firewall.groups.some((grp) => grp.isolated && g.firewall.groups.includes(grp.name));
}

/**
 * The machines whose journal Alloy ships to the ops guest's Loki, each with the address it pushes
 * from: the host node (host.address; components/observability/alloy.ts LogShipping) and every guest
 * Phoenix installs its agents in (runsNodeAgents). The ops guest pushes to its own address, which
 * the kernel keeps on its loopback (no PVE chain sees it), and a guest on DHCP has no address a rule
 * could name: both are left out. The ops guest's firewall ACCEPTs these (stacks/firewall-rules.ts
 * lokiPushRules).
 */
export function logShippers(config: Pick<StackConfig, "host" | "guests" | "firewall">): Array<{ on: Guest | "host"; address: string }> {
  const ops = opsGuest(config);
  const hostIp = config.host.address.split("/")[0]!;
  const guests = config.guests.filter((g) => g !== ops && shipsJournal(config, g)).flatMap((g) => {
    const address = guestAddress(g);
    return address === undefined ? [] : [{ on: g, address }];
  });
  return [{ on: "host", address: hostIp }, ...guests];
}

/**
 * Whether the GPU exporter runs inside this VM: a GPU is passed through to it and its user data
 * installs the NVIDIA driver (a compose host's `nvidia`, components/compose-host/user-data.ts), which
 * the exporter reads through nvidia-smi. For lxc-shared GPUs it runs on the host instead.
 */
export function runsGpuExporter(config: Pick<StackConfig, "host">, g: Guest): boolean {
  if (g.kind !== "vm" || g.role?.type !== "compose-host" || !g.role.nvidia) return false;
  const passthrough = new Set(config.host.gpus.filter((x) => x.mode === "vm-passthrough").map((x) => x.id));
  return g.gpus.some((id) => passthrough.has(id));
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
  // guest Phoenix installs it in (runsNodeAgents).
  points.push({ job: "node", on: "host", port: role.nodeExporter.port }, ...withAddress.filter(runsNodeAgents).map((g): ScrapePoint => ({ job: "node", on: g, port: role.nodeExporter.port })));
  // The GPU exporter runs where the driver is: on the host for lxc-shared GPUs, in the VM a GPU is passed through to.
  if (config.host.gpus.some((g) => g.mode === "lxc-shared")) points.push({ job: "gpu", on: "host", port: role.gpuExporterPort });
  for (const g of withAddress) if (runsGpuExporter(config, g)) points.push({ job: "gpu", on: g, port: role.gpuExporterPort });
  // vLLM serves /metrics on its API port; llama-server with --metrics (stacks/options/llamacpp.ts).
  // Ollama serves no Prometheus metrics: ollama@v0.12.6 server/routes.go GenerateRoutes registers no /metrics route (and go.mod
  // has no Prometheus client), so its API is probed instead: GET /api/version answers 200 {"version":…} (routes.go:1458).
  for (const g of withAddress) {
    if (g.role?.type !== "model-server") continue;
    const engine = g.role.server.engine;
    points.push(engine === "ollama" ? { job: "model-servers-probe", on: g, port: g.role.server.port, labels: { engine }, httpProbePath: "/api/version" } : { job: "model-servers", on: g, port: g.role.server.port, labels: { engine } });
  }
  // Traefik's Prometheus metrics on its internal entry point.
  for (const g of withAddress) if (g.role?.type === "traefik") points.push({ job: "traefik", on: g, port: TRAEFIK_INTERNAL_PORT });
  // The gateway's nginx-prometheus-exporter (components/observability/exporters.render.ts), reading nginx's loopback stub_status.
  for (const g of withAddress) if (g.role?.type === "nginx-gateway") points.push({ job: "gateway", on: g, port: role.nginxExporter.port });
  return points;
}
