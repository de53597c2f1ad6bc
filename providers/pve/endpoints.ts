import type { PveClient } from "./client";
import type { FormParams } from "./form";
import { isUpid, pollDelay, waitForTask, type TaskResult, type WaitOptions } from "./tasks";

export type GuestKind = "lxc" | "qemu";

/** A guest config as GET …/config returns it: property strings, numbers for numeric and boolean keys. */
export type GuestConfig = Record<string, string | number> & { digest?: string };

export interface GuestStatus {
  vmid: number;
  status: "running" | "stopped";
  name?: string;
  lock?: string;
  template?: number;
  uptime?: number;
}

export interface NodeStorage {
  storage: string;
  type: string;
  content: string;
  active: number;
  enabled: number;
  total: number;
  used: number;
  avail: number;
}

export interface StorageVolume {
  volid: string;
  content: string;
  format: string;
  size: number;
  ctime: number;
  vmid?: number;
}

export interface AplinfoEntry {
  template: string;
  package: string;
  version: string;
  os: string;
  section: string;
  type: string;
  headline: string;
  location: string;
  sha512sum?: string;
}

export interface PciDevice {
  id: string;
  class: string;
  vendor: string;
  device: string;
  iommugroup: number;
  subsystem_vendor?: string;
  subsystem_device?: string;
  vendor_name?: string;
  device_name?: string;
  mdev?: number | boolean;
}

export interface PciMapping {
  id: string;
  map: string[];
  description?: string;
  checks?: Array<{ severity: string; message: string }>;
  digest?: string;
}

export type FirewallRule = Record<string, string | number> & { pos: number; type: string; action: string };

/** Whose firewall: the datacenter, a node, or a guest. */
export type FirewallScope = { kind: "cluster" } | { kind: "node"; node: string } | { kind: GuestKind; node: string; vmid: number };

const e = encodeURIComponent;

/** The storage a `STORAGE:…` volume spec or volume id lives on. */
function storageOf(spec: unknown): string | undefined {
  if (typeof spec !== "string") return undefined;
  const volume = spec.split(",").find((p) => !p.includes("=") || /^(volume|file)=/.test(p));
  return /^(?:(?:volume|file)=)?([^/:\s,=]+):/.exec(volume ?? "")?.[1];
}

/** Scalar requested settings (not property strings or volumes) agree with an existing config. */
function sameScalars(requested: FormParams, existing: GuestConfig): boolean {
  for (const [k, v] of Object.entries(requested)) {
    if (v === undefined || v === null || Array.isArray(v) || !(k in existing)) continue;
    const want = typeof v === "boolean" ? (v ? "1" : "0") : String(v);
    if (/[=:,]/.test(want)) continue;
    if (String(existing[k]) !== want) return false;
  }
  return true;
}

class Rules {
  constructor(
    private readonly client: PveClient,
    private readonly base: string,
  ) {}

  list(): Promise<FirewallRule[]> {
    return this.client.get(this.base);
  }

  /**
   * Inserts a rule at the top of the list: pve-firewall 6.0.4 src/PVE/API2/Firewall/Rules.pm
   * create_rule does `unshift @$rules` and ignores `pos`, and checks no digest. So a replayed
   * POST would add the rule twice: it is tried again only when the first try changed nothing.
   */
  add(rule: FormParams): Promise<null> {
    return this.client.post(this.base, rule, { retry: "unapplied" });
  }

  /** `digest` (from `list()`) makes PVE refuse the change if the list changed meanwhile (Rules.pm update_rule). */
  update(pos: number, rule: FormParams, digest?: string): Promise<null> {
    return this.client.put(`${this.base}/${pos}`, { ...rule, digest });
  }

  /**
   * Deletes the rule at `pos` of the list whose `digest` (from `list()`) is given. Rules.pm
   * delete_rule checks it with PVE::Tools::assert_if_modified, so a replay after the first try
   * went through fails ("detected modified configuration") instead of deleting the next rule.
   */
  remove(pos: number, digest: string): Promise<null> {
    return this.client.delete(`${this.base}/${pos}`, { digest });
  }
}

/** Firewall options, rules, IP sets and aliases of one scope (all synchronous in PVE). */
export class Firewall {
  readonly rules: Rules;

  constructor(
    private readonly client: PveClient,
    readonly base: string,
  ) {
    this.rules = new Rules(client, `${base}/rules`);
  }

  options(): Promise<Record<string, string | number>> {
    return this.client.get(`${this.base}/options`);
  }

  setOptions(options: FormParams): Promise<null> {
    return this.client.put(`${this.base}/options`, options);
  }

  ipsets(): Promise<Array<{ name: string; comment?: string; digest: string }>> {
    return this.client.get(`${this.base}/ipset`);
  }

  createIpset(name: string, comment?: string): Promise<null> {
    return this.client.post(`${this.base}/ipset`, { name, comment });
  }

  deleteIpset(name: string, force = false): Promise<null> {
    return this.client.delete(`${this.base}/ipset/${e(name)}`, { force: force || undefined });
  }

  ipsetEntries(name: string): Promise<Array<{ cidr: string; comment?: string; nomatch?: number }>> {
    return this.client.get(`${this.base}/ipset/${e(name)}`);
  }

  addIpsetEntry(name: string, cidr: string, opts: { comment?: string; nomatch?: boolean } = {}): Promise<null> {
    return this.client.post(`${this.base}/ipset/${e(name)}`, { cidr, ...opts });
  }

  deleteIpsetEntry(name: string, cidr: string): Promise<null> {
    return this.client.delete(`${this.base}/ipset/${e(name)}/${e(cidr)}`);
  }

  aliases(): Promise<Array<{ name: string; cidr: string; comment?: string }>> {
    return this.client.get(`${this.base}/aliases`);
  }

  createAlias(name: string, cidr: string, comment?: string): Promise<null> {
    return this.client.post(`${this.base}/aliases`, { name, cidr, comment });
  }

  updateAlias(name: string, cidr: string, comment?: string): Promise<null> {
    return this.client.put(`${this.base}/aliases/${e(name)}`, { cidr, comment });
  }

  deleteAlias(name: string): Promise<null> {
    return this.client.delete(`${this.base}/aliases/${e(name)}`);
  }
}

/** Typed calls for the endpoints Phoenix uses, on top of a PveClient. */
export class PveApi {
  constructor(readonly client: PveClient) {}

  close(): void {
    this.client.close();
  }

  version(): Promise<{ version: string; release: string; repoid: string }> {
    return this.client.get("/version");
  }

  nodes(): Promise<Array<{ node: string; status: string; maxcpu?: number; maxmem?: number }>> {
    return this.client.get("/nodes");
  }

  /** The next free VMID, or (with `vmid`) whether that one is free. */
  async nextId(vmid?: number): Promise<number> {
    return Number(await this.client.get("/cluster/nextid", { vmid }));
  }

  waitForTask(upid: string, opts?: WaitOptions): Promise<TaskResult> {
    return waitForTask(this.client, upid, opts);
  }

  /** Dispatches a call that returns a UPID and waits for its task. */
  async runTask(method: "POST" | "PUT" | "DELETE", path: string, params: FormParams = {}, opts: { adoptExisting?: () => Promise<boolean> } & WaitOptions = {}): Promise<TaskResult | undefined> {
    const upid = await this.client.request(method, path, params, { adoptExisting: opts.adoptExisting });
    if (upid === null) return undefined;
    if (!isUpid(upid)) throw new Error(`PVE API ${method} ${path} returned ${JSON.stringify(upid)} where a task id (UPID) was expected`);
    return this.waitForTask(upid, opts);
  }

  private guestPath(node: string, kind: GuestKind, vmid?: number): string {
    return `/nodes/${e(node)}/${kind}${vmid === undefined ? "" : `/${vmid}`}`;
  }

  listGuests(node: string, kind: GuestKind): Promise<GuestStatus[]> {
    return this.client.get(this.guestPath(node, kind));
  }

  guestConfig(node: string, kind: GuestKind, vmid: number): Promise<GuestConfig> {
    return this.client.get(`${this.guestPath(node, kind, vmid)}/config`);
  }

  /** Synchronous config update (PUT); `delete` takes a comma-separated key list. */
  updateGuestConfig(node: string, kind: GuestKind, vmid: number, params: FormParams): Promise<null> {
    return this.client.put(`${this.guestPath(node, kind, vmid)}/config`, params);
  }

  guestStatus(node: string, kind: GuestKind, vmid: number): Promise<GuestStatus> {
    return this.client.get(`${this.guestPath(node, kind, vmid)}/status/current`);
  }

  setGuestState(node: string, kind: GuestKind, vmid: number, action: "start" | "stop" | "shutdown" | "reboot", params: FormParams = {}): Promise<TaskResult | undefined> {
    return this.runTask("POST", `${this.guestPath(node, kind, vmid)}/status/${action}`, params);
  }

  deleteGuest(node: string, kind: GuestKind, vmid: number, params: FormParams = { purge: true, "destroy-unreferenced-disks": true }): Promise<TaskResult | undefined> {
    return this.runTask("DELETE", this.guestPath(node, kind, vmid), params);
  }

  resizeGuestDisk(node: string, kind: GuestKind, vmid: number, disk: string, size: string): Promise<TaskResult | undefined> {
    return this.runTask("PUT", `${this.guestPath(node, kind, vmid)}/resize`, { disk, size });
  }

  /** Waits until a guest holds no lock (after adopting an object whose task may still run). */
  async waitForUnlock(node: string, kind: GuestKind, vmid: number, opts: WaitOptions = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? this.client.options.task?.timeoutMs ?? 30 * 60_000;
    const deadline = this.client.now() + timeoutMs;
    for (let attempt = 0; (await this.guestStatus(node, kind, vmid)).lock !== undefined; attempt++) {
      if (this.client.now() >= deadline) {
        throw new Error(`${kind === "lxc" ? "CT" : "VM"} ${vmid} on ${node} is still locked after ${Math.round(timeoutMs / 1000)} s; check its running tasks in PVE`);
      }
      await this.client.sleep(pollDelay(this.client, opts, attempt));
    }
  }

  /**
   * Waits until the cluster lists a guest on `node` without a lock, as pve-manager 14a22df3
   * PVE/API2/Cluster.pm resources shows it: the node from pmxcfs's vmlist, `lock` from the config.
   * False when it is gone or listed as another kind; while it is locked or on another node (a
   * clone whose config is still to move) it is polled until the task's timeout.
   */
  async waitForGuestAt(kind: GuestKind, vmid: number, node: string, opts: WaitOptions = {}): Promise<boolean> {
    const timeoutMs = opts.timeoutMs ?? this.client.options.task?.timeoutMs ?? 30 * 60_000;
    const deadline = this.client.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const all = await this.client.get<Array<{ vmid?: number; type?: string; node?: string; lock?: string }>>("/cluster/resources", { type: "vm" });
      const found = all.find((r) => Number(r.vmid) === vmid);
      if (!found || found.type !== kind) return false;
      if (found.node === node && found.lock === undefined) return true;
      if (this.client.now() >= deadline) {
        const where = `the cluster lists it on ${String(found.node)}${found.lock !== undefined ? `, locked (${found.lock})` : ""}`;
        throw new Error(`${kind === "lxc" ? "CT" : "VM"} ${vmid} is not on ${node} without a lock after ${Math.round(timeoutMs / 1000)} s (${where}); check its running tasks in PVE`);
      }
      await this.client.sleep(pollDelay(this.client, opts, attempt));
    }
  }

  private async createGuest(node: string, kind: GuestKind, params: FormParams & { vmid: number }, diskKeys: RegExp, defaultStorage: string): Promise<TaskResult | undefined> {
    const storages = new Set<string>();
    for (const [k, v] of Object.entries(params)) if (diskKeys.test(k)) storages.add(storageOf(v) ?? defaultStorage);
    if (kind === "lxc" && params.rootfs === undefined) storages.add(String(params.storage ?? defaultStorage));
    const run = () =>
      this.runTask("POST", this.guestPath(node, kind), params, {
        adoptExisting: async () => {
          const existing = await this.guestConfig(node, kind, params.vmid).catch(() => undefined);
          if (!existing || !sameScalars(params, existing)) return false;
          await this.waitForUnlock(node, kind, params.vmid);
          return true;
        },
      });
    return this.withStorages([...storages].sort(), run);
  }

  private withStorages<T>(storages: string[], fn: () => Promise<T>): Promise<T> {
    const [first, ...rest] = storages;
    if (first === undefined) return fn();
    return this.client.concurrency.perStorage.run(first, () => this.withStorages(rest, fn));
  }

  /** Creates a container and waits for `vzcreate`; bounded per storage; a retried create adopts a matching CT. */
  createContainer(node: string, params: FormParams & { vmid: number; ostemplate: string }): Promise<TaskResult | undefined> {
    return this.createGuest(node, "lxc", params, /^(rootfs|mp\d+)$/, "local");
  }

  /** Creates a VM and waits for `qmcreate`; bounded per storage. */
  createVm(node: string, params: FormParams & { vmid: number }): Promise<TaskResult | undefined> {
    return this.createGuest(node, "qemu", params, /^((scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0)$/, "local");
  }

  private async cloneGuest(node: string, kind: GuestKind, vmid: number, newid: number, params: FormParams, nameKey: string): Promise<TaskResult | undefined> {
    const source = await this.guestConfig(node, kind, vmid);
    const target =
      (typeof params.storage === "string" ? params.storage : undefined) ??
      storageOf(kind === "lxc" ? source.rootfs : (source.scsi0 ?? source.virtio0 ?? source.sata0)) ??
      "local";
    const run = () =>
      this.client.concurrency.perStorage.run(target, () =>
        this.runTask("POST", `${this.guestPath(node, kind, vmid)}/clone`, { newid, ...params }, {
          adoptExisting: async () => {
            // With `target`, the clone is made here and its config moved to the target at its end
            // (pve-container 963730e src/PVE/API2/LXC.pm:2240-2248 move_config_to_node, qemu-server
            // e6352be6 src/PVE/API2/Qemu.pm:4693-4707): an earlier try's clone is adopted where it ends up.
            const at = typeof params.target === "string" && params.target !== "localhost" ? params.target : node;
            if (!(await this.waitForGuestAt(kind, newid, at))) return false;
            const existing = await this.guestConfig(at, kind, newid).catch(() => undefined);
            return existing !== undefined && (params[nameKey] === undefined || existing[nameKey] === params[nameKey]);
          },
        }),
      );
    // pve-container holds the source's `disk` lock for the whole clone, so clones of one
    // container template must not overlap; qemu clones of one template may.
    return kind === "lxc" ? this.client.concurrency.perTemplate.run(`${node}/${vmid}`, run) : run();
  }

  /** Clones a container (linked from a template unless `full`); clones of one template run one at a time. */
  cloneContainer(node: string, vmid: number, newid: number, params: FormParams & { hostname?: string; full?: boolean; storage?: string } = {}): Promise<TaskResult | undefined> {
    return this.cloneGuest(node, "lxc", vmid, newid, params, "hostname");
  }

  cloneVm(node: string, vmid: number, newid: number, params: FormParams & { name?: string; full?: boolean; storage?: string } = {}): Promise<TaskResult | undefined> {
    return this.cloneGuest(node, "qemu", vmid, newid, params, "name");
  }

  /**
   * Converts a guest to a template and waits for its task; a failed conversion throws
   * PveTaskError with the task's exit status. qemu-server 9.1.2 src/PVE/API2/Qemu.pm `template`
   * returns the `qmtemplate` UPID. pve-container 6.0.18 src/PVE/API2/LXC.pm `template` forks a
   * `vztemplate` worker (id: the vmid) under the config lock yet returns null, so the task is
   * found in the node's task list (pve-manager PVE/API2/Tasks.pm: `typefilter`, `vmid`,
   * `source=all` lists running tasks first, then finished ones newest first).
   */
  async convertToTemplate(node: string, kind: GuestKind, vmid: number, opts: WaitOptions = {}): Promise<TaskResult> {
    const result = await this.runTask("POST", `${this.guestPath(node, kind, vmid)}/template`, {}, opts);
    if (result) return result;
    const tasks = await this.client.get<Array<{ upid: string; starttime: number; pstart: number }>>(`/nodes/${e(node)}/tasks`, {
      typefilter: "vztemplate",
      vmid,
      source: "all",
    });
    // The newest one is ours: PVE refuses a second conversion of a template up front.
    const newest = [...tasks].sort((a, b) => b.starttime - a.starttime || b.pstart - a.pstart)[0];
    if (!newest) throw new Error(`PVE accepted POST ${this.guestPath(node, kind, vmid)}/template, but node ${node} lists no vztemplate task for CT ${vmid}`);
    return this.waitForTask(newest.upid, opts);
  }

  snapshots(node: string, kind: GuestKind, vmid: number): Promise<Array<{ name: string; description?: string; snaptime?: number; parent?: string }>> {
    return this.client.get(`${this.guestPath(node, kind, vmid)}/snapshot`);
  }

  createSnapshot(node: string, kind: GuestKind, vmid: number, snapname: string, description?: string): Promise<TaskResult | undefined> {
    return this.runTask("POST", `${this.guestPath(node, kind, vmid)}/snapshot`, { snapname, description });
  }

  deleteSnapshot(node: string, kind: GuestKind, vmid: number, snapname: string): Promise<TaskResult | undefined> {
    return this.runTask("DELETE", `${this.guestPath(node, kind, vmid)}/snapshot/${e(snapname)}`);
  }

  rollbackSnapshot(node: string, kind: GuestKind, vmid: number, snapname: string): Promise<TaskResult | undefined> {
    return this.runTask("POST", `${this.guestPath(node, kind, vmid)}/snapshot/${e(snapname)}/rollback`);
  }

  storages(): Promise<Array<Record<string, string | number> & { storage: string; type: string }>> {
    return this.client.get("/storage");
  }

  storage(id: string): Promise<Record<string, string | number> & { storage: string; type: string; digest: string }> {
    return this.client.get(`/storage/${e(id)}`);
  }

  createStorage(params: FormParams & { storage: string; type: string }): Promise<{ storage: string; type: string }> {
    return this.client.post("/storage", params, {
      adoptExisting: async () => {
        const existing = await this.storage(params.storage).catch(() => undefined);
        return existing !== undefined && existing.type === params.type;
      },
    });
  }

  updateStorage(id: string, params: FormParams): Promise<unknown> {
    return this.client.put(`/storage/${e(id)}`, params);
  }

  deleteStorage(id: string): Promise<null> {
    return this.client.delete(`/storage/${e(id)}`);
  }

  nodeStorages(node: string, content?: string): Promise<NodeStorage[]> {
    return this.client.get(`/nodes/${e(node)}/storage`, { content });
  }

  storageContent(node: string, storage: string, content?: string): Promise<StorageVolume[]> {
    return this.client.get(`/nodes/${e(node)}/storage/${e(storage)}/content`, { content });
  }

  aplinfo(node: string): Promise<AplinfoEntry[]> {
    return this.client.get(`/nodes/${e(node)}/aplinfo`);
  }

  /** Downloads a catalogue template (`download` task) into a storage. */
  downloadTemplate(node: string, storage: string, template: string): Promise<TaskResult | undefined> {
    return this.client.concurrency.perStorage.run(storage, () => this.runTask("POST", `/nodes/${e(node)}/aplinfo`, { storage, template }));
  }

  downloadUrl(node: string, storage: string, params: FormParams & { url: string; content: string; filename: string }): Promise<TaskResult | undefined> {
    return this.client.concurrency.perStorage.run(storage, () => this.runTask("POST", `/nodes/${e(node)}/storage/${e(storage)}/download-url`, params));
  }

  firewall(scope: FirewallScope): Firewall {
    if (scope.kind === "cluster") return new Firewall(this.client, "/cluster/firewall");
    if (scope.kind === "node") return new Firewall(this.client, `/nodes/${e(scope.node)}/firewall`);
    return new Firewall(this.client, `${this.guestPath(scope.node, scope.kind, scope.vmid)}/firewall`);
  }

  securityGroups(): Promise<Array<{ group: string; comment?: string; digest: string }>> {
    return this.client.get("/cluster/firewall/groups");
  }

  createSecurityGroup(group: string, comment?: string): Promise<null> {
    return this.client.post("/cluster/firewall/groups", { group, comment });
  }

  deleteSecurityGroup(group: string): Promise<null> {
    return this.client.delete(`/cluster/firewall/groups/${e(group)}`);
  }

  securityGroupRules(group: string): Rules {
    return new Rules(this.client, `/cluster/firewall/groups/${e(group)}`);
  }

  pciDevices(node: string, opts: { "pci-class-blacklist"?: string; verbose?: boolean } = {}): Promise<PciDevice[]> {
    return this.client.get(`/nodes/${e(node)}/hardware/pci`, opts);
  }

  pciMappings(checkNode?: string): Promise<PciMapping[]> {
    return this.client.get("/cluster/mapping/pci", { "check-node": checkNode });
  }

  pciMapping(id: string): Promise<PciMapping> {
    return this.client.get(`/cluster/mapping/pci/${e(id)}`);
  }

  /** `map` entries are property strings: `node=pve,path=0000:01:00.0,id=10de:2204[,iommugroup=14]`. */
  createPciMapping(params: FormParams & { id: string; map: readonly string[] }): Promise<null> {
    return this.client.post("/cluster/mapping/pci", params, {
      adoptExisting: async () => {
        const existing = await this.pciMapping(params.id).catch(() => undefined);
        return existing !== undefined && JSON.stringify(existing.map) === JSON.stringify(params.map);
      },
    });
  }

  updatePciMapping(id: string, params: FormParams): Promise<null> {
    return this.client.put(`/cluster/mapping/pci/${e(id)}`, params);
  }

  deletePciMapping(id: string): Promise<null> {
    return this.client.delete(`/cluster/mapping/pci/${e(id)}`);
  }
}
