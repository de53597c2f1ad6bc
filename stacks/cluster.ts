/**
 * The stack as a cluster: which node each part of the host section is on, where each storage
 * exists, which template a guest can clone from its node, and the rules that relate them.
 * Everything defaults to host.node, so a single-node stack reads as before.
 *
 * Cloning across nodes (the failures these rules prevent): PVE clones a guest to another node
 * only with `target`, sent to the template's node, and only when the template's disks are on
 * shared storage (qemu-server/pve-container clone_vm: "Can't clone to non-shared storage");
 * bpg v0.111.1 sends the clone to the guest's node unless `clone.node_name` names the
 * template's (proxmoxtf/resource/container/container.go:1334-1338, vm/vm.go:2389-2418), which
 * is bpg#1387's "unable to find configuration file for VM 8000 on node 'pve02'" and bpg#2560;
 * a VM whose template is on local storage is cloned on the template's node and then migrated
 * (vm.go:2426-2456, bpg#969's workaround), which a linked clone cannot do ("can't migrate ... as
 * it's a clone of ...", qemu-server QemuMigrate.pm). So a guest clones either a template on its
 * own node, or a copy of it built there (`copies`), or a template on a shared storage present
 * on its node.
 */
import type { Guest, Host, StackConfig, Template } from "./schema";
import { isSharedStorage } from "./shared-storage";

export interface ClusterIssue {
  path: string;
  message: string;
}

export const hostNodeOf = (config: StackConfig): string => config.host.node ?? config.proxmox.nodes[0]?.name ?? "";

export const guestNodeOf = (config: StackConfig, g: { node?: string }): string => g.node ?? hostNodeOf(config);

type Dataset = Host["zfs"]["datasets"][number];
type Pool = Host["zfs"]["pools"][number];

export const poolNodeOf = (config: StackConfig, p: Pool): string => p.node ?? hostNodeOf(config);
export const datasetNodesOf = (config: StackConfig, d: Dataset): string[] => d.nodes ?? [hostNodeOf(config)];
export const gpuNodeOf = (config: StackConfig, gpu: Host["gpus"][number]): string => gpu.node ?? hostNodeOf(config);

/** The ARC ceiling of a node: a plain number is host.node's. */
export function arcOf(config: StackConfig, node: string): number | undefined {
  const arc = config.host.zfs.arcMaxGiB;
  if (arc === undefined) return undefined;
  if (typeof arc === "number") return node === hostNodeOf(config) ? arc : undefined;
  return arc[node];
}

/** The host section as one node sees it: what HostPrep prepares there. The driver pin is the cluster's, so every node's CUDA templates are the same build. */
export function nodeHost(config: StackConfig, node: string): Host {
  const { host } = config;
  const arc = arcOf(config, node);
  return {
    ...host,
    gpus: host.gpus.filter((g) => gpuNodeOf(config, g) === node),
    zfs: {
      ...(arc === undefined ? {} : { arcMaxGiB: arc }),
      pools: host.zfs.pools.filter((p) => poolNodeOf(config, p) === node),
      datasets: host.zfs.datasets.filter((d) => datasetNodesOf(config, d).includes(node)),
    },
    nfsExports: node === hostNodeOf(config) ? host.nfsExports : [],
  };
}

/** Nodes with something to prepare, host.node first (its HostPrep keeps the name `host`). */
export function preparedNodes(config: StackConfig): string[] {
  const hostNode = hostNodeOf(config);
  const others = config.proxmox.nodes
    .map((n) => n.name)
    .filter((n) => n !== hostNode)
    .filter((n) => {
      const h = nodeHost(config, n);
      return h.gpus.length > 0 || h.zfs.pools.length > 0 || h.zfs.datasets.length > 0 || h.zfs.arcMaxGiB !== undefined;
    });
  return [hostNode, ...others];
}

/** A storage as the cluster sees it: the nodes it is on (undefined: all) and whether it is shared. */
export interface StorageView {
  nodes?: string[];
  shared: boolean;
  type?: string;
}


export function storageViews(config: StackConfig): Map<string, StorageView> {
  const out = new Map<string, StorageView>();
  for (const s of config.host.existingStorages) out.set(s.id, { ...(s.nodes ? { nodes: s.nodes } : {}), shared: isSharedStorage(s.type, s.shared), ...(s.type ? { type: s.type } : {}) });
  for (const d of config.host.zfs.datasets) if (d.storage) out.set(d.storage.id, { nodes: datasetNodesOf(config, d), shared: false, type: d.storage.type });
  return out;
}

export const storageOnNode = (view: StorageView | undefined, node: string): boolean => view !== undefined && (view.nodes === undefined || view.nodes.includes(node));

/** The template (vmid and node) a guest on `node` clones for `clone`, or undefined when none is reachable. */
export function templateFor(config: StackConfig, clone: number, node: string, views = storageViews(config)): { vmid: number; node: string } | undefined {
  const t = config.templates.find((x) => x.vmid === clone);
  if (!t) return undefined;
  const home = guestNodeOf(config, t);
  if (home === node) return { vmid: t.vmid, node };
  const copy = t.copies.find((c) => c.node === node);
  if (copy) return { vmid: copy.vmid, node };
  const view = views.get(t.storage);
  if (view?.shared && storageOnNode(view, node) && storageOnNode(view, home)) return { vmid: t.vmid, node: home };
  return undefined;
}

/** The copy's own name: template names are host names, unique across the stack. */
const copyName = (t: Template, node: string): string => `${t.name}-${node}`.slice(0, 63).replace(/-+$/, "");

/**
 * The declared templates with each copy as a template of its own on its node (its source, when
 * another template, is that template's copy on the same node), and every guest cloning the
 * template reachable from its node. Run after validation, which refuses what does not resolve.
 */
export function expandTemplateCopies(config: StackConfig): StackConfig {
  if (!config.templates.some((t) => t.copies.length > 0)) return config;
  const copyOf = (vmid: number, node: string): number => config.templates.find((t) => t.vmid === vmid)?.copies.find((c) => c.node === node)?.vmid ?? vmid;
  const copies: Template[] = config.templates.flatMap((t) =>
    t.copies.map((c): Template => {
      const base = { ...t, vmid: c.vmid, node: c.node, name: copyName(t, c.node), copies: [] };
      if (base.kind === "lxc" && "clone" in base.source) return { ...base, source: { clone: copyOf(base.source.clone, c.node) } };
      return base;
    }),
  );
  const views = storageViews(config);
  const guests = config.guests.map((g): Guest => {
    const to = templateFor(config, g.clone, guestNodeOf(config, g), views);
    return to && to.vmid !== g.clone ? { ...g, clone: to.vmid } : g;
  });
  return { ...config, templates: [...config.templates, ...copies], guests };
}

/** The HA manager's name for a guest (pve-ha-manager src/PVE/HA/Config.pm parse_sid: `vm:<id>` or `ct:<id>`). */
export const haSid = (g: Pick<Guest, "kind" | "vmid">): string => `${g.kind === "vm" ? "vm" : "ct"}:${g.vmid}`;

export const pveMajor = (config: StackConfig): 8 | 9 => config.proxmox.pveVersion ?? 9;

/** Cross-field rules of the cluster: nodes named, storages present where used, templates reachable, HA consistent. */
export function clusterIssues(config: StackConfig): ClusterIssue[] {
  const issues: ClusterIssue[] = [];
  const report = (path: string, message: string) => issues.push({ path, message });
  const nodes = config.proxmox.nodes.map((n) => n.name);
  const known = new Set(nodes);
  const nodeRef = (node: string, path: string) => {
    if (!known.has(node)) report(path, `node '${node}' is not in proxmox.nodes (${nodes.join(", ")})`);
  };
  const hostNode = hostNodeOf(config);
  const { host } = config;
  host.gpus.forEach((g, i) => g.node !== undefined && nodeRef(g.node, `host.gpus[${i}].node`));
  host.zfs.pools.forEach((p, i) => p.node !== undefined && nodeRef(p.node, `host.zfs.pools[${i}].node`));
  host.existingStorages.forEach((s, i) => s.nodes?.forEach((n, j) => nodeRef(n, `host.existingStorages[${i}].nodes[${j}]`)));
  if (host.zfs.arcMaxGiB !== undefined && typeof host.zfs.arcMaxGiB !== "number") for (const n of Object.keys(host.zfs.arcMaxGiB)) nodeRef(n, `host.zfs.arcMaxGiB.${n}`);
  host.zfs.datasets.forEach((d, i) => {
    datasetNodesOf(config, d).forEach((n, j) => {
      const path = d.nodes ? `host.zfs.datasets[${i}].nodes[${j}]` : `host.zfs.datasets[${i}].pool`;
      if (!known.has(n)) return nodeRef(n, path);
      if (!host.zfs.pools.some((p) => p.name === d.pool && poolNodeOf(config, p) === n)) {
        report(path, `dataset ${d.pool}/${d.name}: node ${n} has no pool '${d.pool}' declared (host.zfs.pools[] with node: ${n})`);
      }
    });
  });
  // Host preparation runs over SSH to each node that has something to prepare.
  for (const node of preparedNodes(config)) {
    const i = config.proxmox.nodes.findIndex((n) => n.name === node);
    if (node === hostNode || i < 0 || config.proxmox.nodes[i]!.ssh) continue;
    report(`proxmox.nodes[${i}].ssh`, `node ${node} has pools, datasets, GPUs or an ARC limit declared, which are prepared over SSH: add ssh { host, user, hostKey } for it`);
  }
  host.nfsExports.forEach((e, i) => {
    const d = host.zfs.datasets.find((x) => `${x.pool}/${x.name}` === e.volume);
    if (d && !datasetNodesOf(config, d).includes(hostNode)) report(`host.nfsExports[${i}].volume`, `${e.volume} is not on ${hostNode}, the node that exports over NFS: declare it there too`);
  });

  const views = storageViews(config);
  const storageAt = (id: string, node: string, path: string, what: string) => {
    const view = views.get(id);
    if (view && !storageOnNode(view, node)) report(path, `${what} is on node ${node}, where storage '${id}' does not exist (it is on ${view.nodes!.join(", ")})`);
  };
  const vmids = new Map<number, string>([...config.templates.map((t, i) => [t.vmid, `templates[${i}].vmid`] as const), ...config.guests.map((g, i) => [g.vmid, `guests[${i}].vmid`] as const)]);
  config.templates.forEach((t, i) => {
    const home = guestNodeOf(config, t);
    storageAt(t.storage, home, `templates[${i}].storage`, `template ${t.vmid}`);
    // The OS template or cloud image is fetched on each node the template is built on.
    const sourceStorage = "storage" in t.source ? t.source.storage : undefined;
    if (sourceStorage) for (const n of [home, ...t.copies.map((c) => c.node)]) if (known.has(n)) storageAt(sourceStorage, n, `templates[${i}].source.storage`, `the source of template ${t.vmid} (fetched on each node it is built on)`);
    // A derived template is a linked clone of its source made on its own node (providers/template/lxc-template.ts).
    if (t.kind === "lxc" && "clone" in t.source) {
      const src = config.templates.find((x) => x.vmid === (t.source as { clone: number }).clone);
      if (src && guestNodeOf(config, src) !== home) report(`templates[${i}].source.clone`, `template ${t.vmid} is built on node ${home} from template ${src.vmid}, which is on node ${guestNodeOf(config, src)}: build both on the same node; copies of both on other nodes go in their copies`);
    }
    const seen = new Set<string>([home]);
    t.copies.forEach((c, j) => {
      const path = `templates[${i}].copies[${j}]`;
      if (!known.has(c.node)) return nodeRef(c.node, `${path}.node`);
      if (seen.has(c.node)) report(`${path}.node`, `template ${t.vmid} already has a copy on node ${c.node}${c.node === home ? " (it is built there)" : ""}`);
      seen.add(c.node);
      const first = vmids.get(c.vmid);
      if (first !== undefined) report(`${path}.vmid`, `vmid ${c.vmid} is already used by ${first}`);
      else vmids.set(c.vmid, `${path}.vmid`);
      storageAt(t.storage, c.node, `${path}.node`, `the copy of template ${t.vmid}`);
      // A copy of a derived template clones its source's copy on the same node.
      if (t.kind === "lxc" && "clone" in t.source) {
        const src = t.source.clone;
        if (!templateFor(config, src, c.node, views) || templateFor(config, src, c.node, views)!.node !== c.node) {
          report(`${path}.node`, `template ${t.vmid} is built from template ${src}, which has no copy on node ${c.node}: add { node: ${c.node}, vmid: … } to its copies too`);
        }
      }
    });
  });
  config.guests.forEach((g, i) => {
    const node = guestNodeOf(config, g);
    const label = `${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} ${g.name}`;
    storageAt(g.storage, node, `guests[${i}].storage`, label);
    if (g.kind === "lxc") {
      g.mounts.forEach((m, j) => {
        const d = host.zfs.datasets.find((x) => `${x.pool}/${x.name}` === m.volume);
        if (d && !datasetNodesOf(config, d).includes(node)) report(`guests[${i}].mounts[${j}].volume`, `${label} is on node ${node}, but dataset ${m.volume} is on ${datasetNodesOf(config, d).join(", ")}: add ${node} to its nodes or place the guest there`);
      });
    }
    g.gpus.forEach((id, j) => {
      const gpu = host.gpus.find((x) => x.id === id);
      if (gpu && gpuNodeOf(config, gpu) !== node) report(`guests[${i}].gpus[${j}]`, `${label} is on node ${node}, but GPU ${id} is in node ${gpuNodeOf(config, gpu)}: a guest uses only its own node's GPUs`);
    });
    const t = config.templates.find((x) => x.vmid === g.clone);
    if (t && !templateFor(config, g.clone, node, views)) {
      const home = guestNodeOf(config, t);
      report(
        `guests[${i}].clone`,
        `${label} is on node ${node} but template ${t.vmid} is on node ${home}, on storage '${t.storage}', which is not a shared storage present on both: PVE clones to another node only from shared storage and a linked clone cannot migrate off its template (bpg#1387, #969, #2560). ` +
          `Add { node: ${node}, vmid: <free vmid> } to that template's copies, or put the template on a shared storage (host.existingStorages[] with shared: true)`,
      );
    }
  });

  // HA: resources are guests; rules name nodes of the cluster and other HA guests.
  const haGuests = new Set(config.guests.filter((g) => g.ha).map((g) => g.vmid));
  config.guests.forEach((g, i) => {
    if (!g.ha) return;
    const path = `guests[${i}].ha`;
    if (nodes.length < 2) report(path, `${g.name}: HA needs a cluster of at least two nodes; proxmox.nodes has ${nodes.length}`);
    g.ha.nodes?.forEach((n, j) => nodeRef(n, `${path}.nodes[${j}]`));
    if (g.ha.strict && g.ha.nodes && !g.ha.nodes.includes(guestNodeOf(config, g))) report(`${path}.nodes`, `${g.name} is on node ${guestNodeOf(config, g)}, outside its strict ha.nodes: the HA manager would move it at once; add the node or place the guest on one of them`);
    g.ha.apartFrom.forEach((v, j) => {
      if (pveMajor(config) === 8) report(`${path}.apartFrom[${j}]`, `resource affinity rules are PVE 9's (pve-ha-manager src/PVE/HA/Rules/ResourceAffinity.pm); PVE 8 has HA groups only: remove apartFrom or set proxmox.pveVersion to 9 once every node runs 9`);
      else if (!haGuests.has(v)) report(`${path}.apartFrom[${j}]`, `guest ${v} is not an HA guest: a rule may only name HA resources (pve-ha-manager API2/HA/Rules.pm: "cannot use unmanaged resource(s)")`);
      else if (v === g.vmid) report(`${path}.apartFrom[${j}]`, `${g.name} cannot be kept apart from itself`);
    });
    // Every node HA may move the guest to must offer its storage, its template and no local-only resources.
    const reachable = (g.ha.strict && g.ha.nodes ? g.ha.nodes : nodes).filter((n) => known.has(n));
    const view = views.get(g.storage);
    const missing = reachable.filter((n) => !storageOnNode(view, n));
    if (missing.length > 0) report(path, `${g.name}: the HA manager may recover it on ${missing.join(", ")}, where storage '${g.storage}' does not exist: set ha.strict with ha.nodes limited to the nodes that hold it`);
    else if (view && !view.shared && reachable.length > 1) report(path, `${g.name}: its disk is on storage '${g.storage}', which is local to each node, so the HA manager could only restart it empty elsewhere: put the disk on a shared storage`);
    if (g.gpus.length > 0) report(`guests[${i}].gpus`, `${g.name}: a guest with a GPU is bound to its node's hardware; the HA manager cannot recover it elsewhere: drop ha or the GPUs`);
    if (g.kind === "lxc" && g.mounts.length > 0) report(`guests[${i}].mounts`, `${g.name}: bind mounts of node datasets are local to the node; the HA manager cannot move it: drop ha or the mounts`);
  });
  return issues;
}
