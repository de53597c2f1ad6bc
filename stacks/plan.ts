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
  /** Guests it waits for anyway (dependsOn and the like): they are cloned before it. */
  after?: readonly number[];
}

/**
 * Orders clones so that PVE's locks never collide: all clones of one template
 * run one after another (a clone locks its source for the whole task), and at
 * most `perStorage` clone chains run at once on a storage. Returns, for each
 * clone, the clone it must wait for. Every lane follows one order of all jobs
 * that respects `after`, so these waits never close a cycle with the
 * dependencies (when those have none themselves).
 */
export function planCloneOrder(jobs: readonly CloneJob[], perStorage = 2): Map<number, number> {
  const rank = (j: CloneJob) => j.priority ?? Number.MAX_SAFE_INTEGER;
  const global = dependencyOrder([...jobs].sort((a, b) => rank(a) - rank(b) || a.vmid - b.vmid));
  const position = new Map(global.map((j, i) => [j.vmid, i]));
  const chains = new Map<number, CloneJob[]>();
  for (const job of global) chains.set(job.source, [...(chains.get(job.source) ?? []), job]);
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
    for (const lane of storageLanes) {
      lane.sort((a, b) => position.get(a.vmid)! - position.get(b.vmid)!);
      lane.forEach((job, i) => i > 0 && after.set(job.vmid, lane[i - 1]!.vmid));
    }
  }
  return after;
}

/** The jobs in their given order, except that each comes after those it waits for; a cycle among them keeps its given order. */
function dependencyOrder(jobs: readonly CloneJob[]): CloneJob[] {
  const pending = new Set(jobs);
  // How many pending jobs carry each vmid (validation reports duplicates; they must not hang the plan).
  const pendingIds = new Map<number, number>();
  for (const j of jobs) pendingIds.set(j.vmid, (pendingIds.get(j.vmid) ?? 0) + 1);
  const result: CloneJob[] = [];
  while (pending.size > 0) {
    const ready = [...pending].find((j) => !(j.after ?? []).some((d) => d !== j.vmid && (pendingIds.get(d) ?? 0) > 0)) ?? pending.values().next().value!;
    pending.delete(ready);
    pendingIds.set(ready.vmid, pendingIds.get(ready.vmid)! - 1);
    result.push(ready);
  }
  return result;
}

/** Dependencies that roles imply: an agent needs its server. */
export function implicitDependencies(g: Guest): number[] {
  return g.role?.type === "portainer-agent" ? [g.role.server] : [];
}

/** Whether a guest is a Docker host, whose cloud-init user data trusts the internal CA (so it waits for Step-CA). */
export function trustsInternalCa(g: Guest): g is Extract<Guest, { kind: "vm" }> {
  return g.kind === "vm" && (g.role?.type === "portainer-server" || g.role?.type === "portainer-agent" || g.role?.type === "compose-host");
}

/** One reason a guest is created after another. */
export interface OrderEdge {
  /** The guest that waits. */
  from: number;
  /** The guest it waits for. */
  to: number;
  /** Config path of the setting that makes it wait. */
  path: string;
  /** Why, for messages. */
  why: string;
}

/** Every declared reason for a guest to wait for another: dependsOn, an agent's server, a Docker host's CA. */
export function guestDependencies(config: StackConfig): OrderEdge[] {
  const edges: OrderEdge[] = [];
  const ca = config.guests.find((g) => g.role?.type === "step-ca");
  config.guests.forEach((g, i) => {
    g.dependsOn.forEach((d, j) => edges.push({ from: g.vmid, to: d, path: `guests[${i}].dependsOn[${j}]`, why: "dependsOn" }));
    for (const d of implicitDependencies(g)) edges.push({ from: g.vmid, to: d, path: `guests[${i}].role.server`, why: "its Portainer server" });
    if (ca && trustsInternalCa(g)) edges.push({ from: g.vmid, to: ca.vmid, path: `guests[${i}].role`, why: "its user data trusts the CA of the step-ca guest" });
  });
  return edges.filter((e) => e.from !== e.to);
}

/** For each guest, the guest whose clone it waits for (planCloneOrder over the configuration). */
export function cloneOrder(config: StackConfig): Map<number, number> {
  const deps = guestDependencies(config);
  return planCloneOrder(
    config.guests.map((g) => ({ vmid: g.vmid, source: g.clone, storage: g.storage, priority: g.startup?.order, after: deps.filter((e) => e.from === g.vmid).map((e) => e.to) })),
  );
}

/** Every edge that orders guest creation: the declared dependencies and the planned clone order. */
export function orderingEdges(config: StackConfig): OrderEdge[] {
  const index = new Map(config.guests.map((g, i) => [g.vmid, i]));
  const clones = [...cloneOrder(config)].map(([from, to]) => ({
    from,
    to,
    path: `guests[${index.get(from)}].clone`,
    why: `clone order: PVE clones one guest at a time per template and storage, so ${from} is cloned after ${to}`,
  }));
  // A guest never waits for itself (duplicate vmids are reported by validation, not planned around).
  return [...guestDependencies(config), ...clones.filter((e) => e.from !== e.to)];
}

/**
 * The guests in an order where each comes after every guest it waits for.
 * Iterative, so its depth does not grow with the configuration; a cycle (which
 * validation refuses) is an error naming the guests on it.
 */
export function creationOrder(config: StackConfig): Guest[] {
  const waiting = new Map(config.guests.map((g) => [g.vmid, 0]));
  const waiters = new Map<number, number[]>();
  const seen = new Set<string>();
  for (const e of orderingEdges(config)) {
    if (!waiting.has(e.to) || seen.has(`${e.from}>${e.to}`)) continue;
    seen.add(`${e.from}>${e.to}`);
    waiting.set(e.from, waiting.get(e.from)! + 1);
    waiters.set(e.to, [...(waiters.get(e.to) ?? []), e.from]);
  }
  const byId = new Map(config.guests.map((g) => [g.vmid, g]));
  const queue = config.guests.filter((g) => waiting.get(g.vmid) === 0);
  const result: Guest[] = [];
  for (let next = queue.shift(); next; next = queue.shift()) {
    result.push(next);
    for (const w of waiters.get(next.vmid) ?? []) {
      waiting.set(w, waiting.get(w)! - 1);
      if (waiting.get(w) === 0) queue.push(byId.get(w)!);
    }
  }
  if (result.length < config.guests.length) {
    const stuck = config.guests.filter((g) => !result.includes(g)).map((g) => g.vmid);
    throw new Error(`guests ${stuck.join(", ")} wait for each other: validation should have refused this cycle`);
  }
  return result;
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

/**
 * Where the user data goes: the storage named by host.snippetStorage, only ever that one, so a
 * storage gaining snippets content moves no VM's user data. It must be a dir storage of a
 * dataset declared here, or local, with snippets content; undefined otherwise.
 */
export function snippetStorage(host: Host): { id: string; dir: string } | undefined {
  const id = host.snippetStorage;
  if (id === undefined) return undefined;
  const ds = host.zfs.datasets.find((d) => d.storage?.id === id);
  if (ds) return ds.storage!.type === "dir" && ds.storage!.content.includes("snippets") ? { id, dir: `/${ds.pool}/${ds.name}` } : undefined;
  const local = host.existingStorages.find((s) => s.id === id && id === "local");
  return local?.content.includes("snippets") ? { id, dir: "/var/lib/vz" } : undefined;
}
