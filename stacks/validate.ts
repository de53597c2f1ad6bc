/**
 * Rules that relate one part of the configuration to another. Each rule adds
 * issues naming the config path and what to do; all rules run, so a user sees
 * every problem at once.
 */
import { inSubnet, isNetworkOrBroadcast, parseCidr, subnetOf, type Cidr } from "./net";
import { hostIdOf } from "./idmap";
import { compatibilityIssues } from "./compat";
import { LLAMACPP_OPTION_LISTS } from "./options/llamacpp";
import { OLLAMA_ENV_LISTS } from "./options/ollama";
import { VLLM_OPTION_LISTS } from "./options/vllm";
import { snippetStorage } from "./plan";
import { routeHostConflict, servesApi } from "./routing";
import { bridgeNetwork, gpuAllocation, guestAddress, orderingEdges, templateVersion, type OrderEdge } from "./plan";
import { poolTopologies, UNKNOWN, type Guest, type Host, type StackConfig, type Template, type FirewallRule } from "./schema";
import { hardeningIssues, isolationIssues } from "./isolation";
import { tailscaleIssues } from "./tailscale";
import { backupIssues } from "./backup";
import { clusterIssues, nodeHost, poolNodeOf } from "./cluster";
import { acmeConnections, ADMIN_GROUP, canonicalMacro, firstMatch, guestChain, hostNodeChain, ifaceProblem, NODE_GROUP, type Outcome, type RuleScope } from "./firewall-rules";

export interface ConfigIssue {
  /** Path inside the phoenix namespace, e.g. guests[3].network.ip. */
  path: string;
  message: string;
}

type Report = (path: string, message: string) => void;

const known = (v: unknown): boolean => v !== UNKNOWN;

export function guestLabel(g: { vmid: number; name: string; kind: string }): string {
  return `${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} ${g.name}`;
}

/**
 * Entries left out of a partial check because they did not parse: references to
 * them are not reported as missing, since they are declared, only broken.
 */
export interface Unchecked {
  templates: ReadonlySet<number>;
  guests: ReadonlySet<number>;
  services: ReadonlySet<string>;
}

const NOTHING_UNCHECKED: Unchecked = { templates: new Set(), guests: new Set(), services: new Set() };

export function crossValidate(config: StackConfig, unchecked: Unchecked = NOTHING_UNCHECKED): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const report: Report = (path, message) => issues.push({ path, message });
  const ctx = new Context(config, unchecked);
  checkIds(ctx, report);
  checkNodes(ctx, report);
  checkNetwork(ctx, report);
  checkStorageAndZfs(ctx, report);
  checkTemplates(ctx, report);
  for (const issue of templateVersionIssues(config)) report(issue.path, issue.message);
  checkClonesAndDependencies(ctx, report);
  checkLinkedClones(ctx, report);
  checkGpus(ctx, report);
  checkMounts(ctx, report);
  checkSshNeeds(ctx, report);
  checkNfsExports(ctx, report);
  checkModelEngines(ctx, report);
  for (const issue of compatibilityIssues(config)) report(issue.path, issue.message);
  checkRoles(ctx, report);
  checkServicesAndRoutes(ctx, report);
  checkFirewall(ctx, report);
  // East-west isolation, the seed's hardening checklist and the tailnet (stacks/isolation.ts, stacks/tailscale.ts).
  for (const issue of [...isolationIssues(config), ...hardeningIssues(config), ...tailscaleIssues(config)]) report(issue.path, issue.message);
  // Backup jobs and snapshot policies (stacks/backup.ts).
  for (const issue of backupIssues(config)) report(issue.path, issue.message);
  // Nodes, storages, template reachability and HA across the cluster (stacks/cluster.ts).
  for (const issue of clusterIssues(config)) report(issue.path, issue.message);
  return issues;
}

/** Lookups every rule needs, computed once. */
class Context {
  readonly templates = new Map<number, { t: Template; i: number }>();
  readonly guests = new Map<number, { g: Guest; i: number }>();
  readonly datasets = new Map<string, number>();
  readonly storages = new Map<string, readonly string[]>();
  readonly hostNode: string;
  readonly hostCidr: Cidr | undefined;

  constructor(
    readonly config: StackConfig,
    readonly unchecked: Unchecked,
  ) {
    config.templates.forEach((t, i) => this.templates.has(t.vmid) || this.templates.set(t.vmid, { t, i }));
    config.guests.forEach((g, i) => this.guests.has(g.vmid) || this.guests.set(g.vmid, { g, i }));
    config.host.zfs.datasets.forEach((d, i) => this.datasets.set(`${d.pool}/${d.name}`, i));
    for (const s of config.host.existingStorages) this.storages.set(s.id, s.content);
    for (const d of config.host.zfs.datasets) if (d.storage) this.storages.set(d.storage.id, d.storage.content);
    this.hostNode = config.host.node ?? config.proxmox.nodes[0]?.name ?? "";
    this.hostCidr = parseCidr(config.host.address);
  }

  bridgeNet(bridge: string, vlan: number | undefined): { subnet: Cidr; gateway?: string } | undefined {
    return bridgeNetwork(this.config.host, bridge, vlan);
  }

  guestIp(g: Guest): string | undefined {
    return known(g.network.ip) ? guestAddress(g) : undefined;
  }
}

function duplicates<T>(items: { key: T; path: string }[], report: (path: string, first: string, key: T) => void): void {
  const seen = new Map<T, string>();
  for (const { key, path } of items) {
    const first = seen.get(key);
    if (first !== undefined) report(path, first, key);
    else seen.set(key, path);
  }
}

function checkIds(ctx: Context, report: Report): void {
  const { templates, guests } = ctx.config;
  const ids = [...templates.map((t, i) => ({ key: t.vmid, path: `templates[${i}].vmid` })), ...guests.map((g, i) => ({ key: g.vmid, path: `guests[${i}].vmid` }))];
  duplicates(ids, (path, first, id) => report(path, `vmid ${id} is already used by ${first}: give every template and guest its own vmid`));
  const names = [...templates.map((t, i) => ({ key: t.name.toLowerCase(), path: `templates[${i}].name` })), ...guests.map((g, i) => ({ key: g.name.toLowerCase(), path: `guests[${i}].name` }))];
  duplicates(names, (path, first, name) => report(path, `name '${name}' is already used by ${first}: hostnames must be unique`));
}

function checkNodes(ctx: Context, report: Report): void {
  const nodes = new Set(ctx.config.proxmox.nodes.map((n) => n.name));
  duplicates(ctx.config.proxmox.nodes.map((n, i) => ({ key: n.name, path: `proxmox.nodes[${i}].name` })), (path, first) => report(path, `node declared twice (first at ${first})`));
  if (ctx.config.host.node && !nodes.has(ctx.config.host.node)) {
    report("host.node", `node '${ctx.config.host.node}' is not in proxmox.nodes: declare it there or fix the name`);
  }
  const check = (node: string | undefined, path: string) => {
    if (node !== undefined && known(node) && !nodes.has(node)) report(path, `node '${node}' is not in proxmox.nodes (${[...nodes].join(", ")})`);
  };
  ctx.config.templates.forEach((t, i) => check(t.node, `templates[${i}].node`));
  ctx.config.guests.forEach((g, i) => check(g.node, `guests[${i}].node`));
}

function checkNetwork(ctx: Context, report: Report): void {
  const { host, guests } = ctx.config;
  if (ctx.hostCidr && isNetworkOrBroadcast(ctx.hostCidr)) report("host.address", `${host.address} is the network or broadcast address of its subnet`);
  if (ctx.hostCidr && known(host.gateway) && !inSubnet(host.gateway, ctx.hostCidr)) {
    report("host.gateway", `gateway ${host.gateway} is outside the host's subnet ${subnetOf(ctx.hostCidr)}`);
  }
  const ips: { key: string; path: string }[] = [];
  if (ctx.hostCidr) ips.push({ key: ctx.hostCidr.address, path: "host.address" });
  const macs: { key: string; path: string }[] = [];
  guests.forEach((g, i) => {
    const base = `guests[${i}].network`;
    const bridge = g.network.bridge ?? host.managementBridge;
    const net = ctx.bridgeNet(bridge, g.network.vlan);
    if (g.network.mac && known(g.network.mac)) macs.push({ key: g.network.mac.toLowerCase(), path: `${base}.mac` });
    if (!net) {
      report(`${base}.bridge`, `${guestLabel(g)}: no subnet is declared for bridge ${bridge}${g.network.vlan ? ` VLAN ${g.network.vlan}` : ""}: add it to host.bridges`);
      return;
    }
    const ip = g.network.ip;
    if (ip === "dhcp" || !known(ip)) return;
    const cidr = parseCidr(ip)!;
    ips.push({ key: cidr.address, path: `${base}.ip` });
    if (!inSubnet(cidr.address, net.subnet) || cidr.prefix !== net.subnet.prefix) {
      report(`${base}.ip`, `${guestLabel(g)}: ${ip} is not in ${bridge}'s subnet ${subnetOf(net.subnet)}: use an address in that subnet with the same prefix`);
    } else if (isNetworkOrBroadcast(cidr)) {
      report(`${base}.ip`, `${guestLabel(g)}: ${ip} is the network or broadcast address`);
    }
    const gw = g.network.gateway ?? net.gateway;
    if (gw && known(gw) && !inSubnet(gw, net.subnet)) {
      report(`${base}.gateway`, `${guestLabel(g)}: gateway ${gw} is outside ${bridge}'s subnet ${subnetOf(net.subnet)}`);
    }
  });
  duplicates(ips, (path, first, ip) => report(path, `IP ${ip} is already used by ${first}: every guest needs its own address`));
  duplicates(macs, (path, first, mac) => report(path, `MAC ${mac} is already used by ${first}: remove it to let Proxmox generate one, or pick another`));
}

function checkStorageAndZfs(ctx: Context, report: Report): void {
  const { zfs } = ctx.config.host;
  const pools = new Set(zfs.pools.map((p) => p.name));
  // A pool name is per node: each node may have its own pool of the same name (stacks/cluster.ts).
  duplicates(zfs.pools.map((p, i) => ({ key: `${poolNodeOf(ctx.config, p)}/${p.name}`, path: `host.zfs.pools[${i}].name` })), (path, first) => report(path, `pool declared twice on its node (first at ${first})`));
  const disks: { key: string; path: string }[] = [];
  zfs.pools.forEach((p, i) => {
    const min = poolTopologies[p.topology];
    const fits = p.topology === "single" ? p.disks.length === 1 : p.disks.length >= min;
    if (!fits) {
      report(`host.zfs.pools[${i}].disks`, `pool ${p.name}: ${p.topology} needs ${p.topology === "single" ? "exactly 1 disk" : `at least ${min} disks`}, ${p.disks.length} declared`);
    }
    p.disks.forEach((d, j) => disks.push({ key: `${poolNodeOf(ctx.config, p)}:${d}`, path: `host.zfs.pools[${i}].disks[${j}]` }));
  });
  duplicates(disks, (path, first, disk) => report(path, `disk ${disk.slice(disk.indexOf(":") + 1)} is already in ${first}: a disk belongs to one pool`));
  duplicates(zfs.datasets.map((d, i) => ({ key: `${d.pool}/${d.name}`, path: `host.zfs.datasets[${i}]` })), (path, first, ds) => report(path, `dataset ${ds} declared twice (first at ${first})`));
  zfs.datasets.forEach((d, i) => {
    if (!pools.has(d.pool)) report(`host.zfs.datasets[${i}].pool`, `dataset ${d.name}: pool '${d.pool}' is not declared in host.zfs.pools`);
  });
  const storageIds = [
    ...ctx.config.host.existingStorages.map((s, i) => ({ key: s.id, path: `host.existingStorages[${i}].id` })),
    ...zfs.datasets.flatMap((d, i) => (d.storage ? [{ key: d.storage.id, path: `host.zfs.datasets[${i}].storage.id` }] : [])),
  ];
  duplicates(storageIds, (path, first, id) => report(path, `storage id ${id} is already used by ${first}`));
  zfs.datasets.forEach((d, i) => {
    if (d.storage?.type === "zfspool" && d.storage.content.some((c) => c !== "images" && c !== "rootdir")) {
      report(`host.zfs.datasets[${i}].storage.content`, `a zfspool storage holds only images and rootdir: register ${d.pool}/${d.name} as type dir for ${d.storage.content.join(", ")}`);
    }
  });
  const wants = (path: string, id: string, content: string, what: string) => {
    if (!known(id)) return;
    const has = ctx.storages.get(id);
    if (!has) report(path, `storage '${id}' is not declared: register a dataset with storage.id ${id} or list it in host.existingStorages`);
    else if (!has.includes(content)) {
      // PVE's installer gives local iso,vztmpl,backup, and import from pve-installer 9.0.7 on (Proxmox/Install/StorageConfig.pm): never assumed.
      const local = id === "local" ? `; if the node's /etc/pve/storage.cfg gives local ${content} (an installer from PVE 9.0 on adds import), declare it in host.existingStorages: { id: local, content: [...] }` : "";
      report(path, `storage '${id}' does not hold ${content} content, needed for ${what}${local}`);
    }
  };
  ctx.config.templates.forEach((t, i) => {
    wants(`templates[${i}].storage`, t.storage, t.kind === "lxc" ? "rootdir" : "images", `the disk of template ${t.vmid}`);
    if (t.kind === "lxc" && "catalogue" in t.source) wants(`templates[${i}].source.storage`, t.source.storage, "vztmpl", "OS templates");
    if (t.kind === "vm") wants(`templates[${i}].source.storage`, t.source.storage, "import", "cloud images");
  });
  ctx.config.guests.forEach((g, i) => wants(`guests[${i}].storage`, g.storage, g.kind === "lxc" ? "rootdir" : "images", `the disk of ${guestLabel(g)}`));
}

// --- Linked clones: disks, privilege, storage ------------------------------------------------

/**
 * Storage types that can hold a container template's linked clones: their volume_has_feature
 * offers `clone` from a base volume in a raw or subvol format (pve-storage 0c56bad
 * src/PVE/Storage/ZFSPoolPlugin.pm:814, LvmThinPlugin.pm:413, RBDPlugin.pm:960,
 * BTRFSPlugin.pm:608). A dir storage's clone_image makes qcow2 only (Plugin.pm:1583-1608), which
 * a container cannot use (pve-container 94f5585 src/PVE/API2/LXC.pm:2094-2100 asks for raw or subvol).
 */
const LINK_CLONE_STORAGE_TYPES: ReadonlySet<string> = new Set(["zfspool", "lvmthin", "rbd", "btrfs"]);

/**
 * A clone starts at its template's disk and grows from there (a disk never shrinks: LXC.pm:2402),
 * keeps its template's privilege (bpg's `unprivileged` forces a new container: container.go:1156,
 * stacks/replacement.ts), and a container template lives where linked clones can be made.
 */
function checkLinkedClones(ctx: Context, report: Report): void {
  const storageTypes = new Map<string, string | undefined>([
    ...ctx.config.host.existingStorages.map((s) => [s.id, s.type] as const),
    ...ctx.config.host.zfs.datasets.flatMap((d) => (d.storage ? [[d.storage.id, d.storage.type] as const] : [])),
  ]);
  const smaller = (what: string, size: number, template: Template) =>
    `${what}: its disk is ${size} GiB but template ${template.vmid} (${template.name}) has ${template.diskGiB} GiB; a linked clone starts with its template's disk and cannot be smaller: set diskGiB to ${template.diskGiB} or more`;
  ctx.config.templates.forEach((t, i) => {
    if (t.kind !== "lxc") return;
    const type = storageTypes.get(t.storage);
    if (type !== undefined && known(t.storage) && !LINK_CLONE_STORAGE_TYPES.has(type)) {
      report(`templates[${i}].storage`, `template ${t.vmid}: storage ${t.storage} is of type ${type}, which cannot make linked clones of a container: use a zfspool, lvmthin, rbd or btrfs storage`);
    }
    const src = "clone" in t.source ? ctx.templates.get(t.source.clone)?.t : undefined;
    if (src?.kind !== "lxc") return;
    if (t.diskGiB < src.diskGiB) report(`templates[${i}].diskGiB`, smaller(`template ${t.vmid}`, t.diskGiB, src));
    if (t.unprivileged !== src.unprivileged) report(`templates[${i}].unprivileged`, `template ${t.vmid}: unprivileged is ${t.unprivileged} but its source ${src.vmid} has ${src.unprivileged}; a linked clone keeps its source's id mapping: make them equal`);
    // The build sends only the flags that are on and never deletes any (providers/template/lxc-template.ts machineParams): the clone keeps its source's nesting.
    if (src.features.nesting && !t.features.nesting) report(`templates[${i}].features.nesting`, `template ${t.vmid}: its source ${src.vmid} has nesting, which a linked clone keeps and the template build does not remove: set nesting: true`);
  });
  ctx.config.guests.forEach((g, i) => {
    const src = ctx.templates.get(g.clone)?.t;
    if (!src || src.kind !== g.kind) return;
    if (g.diskGiB < src.diskGiB) report(`guests[${i}].diskGiB`, smaller(guestLabel(g), g.diskGiB, src));
    if (g.kind === "lxc" && src.kind === "lxc" && g.unprivileged !== src.unprivileged) {
      report(`guests[${i}].unprivileged`, `${guestLabel(g)}: unprivileged is ${g.unprivileged} but template ${src.vmid} has ${src.unprivileged}; a linked clone keeps its template's id mapping: make them equal`);
    }
    if (g.kind === "vm" && g.allowReplace.includes("unprivileged")) report(`guests[${i}].allowReplace`, `${guestLabel(g)}: a VM has no unprivileged setting: remove it from allowReplace`);
  });
}

function checkTemplates(ctx: Context, report: Report): void {
  ctx.config.templates.forEach((t, i) => {
    if (t.gpus.length > 0) report(`templates[${i}].gpus`, `template ${t.vmid}: a template cannot hold GPUs (its clones would inherit them): assign GPUs to the guests cloned from it`);
    if (t.startup?.onBoot) report(`templates[${i}].startup.onBoot`, `template ${t.vmid}: a template is never started: remove startup.onBoot`);
    if (t.kind === "lxc" && "clone" in t.source) {
      const src = ctx.templates.get(t.source.clone);
      if (!src && ctx.unchecked.templates.has(t.source.clone)) return;
      if (!src) report(`templates[${i}].source.clone`, `template ${t.vmid}: source template ${t.source.clone} is not declared in templates`);
      else if (src.t.kind !== "lxc") report(`templates[${i}].source.clone`, `template ${t.vmid}: source ${t.source.clone} is a VM template; an LXC template clones an LXC template`);
      else if (src.t.storage !== t.storage) report(`templates[${i}].storage`, `template ${t.vmid}: a linked clone shares its source's disk, so it lives on ${src.t.storage} (template ${t.source.clone}), not ${t.storage}`);
    }
    if (t.kind === "lxc" && t.layer !== "base" && "catalogue" in t.source) {
      report(`templates[${i}].source`, `template ${t.vmid}: layer ${t.layer} builds on another template: set source.clone to the template it extends`);
    }
  });
}

function checkClonesAndDependencies(ctx: Context, report: Report): void {
  ctx.config.guests.forEach((g, i) => {
    const src = ctx.templates.get(g.clone);
    if (!src && ctx.unchecked.templates.has(g.clone)) {
      // declared, only broken: reported where it is
    } else if (!src) {
      const hint = ctx.guests.has(g.clone) ? `${g.clone} is a guest, not a template: declare it under templates to clone from it` : `declare template ${g.clone} under templates`;
      report(`guests[${i}].clone`, `${guestLabel(g)}: clone source ${g.clone} is not a template: ${hint}`);
    } else if (src.t.kind !== g.kind) {
      report(`guests[${i}].clone`, `${guestLabel(g)}: a ${g.kind === "vm" ? "VM" : "container"} cannot be cloned from ${src.t.kind === "vm" ? "VM" : "LXC"} template ${g.clone}`);
    } else if (src.t.storage !== g.storage) {
      report(`guests[${i}].storage`, `${guestLabel(g)}: a linked clone shares its template's disk, so it lives on ${src.t.storage} (template ${g.clone}), not ${g.storage}`);
    }
    if (src?.t.kind === "lxc" && g.kind === "lxc") {
      if (g.gpus.length > 0 && src.t.layer === "base") {
        report(`guests[${i}].clone`, `${guestLabel(g)}: has GPUs but template ${g.clone} is layer base, without NVIDIA user-space: clone it from a cuda or vllm template`);
      }
      if (g.role?.type === "model-server" && g.role.server.engine === "vllm" && src.t.layer !== "vllm") {
        report(`guests[${i}].clone`, `${guestLabel(g)}: vLLM runs from the golden vllm template, but ${g.clone} is layer ${src.t.layer}: clone it from a template with layer vllm`);
      }
    }
    g.dependsOn.forEach((d, j) => {
      if (d === g.vmid) report(`guests[${i}].dependsOn[${j}]`, `${guestLabel(g)} depends on itself`);
      else if (!ctx.guests.has(d) && !ctx.unchecked.guests.has(d)) report(`guests[${i}].dependsOn[${j}]`, `${guestLabel(g)} depends on ${d}, which is not a declared guest`);
    });
  });
  // Cycles: among templates (clone chains) and among guests (every edge that orders their creation); a guest→template edge cannot close a cycle.
  const edges = new Map<number, number[]>();
  const why = new Map<string, OrderEdge>();
  ctx.config.templates.forEach((t, i) => {
    if (t.kind !== "lxc" || !("clone" in t.source)) return;
    edges.set(t.vmid, [t.source.clone]);
    why.set(`${t.vmid}>${t.source.clone}`, { from: t.vmid, to: t.source.clone, path: `templates[${i}].source.clone`, why: "cloned from it" });
  });
  for (const g of ctx.config.guests) edges.set(g.vmid, []);
  for (const e of orderingEdges(ctx.config)) {
    edges.get(e.from)?.push(e.to);
    if (!why.has(`${e.from}>${e.to}`)) why.set(`${e.from}>${e.to}`, e);
  }
  for (const cycle of findCycles(edges)) {
    const steps = cycle.map((from, k) => why.get(`${from}>${cycle[(k + 1) % cycle.length]}`)!);
    // Reported at the first edge the user declared (a clone-order edge is Phoenix's plan, not a setting).
    const at = steps.find((e) => !e.path.endsWith(".clone") || e.path.startsWith("templates")) ?? steps[0]!;
    const chain = [...cycle, cycle[0]!].join(" → ");
    report(at.path, `dependency cycle: ${chain} (${steps.map((e) => `${e.from} waits for ${e.to}: ${e.path}, ${e.why}`).join("; ")}): remove one of these dependencies`);
  }
}

/**
 * Settings of a guest that only root@pam may make (pve-container's permission
 * checks). The API path works with the root@pam password; the rest also
 * touches the node's files (host directory owners, lxc.idmap) and needs SSH.
 *
 * Features, pve-container@6.0.18 (963730e) src/PVE/LXC.pm check_ct_modify_config_perm: a token
 * may set `nesting` alone on an unprivileged container, nothing on a privileged one. With a
 * token only, the flags go through bpg at the clone, which sends only the true ones (bpg
 * v0.111.1 proxmoxtf/resource/container/container.go containerGetFeatures), so a guest cannot
 * turn off the nesting its template has (`templateNesting`): the clone keeps it.
 */
/** Whether the LXC template a guest is cloned from has nesting on. */
export function templateNesting(templates: readonly Template[], g: Guest): boolean {
  const t = templates.find((x) => x.vmid === g.clone);
  return t?.kind === "lxc" && t.features.nesting;
}

export function rootOnlySettings(g: Guest, templateNesting = false): { api: string[]; sshOnly: string[] } {
  if (g.kind !== "lxc") return { api: [], sshOnly: [] };
  const api: string[] = [];
  const sshOnly: string[] = [];
  if (g.gpus.length > 0) api.push("gpus (device passthrough)");
  if (g.features.keyctl || g.features.fuse) api.push("features other than nesting");
  else if (g.features.nesting && !g.unprivileged) api.push("features of a privileged container");
  if (templateNesting && !g.features.nesting) api.push("turning off the nesting its template has");
  if (g.mounts.length > 0) sshOnly.push("mounts (bind mounts, owner of their host directory)");
  if (g.idPassthrough.uids.length + g.idPassthrough.gids.length > 0) sshOnly.push("idPassthrough (lxc.idmap)");
  return { api, sshOnly };
}

/** Elementary cycles, each reported once, starting at its smallest id. */
export function findCycles(edges: Map<number, number[]>): number[][] {
  const cycles: number[][] = [];
  const seen = new Set<string>();
  const state = new Map<number, "visiting" | "done">();
  const stack: number[] = [];
  const visit = (n: number): void => {
    state.set(n, "visiting");
    stack.push(n);
    for (const m of edges.get(n) ?? []) {
      if (state.get(m) === "visiting") {
        const cycle = stack.slice(stack.indexOf(m));
        const min = Math.min(...cycle);
        const rotated = [...cycle.slice(cycle.indexOf(min)), ...cycle.slice(0, cycle.indexOf(min))];
        const key = rotated.join(",");
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push(rotated);
        }
      } else if (!state.has(m) && edges.has(m)) {
        visit(m);
      }
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...edges.keys()].sort((a, b) => a - b)) if (!state.has(n)) visit(n);
  return cycles;
}

function checkGpus(ctx: Context, report: Report): void {
  const { gpus } = ctx.config.host;
  duplicates(gpus.map((g, i) => ({ key: g.id, path: `host.gpus[${i}].id` })), (path, first, id) => report(path, `GPU id ${id} is already used by ${first}`));
  duplicates(gpus.map((g, i) => ({ key: g.pci.toLowerCase(), path: `host.gpus[${i}].pci` })), (path, first, pci) => report(path, `PCI address ${pci} is already declared at ${first}`));
  if (gpus.some((g) => g.mode === "lxc-shared") && !ctx.config.host.nvidiaDriver) {
    report("host.nvidiaDriver", "GPUs are declared lxc-shared but no NVIDIA driver version is pinned: set host.nvidiaDriver.version");
  }
  // nvidia-installer 580.95.05 kernel.c valid_kernel_module_types: a GPU that requires the open modules
  // (Blackwell, RTX 50) rules the proprietary ones out.
  if (ctx.config.host.nvidiaDriver?.kernelModules === "proprietary") {
    gpus.forEach((g, i) => {
      if (g.mode === "lxc-shared" && /\bRTX\s*50\d0\b/i.test(g.model)) report(`host.gpus[${i}].model`, `${g.model} is a Blackwell GPU, which runs only on the open kernel modules: set host.nvidiaDriver.kernelModules to open`);
    });
  }
  const byId = new Map(gpus.map((g) => [g.id, g]));
  const passthroughOwner = new Map<number, string>();
  ctx.config.guests.forEach((g, i) => {
    g.gpus.forEach((id, j) => {
      const path = `guests[${i}].gpus[${j}]`;
      const gpu = byId.get(id);
      if (!gpu) {
        report(path, `${guestLabel(g)}: GPU ${id} is not declared in host.gpus (declared: ${[...byId.keys()].join(", ") || "none"})`);
        return;
      }
      if (gpu.mode === "unused") report(path, `${guestLabel(g)}: GPU ${id} is declared unused: set its mode to lxc-shared or vm-passthrough`);
      if (gpu.mode === "vm-passthrough" && g.kind === "lxc") {
        report(path, `${guestLabel(g)}: GPU ${id} is vm-passthrough (bound to vfio), so a container cannot use it: set its mode to lxc-shared or give it to a VM`);
      }
      if (gpu.mode === "lxc-shared" && g.kind === "vm") {
        report(path, `${guestLabel(g)}: GPU ${id} is lxc-shared (host driver), so a VM cannot take it: set its mode to vm-passthrough`);
      }
      if (gpu.mode === "vm-passthrough" && g.kind === "vm") {
        const owner = passthroughOwner.get(id);
        if (owner) report(path, `${guestLabel(g)}: GPU ${id} is already passed through to ${owner}: a passthrough GPU belongs to one VM`);
        else passthroughOwner.set(id, guestLabel(g));
      }
    });
  });
  for (const alloc of gpuAllocation(ctx.config)) {
    const gpu = byId.get(alloc.gpu)!;
    const i = gpus.indexOf(gpu);
    if (alloc.vllmUtilization > 0.95 + 1e-9) {
      report(`host.gpus[${i}]`, `GPU ${gpu.id} (${gpu.model}): vLLM gpuMemoryUtilization sums to ${round(alloc.vllmUtilization)} (${alloc.users.filter((u) => u.engine === "vllm").map((u) => `${u.guest} ${u.share}`).join(", ")}): keep the sum at or below 0.95`);
    }
    if (alloc.totalGiB > gpu.memoryGiB + 1e-9) {
      report(`host.gpus[${i}]`, `GPU ${gpu.id} (${gpu.model}): ${round(alloc.totalGiB)} GiB allocated (${alloc.users.map((u) => `${u.guest} ${round(u.memoryGiB)} GiB`).join(", ")}) exceeds its ${gpu.memoryGiB} GiB: lower the models' VRAM or move a server to another GPU`);
    }
  }
}

const round = (n: number): number => Math.round(n * 100) / 100;

function checkMounts(ctx: Context, report: Report): void {
  const secretMounts = new Map<string, string>();
  const hostOwner = new Map<string, { host: string; where: string }>();
  ctx.config.guests.forEach((g, i) => {
    if (g.kind !== "lxc") return;
    duplicates(g.mounts.map((m, j) => ({ key: m.path, path: `guests[${i}].mounts[${j}].path` })), (path, first, p) => report(path, `${guestLabel(g)}: ${p} is already a mount point (${first})`));
    g.mounts.forEach((m, j) => {
      const path = `guests[${i}].mounts[${j}]`;
      if (known(m.path) && (!m.path.startsWith("/") || m.path.split("/").includes(".."))) {
        report(`${path}.path`, `${guestLabel(g)}: mount path '${m.path}' must be absolute (start with /) and contain no '..'`);
      }
      if (known(m.path) && m.path === "/") report(`${path}.path`, `${guestLabel(g)}: cannot mount a volume over /`);
      const ds = ctx.datasets.get(m.volume);
      if (ds === undefined) {
        report(`${path}.volume`, `${guestLabel(g)}: volume '${m.volume}' is not a declared dataset (pool/name from host.zfs.datasets)`);
        return;
      }
      const host = `${hostIdOf(m.uid, g.idPassthrough.uids, g.unprivileged)}:${hostIdOf(m.gid, g.idPassthrough.gids, g.unprivileged)}`;
      const first = hostOwner.get(m.volume);
      if (first && first.host !== host) {
        report(`${path}.uid`, `${guestLabel(g)}: ${m.volume} would be owned on the host by ${host}, but ${first.where} needs ${first.host}: one directory has one owner; align uid/gid (or idPassthrough) across the guests that mount it`);
      } else if (!first) hostOwner.set(m.volume, { host, where: guestLabel(g) });
      if (ctx.config.host.zfs.datasets[ds]!.secret) {
        const owner = secretMounts.get(m.volume);
        if (owner && owner !== guestLabel(g)) report(`${path}.volume`, `${guestLabel(g)}: ${m.volume} holds secrets and is already mounted into ${owner}: a secret volume is mounted into one guest only`);
        else secretMounts.set(m.volume, guestLabel(g));
      }
    });
  });
}

const ENGINE_OPTION_LISTS = { vllm: VLLM_OPTION_LISTS, ollama: OLLAMA_ENV_LISTS, llamacpp: LLAMACPP_OPTION_LISTS } as const;

/** A model server's engine version must be known, and one whose accepted options Phoenix has checked. */
function checkModelEngines(ctx: Context, report: Report): void {
  ctx.config.guests.forEach((g, i) => {
    if (g.role?.type !== "model-server" || g.kind !== "lxc") return;
    const s = g.role.server;
    const version = s.version ?? templateVersion(ctx.config, g.clone, s.engine);
    if (version === undefined) {
      report(`guests[${i}].role.server.version`, `${guestLabel(g)}: no ${s.engine} version: set role.server.version or clone it from a template whose versions pin ${s.engine}`);
    } else if (!ENGINE_OPTION_LISTS[s.engine].some((l) => l.version === version)) {
      report(`guests[${i}].role.server.version`, `${guestLabel(g)}: Phoenix has not checked the options of ${s.engine} ${version} (it knows ${ENGINE_OPTION_LISTS[s.engine].map((l) => l.version).join(", ")}): pin one of those`);
    }
    if (s.engine === "llamacpp" && templateVersion(ctx.config, g.clone, "cuda") === undefined) {
      report(`guests[${i}].clone`, `${guestLabel(g)}: llama.cpp is built with CUDA: clone it from a template whose versions pin cuda`);
    }
  });
}

function checkNfsExports(ctx: Context, report: Report): void {
  const mounted = new Map<number, string>();
  ctx.config.host.nfsExports.forEach((e, i) => {
    if (!ctx.datasets.has(e.volume)) report(`host.nfsExports[${i}].volume`, `'${e.volume}' is not a declared dataset (pool/name from host.zfs.datasets)`);
    e.clients.forEach((vmid, j) => {
      const g = ctx.guests.get(vmid)?.g;
      if (!g) {
        if (!ctx.unchecked.guests.has(vmid)) report(`host.nfsExports[${i}].clients[${j}]`, `${vmid} is not a declared guest`);
      }
      else if (g.kind !== "vm" || (g.role?.type !== "portainer-server" && g.role?.type !== "portainer-agent")) report(`host.nfsExports[${i}].clients[${j}]`, `${guestLabel(g)}: NFS data is mounted by Docker host VMs (role portainer-server or portainer-agent); containers take bind mounts instead`);
      else if (g.network.ip === "dhcp") report(`host.nfsExports[${i}].clients[${j}]`, `${guestLabel(g)} uses DHCP; an export names its client's address: give it a static IP`);
      const other = mounted.get(vmid);
      if (other) report(`host.nfsExports[${i}].clients[${j}]`, `VM ${vmid} already mounts ${other} at /srv/phoenix-data: one export per VM`);
      else mounted.set(vmid, e.volume);
    });
  });
}

function checkSshNeeds(ctx: Context, report: Report): void {
  // host.node's share of the host section; the other nodes' is checked in stacks/cluster.ts.
  const host = nodeHost(ctx.config, ctx.hostNode);
  const { proxmox } = ctx.config;
  const hasSsh = (node: string) => proxmox.nodes.some((n) => n.name === node && n.ssh);
  const nodeIndex = Math.max(0, proxmox.nodes.findIndex((n) => n.name === ctx.hostNode));
  const hostPrep = [
    host.zfs.pools.length + host.zfs.datasets.length > 0 && "ZFS pools and datasets",
    host.zfs.arcMaxGiB !== undefined && "the ZFS ARC limit",
    host.gpus.some((g) => g.mode !== "unused") && "GPU drivers and vfio",
    host.nfsExports.length > 0 && "NFS exports",
  ].filter((x): x is string => typeof x === "string");
  if (hostPrep.length > 0 && !hasSsh(ctx.hostNode)) {
    report(`proxmox.nodes[${nodeIndex}].ssh`, `host preparation (${hostPrep.join(", ")}) runs over SSH, which is not configured for node ${ctx.hostNode}: add ssh { host, user, hostKey } and set the secret sshPrivateKey`);
  }
  ctx.config.guests.forEach((g, i) => {
    const node = g.node ?? ctx.hostNode;
    const { sshOnly } = rootOnlySettings(g);
    if (sshOnly.length > 0 && !hasSsh(node)) report(`guests[${i}]`, `${guestLabel(g)}: ${sshOnly.join(", ")} need SSH to node ${node} (the API cannot set them): configure proxmox.nodes[].ssh for it`);
    if (g.kind === "lxc" && g.role && !hasSsh(node)) {
      report(`guests[${i}].role`, `${guestLabel(g)}: its ${g.role.type} software is installed inside the container through node ${node} (pct exec over SSH): configure proxmox.nodes[].ssh for it`);
    }
    if (g.kind === "vm" && (g.role?.type === "portainer-server" || g.role?.type === "portainer-agent") && !hasSsh(node)) {
      report(`guests[${i}].role`, `${guestLabel(g)}: Portainer's agent secret is put into the VM through node ${node} (qm guest exec over SSH): configure proxmox.nodes[].ssh for it`);
    }
  });
}

function checkRoles(ctx: Context, report: Report): void {
  const models = new Map<string, string>();
  const roleOwner = new Map<string, string>();
  ctx.config.guests.forEach((g, i) => {
    const role = g.role;
    if (!role) return;
    const path = `guests[${i}].role`;
    const single = ["step-ca", "traefik", "nginx-gateway", "observability"];
    if (single.includes(role.type)) {
      const owner = roleOwner.get(role.type);
      if (owner) report(`${path}.type`, `${guestLabel(g)}: ${owner} is already the ${role.type}; a machine has one`);
      else roleOwner.set(role.type, guestLabel(g));
    }
    if (role.type === "model-server") {
      if (g.kind !== "lxc") report(`${path}.type`, `${guestLabel(g)}: model servers run in containers (kind: lxc)`);
      if (g.gpus.length === 0) report(`guests[${i}].gpus`, `${guestLabel(g)}: a model server needs at least one GPU`);
      const s = role.server;
      if (s.engine === "vllm" && s.tensorParallelSize !== g.gpus.length) {
        report(`${path}.server.tensorParallelSize`, `${guestLabel(g)}: tensorParallelSize ${s.tensorParallelSize} must equal the number of GPUs assigned (${g.gpus.length})`);
      }
      const names = s.engine === "ollama" ? s.models.map((m) => m.name) : [s.servedModelName];
      names.forEach((name) => {
        const owner = models.get(name);
        if (owner) report(`${path}.server`, `${guestLabel(g)}: model '${name}' is already served by ${owner}: model names route requests, so each must be unique`);
        else models.set(name, guestLabel(g));
      });
    }
    if (role.type === "observability") {
      // Prometheus' and Alertmanager's data live on a declared dataset, never on the guest's root disk.
      if (g.kind !== "lxc") report(`${path}.type`, `${guestLabel(g)}: the observability tier runs in a container (kind: lxc)`);
      else if (!g.mounts.some((m) => m.path === role.dataDir && !m.readOnly)) report(`${path}.dataDir`, `${guestLabel(g)}: mount a dataset read-write at ${role.dataDir} (guests[${i}].mounts) to hold the metrics and alerts`);
      if (g.network.ip === "dhcp") report(`guests[${i}].network.ip`, `${guestLabel(g)}: the observability guest needs a static address, which the scrape targets' firewalls name`);
      if (ctx.unchecked.guests.size === 0 && !ctx.config.guests.some((x) => x.role?.type === "step-ca")) report(`${path}.type`, `${guestLabel(g)}: its TLS probes verify every endpoint against the internal CA: declare a guest with role step-ca`);
    }
    if ((role.type === "portainer-server" || role.type === "portainer-agent" || role.type === "compose-host") && g.kind !== "vm") {
      report(`${path}.type`, `${guestLabel(g)}: ${role.type} runs Docker and belongs on a VM (kind: vm)`);
    }
    if (role.type === "portainer-agent") {
      const server = ctx.guests.get(role.server);
      if (!ctx.unchecked.guests.has(role.server) && server?.g.role?.type !== "portainer-server") report(`${path}.server`, `${guestLabel(g)}: ${role.server} is not a guest with role portainer-server`);
    }
  });
  const { host } = ctx.config;
  const usable = [...host.zfs.datasets.map((d) => d.storage?.id), "local"].filter((id): id is string => id !== undefined && snippetStorage({ ...host, snippetStorage: id }) !== undefined);
  const choose = `name a dir storage with snippets content${usable.length ? ` (here: ${usable.join(", ")})` : "; add snippets to a dir storage's content"}`;
  if (host.snippetStorage !== undefined && !snippetStorage(host)) {
    report("host.snippetStorage", `storage '${host.snippetStorage}' cannot hold the VMs' cloud-init user data: it must be a dir storage of a dataset in host.zfs.datasets, or local, with snippets content; ${choose}`);
  }
  ctx.config.guests.forEach((g, i) => {
    if (g.kind === "vm" && (g.role?.type === "portainer-server" || g.role?.type === "portainer-agent" || g.role?.type === "compose-host") && host.snippetStorage === undefined) {
      report(`guests[${i}].role`, `${guestLabel(g)}: a Docker host is set up by cloud-init user data, which Phoenix writes to the storage host.snippetStorage names: ${choose}`);
    }
    if (g.kind === "vm" && g.dockerStacks.length > 0 && g.role?.type !== "portainer-agent" && g.role?.type !== "compose-host") {
      report(`guests[${i}].dockerStacks`, `${guestLabel(g)}: Docker stacks are deployed through Portainer: give this VM role portainer-agent, or role compose-host to start them from its user data`);
    }
    // A compose host's stacks start from its user data, which lives on the node's snippet storage in plain text.
    if (g.kind === "vm" && g.role?.type === "compose-host") {
      g.dockerStacks.forEach((st, s) => {
        if (Object.keys(st.secretEnv).length > 0) report(`guests[${i}].dockerStacks[${s}].secretEnv`, `${guestLabel(g)}: a compose host's stacks are started from cloud-init user data, which the node keeps in plain text, so they take no secrets: deploy this stack through Portainer (role portainer-agent) or drop secretEnv`);
      });
    }
  });
}

function checkServicesAndRoutes(ctx: Context, report: Report): void {
  const { services, routes, host } = ctx.config;
  const names = new Set<string>();
  duplicates(services.map((s, i) => ({ key: s.name, path: `services[${i}].name` })), (path, first, n) => report(path, `service '${n}' is already declared at ${first}`));
  const listeners: { key: string; path: string }[] = [];
  services.forEach((s, i) => {
    names.add(s.name);
    const guest = ctx.guests.get(s.guest);
    if (!guest) {
      if (!ctx.unchecked.guests.has(s.guest)) report(`services[${i}].guest`, `service ${s.name}: guest ${s.guest} is not declared`);
      return;
    }
    const ip = ctx.guestIp(guest.g);
    if (guest.g.network.ip === "dhcp") report(`services[${i}].guest`, `service ${s.name}: ${guestLabel(guest.g)} uses DHCP; a routed service needs a static address`);
    const role = guest.g.role?.type;
    if (role === "nginx-gateway" || role === "traefik") {
      report(`services[${i}].guest`, `service ${s.name} points at ${guestLabel(guest.g)}, which is a proxy: the route would loop back; point it at the guest that serves it`);
    }
    if (s.scheme === "http" && (guest.g.role?.type === "step-ca" || guest.g.role?.type === "portainer-server") && guest.g.role.port === s.port) {
      report(`services[${i}].scheme`, `service ${s.name} sends plain HTTP to port ${s.port} of ${guestLabel(guest.g)}, which speaks TLS there: set scheme: https`);
    }
    if (ip) listeners.push({ key: `${ip}:${s.port}`, path: `services[${i}].port` });
  });
  ctx.config.guests.forEach((g, i) => {
    const ip = ctx.guestIp(g);
    const port = rolePort(g);
    // A service declared on the role's own port is the same listener, not a clash.
    if (ip && port && !services.some((s) => s.guest === g.vmid && s.port === port)) listeners.push({ key: `${ip}:${port}`, path: `guests[${i}].role` });
  });
  duplicates(listeners, (path, first, where) => report(path, `port clash: ${where} is already taken by ${first}: choose another port`));
  ctx.config.guests.forEach((g, i) => {
    if (g.role?.type !== "model-server" || !ctx.guestIp(g)) return;
    const port = g.role.server.port;
    if (!services.some((s) => s.guest === g.vmid && s.port === port)) {
      report(`guests[${i}].role.server.port`, `${guestLabel(g)} serves models on port ${port} but no service points there: declare one in services (guest ${g.vmid}, port ${port}) so requests can reach it`);
    }
  });
  const gateway = ctx.config.guests.find((g) => g.role?.type === "nginx-gateway");
  const hasModelServer = ctx.config.guests.some((g) => g.role?.type === "model-server");
  const claims: { key: string; path: string }[] = [];
  routes.forEach((r, i) => {
    if (r.service !== undefined && !names.has(r.service) && !ctx.unchecked.services.has(r.service)) report(`routes[${i}].service`, `route ${r.host ?? ""}${r.path}: service '${r.service}' is not declared in services`);
    if (r.byModel && r.host && known(r.host) && r.host !== host.domain) {
      report(`routes[${i}].host`, `route ${r.host}${r.path}: routing by model is served on the gateway host ${host.domain} only: remove host`);
    }
    if (r.byModel && !hasModelServer && ctx.unchecked.guests.size === 0) report(`routes[${i}].byModel`, `route ${r.path} routes by model, but no guest has role model-server`);
    if (r.service !== undefined && gateway && services.find((s) => s.name === r.service)?.guest === gateway.vmid) {
      report(`routes[${i}].service`, `route ${r.path}: service '${r.service}' is the gateway itself; a route must not loop back to the gateway`);
    }
    if (r.host && known(r.host) && r.host !== host.domain && !r.host.endsWith(`.${host.domain}`)) {
      report(`routes[${i}].host`, `route host ${r.host} is outside the internal domain ${host.domain}: the CA issues certificates for that domain only`);
    }
    const taken = r.host && known(r.host) ? routeHostConflict(ctx.config, r.host) : undefined;
    if (taken) report(`routes[${i}].host`, `route host ${r.host}: ${taken}, so the CA would validate the gateway's certificate there and refuse it: choose another host`);
    claims.push({ key: `${(r.host ?? "").toLowerCase()}${r.path}`, path: `routes[${i}]` });
  });
  duplicates(claims, (path, first, claim) => report(path, `route ${claim.startsWith("/") ? `(gateway host)${claim}` : claim} is already claimed by ${first}: each host+path goes to one service`));
  if (routes.length > 0 && !gateway && ctx.unchecked.guests.size === 0) report("routes", "routes are declared but no guest has role nginx-gateway to serve them");
}

/** The port a role's main process listens on, if it has one. */
export function rolePort(g: Guest): number | undefined {
  const role = g.role;
  if (!role) return undefined;
  switch (role.type) {
    case "model-server":
      return role.server.port;
    case "step-ca":
    case "portainer-server":
    case "portainer-agent":
      return role.port;
    case "observability":
      return role.prometheus.port;
    default:
      return undefined;
  }
}

function checkFirewall(ctx: Context, report: Report): void {
  const fw = ctx.config.firewall;
  const groups = new Set(fw.groups.map((g) => g.name));
  duplicates(fw.groups.map((g, i) => ({ key: g.name.toLowerCase(), path: `firewall.groups[${i}].name` })), (path, first, n) => report(path, `security group ${n} is already declared at ${first}`));
  fw.groups.forEach((g, i) => {
    // PVE lower-cases group names (Firewall.pm parse_clusterfw_config: `$group = lc($1)`).
    if (g.name.toLowerCase() === ADMIN_GROUP || g.name.toLowerCase() === NODE_GROUP) report(`firewall.groups[${i}].name`, `security group ${g.name} is Phoenix's own (the nodes' admin and node rules): choose another name`);
  });
  ctx.config.guests.forEach((g, i) => {
    g.firewall.groups.forEach((name, j) => {
      if (!groups.has(name)) report(`guests[${i}].firewall.groups[${j}]`, `${guestLabel(g)}: security group '${name}' is not declared in firewall.groups`);
    });
    if (g.firewall.ipfilter === true && g.network.ip === "dhcp") {
      report(`guests[${i}].firewall.ipfilter`, `${guestLabel(g)} uses DHCP: ipfilter lets a guest send only from its configured address, so PVE would drop all its traffic: give it a static IP or set ipfilter: false`);
    }
  });
  checkRuleShapes(ctx, report);
  checkAdminLockout(ctx, report);
  checkNfsFirewall(ctx, report);
  checkAcmeFirewall(ctx, report);
  checkGatewayApiClients(ctx, report);
}

/**
 * Step-CA validates every name a guest orders at that guest (stacks/routing.ts acmeNames): http-01
 * by fetching port 80, tls-alpn-01 by dialling 443 (smallstep/certificates v0.28.4 acme/challenge.go
 * http01Validate, tlsalpn01Validate). The answering guest's inbound rules and the CA's outbound ones
 * must let that through, or the order fails on the real host and the guest never gets its certificate.
 */
/**
 * A gateway that checks API keys and serves /v1 (servesApi) needs a client, or every /v1 request
 * is refused. A gateway without /v1 routes checks nothing, so it needs none.
 */
function checkGatewayApiClients(ctx: Context, report: Report): void {
  ctx.config.guests.forEach((g, i) => {
    if (g.role?.type !== "nginx-gateway" || !g.role.apiKeys.enabled || g.role.apiKeys.clients.length > 0 || !servesApi(ctx.config)) return;
    report(`guests[${i}].role.apiKeys.clients`, "API keys are on and no client is declared, so every /v1 request would be refused: declare a client (e.g. { name: webapp }) and set its key with `pulumi config set --secret phoenix:gatewayApiKey-webapp \"$(openssl rand -hex 32)\"`, or set apiKeys.enabled: false to serve /v1 without keys");
  });
}

function checkAcmeFirewall(ctx: Context, report: Report): void {
  if (!ctx.config.firewall.enabled) return;
  // Guests are looked up by vmid: with a vmid given twice (reported on its own) the lookup could pick the wrong one.
  if (ctx.guests.size !== ctx.config.guests.length) return;
  for (const c of acmeConnections(ctx.config)) {
    const at = (g: Guest) => `guests[${ctx.config.guests.indexOf(g)}]`;
    const fix = (dir: string, peer: string) => `{ type: ${dir}, action: ACCEPT, proto: tcp, dport: ${c.port}, ${dir === "in" ? "source" : "dest"}: ${peer} }`;
    const why = `Step-CA validates ${c.name} (${c.challenge}) by connecting from ${c.caIp} to ${guestLabel(c.guest)} at ${c.ip}:${c.port}`;
    const inDrop = c.guest.firewall.enabled ? dropsAt(firstMatch(guestChain(ctx.config, c.guest), c.probe("in")), c.guest.firewall.policyIn, `${at(c.guest)}.firewall.policyIn`) : undefined;
    if (inDrop) report(inDrop.path, `${why}, but ${inDrop.what} drops it there: add ${fix("in", c.caIp)} ahead of it`);
    const outDrop = c.ca.firewall.enabled ? dropsAt(firstMatch(guestChain(ctx.config, c.ca), c.probe("out")), c.ca.firewall.policyOut, `${at(c.ca)}.firewall.policyOut`) : undefined;
    if (outDrop) report(outDrop.path, `${why}, but ${outDrop.what} keeps it from leaving the CA: add ${fix("out", c.ip)} ahead of it`);
  }
}

/**
 * Macros and iface as PVE accepts them in each rule list's scope (stacks/firewall-rules.ts).
 * The node's rules are deployed as security group phoenix-node (components/firewall.ts),
 * so they follow a group's rules.
 */
function checkRuleShapes(ctx: Context, report: Report): void {
  const fw = ctx.config.firewall;
  const lists: Array<{ rules: readonly FirewallRule[]; path: string; scope: RuleScope }> = [
    ...ctx.config.guests.map((g, i) => ({ rules: g.firewall.rules, path: `guests[${i}].firewall.rules`, scope: g.kind === "vm" ? ("vm" as const) : ("ct" as const) })),
    ...fw.groups.map((g, i) => ({ rules: g.rules, path: `firewall.groups[${i}].rules`, scope: "group" as const })),
    { rules: fw.rules, path: "firewall.rules", scope: "cluster" },
    { rules: fw.node.rules, path: "firewall.node.rules", scope: "group" },
  ];
  for (const { rules, path, scope } of lists) {
    rules.forEach((r, j) => {
      const at = `${path}[${j}]`;
      if (r.macro !== undefined) {
        const canonical = canonicalMacro(r.macro);
        if (canonical === undefined) report(`${at}.macro`, `PVE has no macro '${r.macro}' and refuses the rule: use one of pve-firewall's macros (listed in stacks/firewall-rules.ts), or proto and dport`);
        else if (canonical !== r.macro) report(`${at}.macro`, `PVE stores this macro as ${canonical}, so '${r.macro}' would show a change on every run: write ${canonical}`);
        // Firewall.pm $apply_macro: a rule's proto/dport/sport that differ from the macro's fail "parameter … already define in macro".
        if (r.proto !== undefined || r.dport !== undefined || r.sport !== undefined) report(at, `a macro brings its own protocol and ports: remove proto, dport and sport, or the macro`);
      }
      const problem = r.iface === undefined ? undefined : ifaceProblem(scope, r.iface);
      if (problem && path === "firewall.node.rules") {
        report(`${at}.iface`, `the node's rules are deployed as security group ${NODE_GROUP}, behind Phoenix's admin rules, and ${problem}: put an interface-specific node rule in firewall.rules (the datacenter's rules, which PVE applies to every node after its own)`);
      } else if (problem) report(`${at}.iface`, problem);
    });
  }
}

/** Where a chain walk drops the probe: the deciding rule, or the policy; undefined when it admits or names an alias or ipset. */
function dropsAt(outcome: Outcome, policy: string, policyPath: string): { path: string; what: string } | undefined {
  if (outcome.by === "unknown") return undefined;
  if (outcome.by === "policy") return policy === "ACCEPT" ? undefined : { path: policyPath, what: `the ${policy} policy` };
  const { rule, path, group } = outcome.entry;
  if (rule.action === "ACCEPT") return undefined;
  return { path, what: `this ${rule.action} rule${group ? ` (in group ${group})` : ""}${outcome.partly ? " (for part of the traffic)" : ""}` };
}

/**
 * SSH (22) and the web UI (8006) must stay reachable: the node's effective chain
 * (hostNodeChain: its own rules, the datacenter's, PVE's management ACCEPTs, then
 * policyIn) is walked from every admin network or, with none declared, from the node's
 * local network, which PVE admits last through its management ipset. That traffic is
 * taken to arrive on host.managementBridge (Phoenix does not know routes to other
 * networks), so a rule limited to another iface does not count.
 */
function checkAdminLockout(ctx: Context, report: Report): void {
  const { firewall: fw, host } = ctx.config;
  if (!fw.enabled || !fw.node.enabled || !ctx.hostCidr) return;
  const chain = hostNodeChain(ctx.config);
  const declared = host.adminNetworks.length > 0;
  const found = new Map<string, { what: string; net: string; ports: number[] }>();
  for (const net of declared ? host.adminNetworks : [subnetOf(ctx.hostCidr)]) {
    for (const port of [22, 8006]) {
      const drop = dropsAt(firstMatch(chain, { direction: "in", port, source: net, dest: ctx.hostCidr.address, iface: host.managementBridge }), fw.policyIn, "firewall.policyIn");
      if (!drop) continue;
      const key = `${drop.path} ${net}`;
      const seen = found.get(key);
      if (seen) seen.ports.push(port);
      else found.set(key, { ...drop, net, ports: [port] });
    }
  }
  for (const [key, { what, net, ports }] of found) {
    const from = declared ? `admin network ${net}` : `${net}, the node's local network (no host.adminNetworks are declared; PVE admits its local network last)`;
    const advice = declared ? "narrow it" : "declare host.adminNetworks (Phoenix admits SSH and the web UI from them ahead of every node rule) or narrow it";
    report(key.split(" ")[0]!, `${what} drops ${ports.map((p) => `tcp/${p}`).join(" and ")} to the node from ${from} before anything admits it, so you would lock yourself out: ${advice}`);
  }
}

/**
 * NFS to the exporting node: Phoenix adds the node's ACCEPT for each client ahead of the
 * node's own rules (nfsRules); the client's own outbound rules and policy must let TCP 2049
 * to the node out too.
 */
function checkNfsFirewall(ctx: Context, report: Report): void {
  if (!ctx.config.firewall.enabled || !ctx.hostCidr) return;
  const node = ctx.hostCidr.address;
  ctx.config.host.nfsExports.forEach((e, i) =>
    e.clients.forEach((vmid, j) => {
      const entry = ctx.guests.get(vmid);
      const ip = entry && guestAddress(entry.g);
      if (!entry || !ip || !entry.g.firewall.enabled) return;
      const g = entry.g;
      const drop = dropsAt(firstMatch(guestChain(ctx.config, g), { direction: "out", port: 2049, source: ip, dest: node, iface: "net0" }), g.firewall.policyOut, `guests[${entry.i}].firewall.policyOut`);
      if (drop) {
        report(`host.nfsExports[${i}].clients[${j}]`, `${guestLabel(g)} mounts /${e.volume} over NFS, but ${drop.what} at ${drop.path} keeps tcp/2049 to the node ${node} from going out: add { type: out, action: ACCEPT, proto: tcp, dport: 2049, dest: ${node} } ahead of it`);
      }
    }),
  );
}

/** Which `versions` keys each layer pins, and which it must pin. */
const LAYER_VERSIONS: Record<Extract<Template, { kind: "lxc" }>["layer"], { allowed: string[]; required: string[] }> = {
  base: { allowed: [], required: [] },
  cuda: { allowed: ["cuda", "nvidia"], required: ["cuda"] },
  vllm: { allowed: ["vllm"], required: ["vllm"] },
};

/**
 * What the templates' versions must agree on (each issue names the config path). The CUDA layer's NVIDIA user-space is the host driver's version: a template may
 * repeat it as versions.nvidia, but never differ from it.
 */
export function templateVersionIssues(config: { templates: Template[]; host: Pick<Host, "nvidiaDriver"> }): Array<{ path: string; message: string }> {
  const issues: Array<{ path: string; message: string }> = [];
  const byVmid = new Map(config.templates.map((t) => [t.vmid, t]));
  const layerChain = (t: Extract<Template, { kind: "lxc" }>): string[] => {
    const seen = new Set<number>();
    const layers: string[] = [];
    for (let cur: Template | undefined = t; cur?.kind === "lxc" && !seen.has(cur.vmid); cur = "clone" in cur.source ? byVmid.get(cur.source.clone) : undefined) {
      seen.add(cur.vmid);
      layers.push(cur.layer);
    }
    return layers;
  };
  config.templates.forEach((t, i) => {
    if (t.kind !== "lxc") return;
    const rule = LAYER_VERSIONS[t.layer];
    for (const key of Object.keys(t.versions).filter((k) => !rule.allowed.includes(k))) {
      issues.push({ path: `templates[${i}].versions.${key}`, message: `template ${t.vmid}: layer ${t.layer} pins ${rule.allowed.join(", ") || "no versions"}, not ${key}` });
    }
    for (const key of rule.required.filter((k) => t.versions[k] === undefined)) {
      issues.push({ path: `templates[${i}].versions.${key}`, message: `template ${t.vmid}: layer ${t.layer} needs versions.${key} pinned (e.g. ${key === "cuda" ? '"12.8"' : "0.11.0"})` });
    }
    if (t.layer === "cuda" && t.versions.cuda !== undefined && !/^\d+\.\d+$/.test(t.versions.cuda)) {
      issues.push({ path: `templates[${i}].versions.cuda`, message: `template ${t.vmid}: versions.cuda is the CUDA runtime's major.minor (e.g. "12.8"), not ${t.versions.cuda}` });
    }
    if (t.layer === "cuda" && !config.host.nvidiaDriver) {
      issues.push({ path: `templates[${i}].layer`, message: `template ${t.vmid}: the cuda layer installs the host driver's user-space: declare host.nvidiaDriver.version` });
    }
    const pinned = t.versions.nvidia;
    const host = config.host.nvidiaDriver?.version;
    if (t.layer === "cuda" && pinned !== undefined && host !== undefined && pinned !== host) {
      issues.push({
        path: `templates[${i}].versions.nvidia`,
        message: `template ${t.vmid}: versions.nvidia ${pinned} differs from host.nvidiaDriver.version ${host}; container user-space must match the host's kernel module exactly: remove versions.nvidia or make it ${host}`,
      });
    }
    if (t.layer === "vllm" && !layerChain(t).includes("cuda")) {
      issues.push({ path: `templates[${i}].source.clone`, message: `template ${t.vmid}: vLLM needs the CUDA user-space: clone it from a cuda template` });
    }
    if (t.features.keyctl || t.features.fuse) {
      issues.push({ path: `templates[${i}].features`, message: `template ${t.vmid}: keyctl and fuse need root@pam, which template builds do not use: set them on the guests that need them` });
    } else if (t.features.nesting && !t.unprivileged) {
      // pve-container@6.0.18 src/PVE/LXC.pm check_ct_modify_config_perm: any features on a privileged container are root@pam's.
      issues.push({ path: `templates[${i}].features.nesting`, message: `template ${t.vmid}: features on a privileged container need root@pam, which template builds do not use: set nesting on the guests that need it` });
    }
  });
  return issues;
}
