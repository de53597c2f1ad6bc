/**
 * Where each guest runs, computed from the configuration alone (pure, deterministic): a guest
 * that names its node stays there; one that names GPUs goes to their node; one with a
 * `placement` rule goes, in the order guests are declared, to the node that satisfies the rule
 * with the most memory left (ties: the order of proxmox.nodes). Guests declared earlier are
 * placed first and never see later ones, so appending a guest moves none of the others.
 * Each node's declared capacity (memory, cores) is then checked against what is placed on it;
 * the GPU memory budget is per GPU, and a GPU is in one node (stacks/validate.ts checkGpus).
 */
import { gpuNodeOf, guestNodeOf } from "./cluster";
import type { Guest, StackConfig } from "./schema";

export interface NodeLoad {
  node: string;
  memoryMiB: number;
  cores: number;
  capacity?: { memoryMiB: number; cores: number };
  guests: number[];
}

export interface PlacementPlan {
  /** The node of every guest, by vmid. */
  nodeOf: Map<number, string>;
  /** Guests whose node the plan chose (not named in the configuration), with why. */
  chosen: Map<number, string>;
  /** GPU ids given to guests placed by gpuModel. */
  gpusOf: Map<number, number[]>;
  load: NodeLoad[];
  issues: { path: string; message: string }[];
}

const label = (g: Guest) => `${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} ${g.name}`;

export function placementPlan(config: StackConfig): PlacementPlan {
  const issues: PlacementPlan["issues"] = [];
  const nodeOf = new Map<number, string>();
  const chosen = new Map<number, string>();
  const gpusOf = new Map<number, number[]>();
  const load = new Map<string, NodeLoad>(config.proxmox.nodes.map((n) => [n.name, { node: n.name, memoryMiB: 0, cores: 0, ...(n.capacity ? { capacity: n.capacity } : {}), guests: [] }]));
  const groups = new Map<string, Set<string>>();
  const takenPassthrough = new Set<number>(config.guests.filter((g) => g.kind === "vm").flatMap((g) => g.gpus));
  const put = (g: Guest, node: string) => {
    nodeOf.set(g.vmid, node);
    const l = load.get(node);
    if (l) {
      l.memoryMiB += g.memoryMiB;
      l.cores += g.cores;
      l.guests.push(g.vmid);
    }
    if (g.placement?.antiAffinity) {
      const on = groups.get(g.placement.antiAffinity) ?? new Set<string>();
      on.add(node);
      groups.set(g.placement.antiAffinity, on);
    }
  };
  const rule = (g: Guest) => (g.node === undefined && g.gpus.length === 0 ? g.placement : undefined);
  // Named nodes and GPU-bound guests first: they are fixed whatever the rules say.
  config.guests.forEach((g, i) => {
    if (rule(g)) return;
    if (g.node === undefined && g.gpus.length > 0) {
      const gpuNodes = [...new Set(g.gpus.map((id) => config.host.gpus.find((x) => x.id === id)).filter((x) => x !== undefined).map((x) => gpuNodeOf(config, x)))];
      if (gpuNodes.length > 1) issues.push({ path: `guests[${i}].gpus`, message: `${label(g)}: its GPUs are in different nodes (${gpuNodes.join(", ")}): a guest uses one node's GPUs` });
      if (gpuNodes.length === 1 && gpuNodes[0] !== guestNodeOf(config, g)) {
        chosen.set(g.vmid, `its GPUs are in ${gpuNodes[0]}`);
        return put(g, gpuNodes[0]!);
      }
    }
    put(g, guestNodeOf(config, g));
  });
  config.guests.forEach((g, i) => {
    const p = rule(g);
    if (!p) return;
    const why: string[] = [];
    const candidates = config.proxmox.nodes.flatMap((n) => {
      const l = load.get(n.name)!;
      // The HA manager keeps a strict guest on its nodes: the placement does too.
      if (g.ha?.strict && g.ha.nodes && !g.ha.nodes.includes(n.name)) return (why.push(`${n.name} is not in its ha.nodes`), []);
      if (!n.capacity) return (why.push(`${n.name} declares no capacity`), []);
      const free = n.capacity.memoryMiB - l.memoryMiB - g.memoryMiB;
      if (free < p.headroomMiB) return (why.push(`${n.name} would have ${free} MiB free, less than the headroom ${p.headroomMiB} MiB`), []);
      if (n.capacity.cores - l.cores < g.cores) return (why.push(`${n.name} has ${n.capacity.cores - l.cores} of its cores left`), []);
      if (p.antiAffinity && groups.get(p.antiAffinity)?.has(n.name)) return (why.push(`${n.name} already runs a guest of group ${p.antiAffinity}`), []);
      let gpu: number | undefined;
      if (p.gpuModel) {
        const want = p.gpuModel.toLowerCase();
        const fits = config.host.gpus.filter((x) => gpuNodeOf(config, x) === n.name && x.model.toLowerCase().includes(want) && (g.kind === "lxc" ? x.mode === "lxc-shared" : x.mode === "vm-passthrough" && !takenPassthrough.has(x.id)));
        if (fits.length === 0) return (why.push(`${n.name} has no free ${g.kind === "lxc" ? "lxc-shared" : "vm-passthrough"} GPU whose model contains '${p.gpuModel}'`), []);
        gpu = fits[0]!.id;
      }
      return [{ node: n.name, free, gpu }];
    });
    // Most memory left; the order of proxmox.nodes breaks ties (sort is stable).
    const best = candidates.sort((a, b) => b.free - a.free)[0];
    if (!best) {
      issues.push({ path: `guests[${i}].placement`, message: `${label(g)}: no node satisfies its placement: ${why.join("; ")}` });
      return;
    }
    chosen.set(g.vmid, `placement: ${best.free} MiB left${p.antiAffinity ? `, apart from group ${p.antiAffinity}` : ""}${p.gpuModel ? `, GPU ${best.gpu}` : ""}`);
    if (best.gpu !== undefined) {
      gpusOf.set(g.vmid, [best.gpu]);
      if (g.kind === "vm") takenPassthrough.add(best.gpu);
    }
    put(g, best.node);
  });
  // Capacity: reported at the first guest (in order) that does not fit, naming the node's declaration.
  config.proxmox.nodes.forEach((n, ni) => {
    if (!n.capacity) return;
    let memory = 0;
    let cores = 0;
    let reported = false;
    config.guests.forEach((g, i) => {
      if (reported || nodeOf.get(g.vmid) !== n.name) return;
      memory += g.memoryMiB;
      cores += g.cores;
      const over = memory > n.capacity!.memoryMiB ? `memory: its guests take ${load.get(n.name)!.memoryMiB} MiB of the ${n.capacity!.memoryMiB} MiB declared at proxmox.nodes[${ni}].capacity.memoryMiB` : cores > n.capacity!.cores ? `cores: its guests take ${load.get(n.name)!.cores} of the ${n.capacity!.cores} declared at proxmox.nodes[${ni}].capacity.cores` : undefined;
      if (!over) return;
      reported = true;
      issues.push({ path: `guests[${i}].${memory > n.capacity!.memoryMiB ? "memoryMiB" : "cores"}`, message: `${label(g)} over-commits node ${n.name}'s ${over}: place it on another node, or shrink it or those before it` });
    });
  });
  return { nodeOf, chosen, gpusOf, load: [...load.values()], issues };
}

/** The configuration with every chosen node (and GPU) written into its guest, so everything after validation reads `guest.node`. */
export function applyPlacement(config: StackConfig, plan: PlacementPlan): StackConfig {
  if (plan.chosen.size === 0) return config;
  return {
    ...config,
    guests: config.guests.map((g) => (plan.chosen.has(g.vmid) ? ({ ...g, node: plan.nodeOf.get(g.vmid)!, ...(plan.gpusOf.has(g.vmid) ? { gpus: plan.gpusOf.get(g.vmid)! } : {}) } as Guest) : g)),
  };
}
