/** Pure planning over a validated configuration: figures other parts report or check. */
import { parseCidr, subnetOf, type Cidr } from "./net";
import type { Guest, Host, StackConfig, Template } from "./schema";

/** A guest's static address without its prefix; undefined for DHCP. */
export function guestAddress(g: Guest): string | undefined {
  return g.network.ip === "dhcp" ? undefined : g.network.ip.split("/")[0];
}

/** Subnet and gateway of a (bridge, VLAN) pair: the host's own for the untagged management bridge, else as declared. */
export function bridgeNetwork(host: Host, bridge: string, vlan: number | undefined): { subnet: Cidr; gateway?: string } | undefined {
  const hostCidr = parseCidr(host.address);
  if (bridge === host.managementBridge && vlan === undefined && hostCidr) return { subnet: parseCidr(subnetOf(hostCidr))!, gateway: host.gateway };
  const b = host.bridges.find((x) => x.name === bridge && x.vlan === vlan);
  const subnet = b && parseCidr(b.subnet);
  return subnet ? { subnet, gateway: b.gateway } : undefined;
}

export interface GpuUser {
  guest: string;
  engine: "vllm" | "ollama" | "llamacpp";
  /** Fraction of the card's memory this server takes on this GPU. */
  share: number;
  memoryGiB: number;
}

export interface GpuAllocation {
  gpu: number;
  model: string;
  memoryGiB: number;
  /** Sum of vLLM gpuMemoryUtilization on this GPU. */
  vllmUtilization: number;
  totalGiB: number;
  users: GpuUser[];
}

/**
 * Per-GPU memory budget of the model servers. vLLM reserves its utilization
 * fraction on every GPU it spans; Ollama and llama.cpp declare VRAM in GiB for
 * the whole server, spread evenly over its GPUs.
 */
export function gpuAllocation(config: StackConfig): GpuAllocation[] {
  const table = new Map<number, GpuAllocation>(
    config.host.gpus.map((g) => [g.id, { gpu: g.id, model: g.model, memoryGiB: g.memoryGiB, vllmUtilization: 0, totalGiB: 0, users: [] }]),
  );
  for (const guest of config.guests) {
    if (guest.role?.type !== "model-server" || guest.gpus.length === 0) continue;
    const server = guest.role.server;
    const label = `${guest.vmid} ${guest.name}`;
    for (const id of guest.gpus) {
      const alloc = table.get(id);
      if (!alloc) continue;
      let memoryGiB: number;
      if (server.engine === "vllm") {
        memoryGiB = server.gpuMemoryUtilization * alloc.memoryGiB;
        alloc.vllmUtilization += server.gpuMemoryUtilization;
      } else {
        const vram = server.engine === "ollama" ? server.models.reduce((sum, m) => sum + m.vramGiB, 0) : server.vramGiB;
        memoryGiB = vram / guest.gpus.length;
      }
      alloc.totalGiB += memoryGiB;
      alloc.users.push({ guest: label, engine: server.engine, share: Math.round((memoryGiB / alloc.memoryGiB) * 1000) / 1000, memoryGiB });
    }
  }
  return [...table.values()];
}

export interface CloneJob {
  vmid: number;
  /** The template it is cloned from. */
  source: number;
  /** Storage its disk is allocated on. */
  storage: string;
  /** Lower goes first within a chain: the guest's boot order, as others tend to wait for it. */
  priority?: number;
}

/**
 * Orders clones so that PVE's locks never collide: all clones of one template
 * run one after another (a clone locks its source for the whole task), and at
 * most `perStorage` clone chains run at once on a storage. Returns, for each
 * clone, the clone it must wait for.
 */
export function planCloneOrder(jobs: readonly CloneJob[], perStorage = 2): Map<number, number> {
  const chains = new Map<number, CloneJob[]>();
  const rank = (j: CloneJob) => j.priority ?? Number.MAX_SAFE_INTEGER;
  for (const job of [...jobs].sort((a, b) => rank(a) - rank(b) || a.vmid - b.vmid)) chains.set(job.source, [...(chains.get(job.source) ?? []), job]);
  // A chain runs on the storage most of its clones use; ties go to the first clone's.
  const lanes = new Map<string, CloneJob[][]>();
  const ordered = [...chains.values()].sort((a, b) => b.length - a.length || a[0]!.source - b[0]!.source);
  for (const chain of ordered) {
    const storage = primaryStorage(chain);
    const storageLanes = lanes.get(storage) ?? [];
    if (storageLanes.length < perStorage) storageLanes.push([...chain]);
    else storageLanes.reduce((short, lane) => (lane.length < short.length ? lane : short)).push(...chain);
    lanes.set(storage, storageLanes);
  }
  const after = new Map<number, number>();
  for (const storageLanes of lanes.values()) {
    for (const lane of storageLanes) lane.forEach((job, i) => i > 0 && after.set(job.vmid, lane[i - 1]!.vmid));
  }
  return after;
}

function primaryStorage(chain: CloneJob[]): string {
  const counts = new Map<string, number>();
  for (const job of chain) counts.set(job.storage, (counts.get(job.storage) ?? 0) + 1);
  return [...counts.entries()].reduce((best, entry) => (entry[1] > best[1] ? entry : best))[0];
}

export interface ModelOutput {
  id: string;
  kind: "chat" | "embedding";
  engine: "vllm" | "ollama" | "llamacpp";
  guest: number;
}

/** The models a guest serves, by the names clients put in a request's "model". */
export function modelsOf(g: Guest): ModelOutput[] {
  if (g.role?.type !== "model-server") return [];
  const s = g.role.server;
  switch (s.engine) {
    case "vllm":
      return [{ id: s.servedModelName, kind: s.task === "embed" ? "embedding" : "chat", engine: "vllm", guest: g.vmid }];
    case "llamacpp":
      return [{ id: s.servedModelName, kind: s.kind, engine: "llamacpp", guest: g.vmid }];
    case "ollama":
      return s.models.map((m) => ({ id: m.name, kind: m.kind, engine: "ollama" as const, guest: g.vmid }));
  }
}

/** The version a template pins for a layer, following its clone chain down to the template that installs it. */
export function templateVersion(config: StackConfig, vmid: number, key: string): string | undefined {
  const seen = new Set<number>();
  for (let t: Template | undefined = config.templates.find((x) => x.vmid === vmid); t && !seen.has(t.vmid); ) {
    seen.add(t.vmid);
    if (t.kind !== "lxc") return undefined;
    const pinned = t.versions[key];
    if (pinned !== undefined) return pinned;
    const source = t.source;
    t = "clone" in source ? config.templates.find((x) => x.vmid === source.clone) : undefined;
  }
  return undefined;
}
