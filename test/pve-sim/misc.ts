import { checkDigest, deleteList, flag, int, req, startTask, str, typed, withStorageLock, type Handler, type HandlerCtx } from "./core";
import { splitList } from "./formats";
import { firewallHandlers } from "./firewall";
import { accessHandlers } from "./access";
import { digestOf } from "./state";
import { die, paramError } from "./tasks";

function nodeOf(ctx: HandlerCtx): string {
  const node = req(ctx, "node");
  ctx.sim.state.node(node);
  return node;
}

function clusterHandlers(): Record<string, Handler> {
  return {
    "GET /version": (ctx) =>
      ctx.sim.schema.version === 9
        ? { version: "9.1.3", release: "9.1", repoid: "a8736b6e" }
        : { version: "8.4.2", release: "8.4", repoid: "1f8d0a3c" },
    "GET /nodes/{node}": (ctx) => {
      nodeOf(ctx);
      return ["aplinfo", "disks", "firewall", "hardware", "lxc", "qemu", "status", "storage", "tasks"].map((subdir) => ({ subdir }));
    },
    "GET /nodes/{node}/status": (ctx) => {
      nodeOf(ctx);
      return { uptime: 86400, cpu: 0.02, pveversion: `pve-manager/${ctx.sim.schema.version === 9 ? "9.1.3" : "8.4.2"}`, kversion: "Linux 6.14" };
    },
    "GET /cluster/nextid": (ctx) => {
      const vmid = int(ctx, "vmid");
      if (vmid !== undefined) {
        if (ctx.sim.state.guests.has(vmid)) throw paramError({ vmid: `VM ${vmid} already exists` });
        return vmid;
      }
      for (let id = 100; ; id++) if (!ctx.sim.state.guests.has(id)) return id;
    },
  };
}

function taskHandlers(): Record<string, Handler> {
  const task = (ctx: HandlerCtx) => {
    nodeOf(ctx);
    const upid = req(ctx, "upid");
    if (!upid.startsWith("UPID:")) throw paramError({ upid: "unable to parse worker upid" });
    const t = ctx.sim.tasks.tasks.get(upid);
    if (!t) throw paramError({ upid: "no such task" });
    return t;
  };
  return {
    "GET /nodes/{node}/tasks/{upid}/status": (ctx) => {
      const t = task(ctx);
      return {
        upid: t.upid,
        node: t.node,
        pid: t.pid,
        pstart: t.pstart,
        starttime: t.starttime,
        type: t.type,
        id: t.id,
        user: t.user.split("!")[0],
        ...(t.user.includes("!") ? { tokenid: t.user.split("!")[1] } : {}),
        status: t.status,
        ...(t.exitstatus !== undefined ? { exitstatus: t.exitstatus } : {}),
      };
    },
    "GET /nodes/{node}/tasks/{upid}/log": (ctx) => {
      const t = task(ctx);
      const start = int(ctx, "start") ?? 0;
      const limit = int(ctx, "limit") ?? 50;
      return t.log.slice(start, start + limit).map((line, i) => ({ n: start + i + 1, t: line }));
    },
    "DELETE /nodes/{node}/tasks/{upid}": (ctx) => {
      const t = task(ctx);
      if (t.status === "running") {
        t.status = "stopped";
        t.exitstatus = "unexpected status";
        t.log.push("received interrupt", "TASK ERROR: interrupted by signal");
      }
      return null;
    },
    "GET /nodes/{node}/tasks": (ctx) => {
      const node = nodeOf(ctx);
      const vmid = str(ctx, "vmid");
      const typefilter = str(ctx, "typefilter");
      const source = str(ctx, "source") ?? "archive";
      const since = int(ctx, "since");
      return [...ctx.sim.tasks.tasks.values()]
        .filter((t) => t.node === node)
        .filter((t) => vmid === undefined || t.id === vmid)
        .filter((t) => typefilter === undefined || t.type === typefilter)
        .filter((t) => source === "all" || (source === "active") === (t.status === "running"))
        .filter((t) => since === undefined || t.starttime >= since)
        // pve-manager@9.1.3 PVE/API2/Tasks.pm node_tasks: a running task's status reads RUNNING.
        .map((t) => ({ upid: t.upid, node: t.node, type: t.type, id: t.id, user: t.user, starttime: t.starttime, pid: t.pid, pstart: t.pstart, status: t.exitstatus ?? "RUNNING" }))
        .reverse()
        .slice(int(ctx, "start") ?? 0, (int(ctx, "start") ?? 0) + (int(ctx, "limit") ?? 50));
    },
  };
}

/** Keys each storage type accepts (pve-storage plugin `options()`), for the types Phoenix configures. */
const STORAGE_KEYS: Record<string, string[]> = {
  zfspool: ["pool", "blocksize", "sparse", "nodes", "disable", "content", "bwlimit", "mountpoint"],
  dir: ["path", "content", "content-dirs", "nodes", "shared", "disable", "prune-backups", "max-protected-backups", "format", "mkdir", "create-base-path", "create-subdirs", "is_mountpoint", "bwlimit", "preallocation", "snapshot-as-volume-chain"],
  // pve-storage@9.1.7 src/PVE/Storage/PBSPlugin.pm options.
  pbs: ["server", "datastore", "namespace", "port", "nodes", "disable", "content", "username", "password", "encryption-key", "master-pubkey", "prune-backups", "max-protected-backups", "fingerprint"],
};
const STORAGE_FIXED: Record<string, string[]> = { zfspool: ["pool"], dir: ["path"], pbs: ["server", "datastore"] };
/**
 * PBSPlugin.pm plugindata `sensitive-properties`: API2/Storage/Config.pm create/update take them out
 * of the parameters (extract_sensitive_params) before the section config is written, and
 * on_add_hook/on_update_hook keep the password in /etc/pve/priv/storage/<id>.pw (pbs_set_password),
 * so GET /storage/{id} never shows it. Kept here per simulator, by storage id.
 */
const SENSITIVE: Record<string, string[]> = { pbs: ["password", "encryption-key", "master-pubkey"] };
const PRIV = new WeakMap<object, Map<string, Record<string, string>>>();
export function storageSecrets(state: object, id: string): Record<string, string> | undefined {
  return PRIV.get(state)?.get(id);
}
function keepSensitive(ctx: HandlerCtx, id: string, type: string, values: Record<string, string>, deleted: string[] = []): void {
  const priv = PRIV.get(ctx.sim.state) ?? new Map<string, Record<string, string>>();
  PRIV.set(ctx.sim.state, priv);
  const kept = { ...(priv.get(id) ?? {}) };
  for (const k of SENSITIVE[type] ?? []) {
    if (values[k] !== undefined) kept[k] = values[k];
    if (deleted.includes(k)) delete kept[k];
    delete values[k];
  }
  priv.set(id, kept);
}
/**
 * PBSPlugin.pm on_add_hook/on_update_hook (pve-storage@9.1.7): an `encryption-key` other than
 * 'autogen' must decode as JSON with `data` ("Value does not seems like a valid, JSON formatted
 * encryption key!"); the key goes to /etc/pve/priv/storage/<id>.enc and storage.cfg keeps its
 * fingerprint (or 1) under `encryption-key`. 'autogen' runs proxmox-backup-client, which the
 * simulator has not: refused.
 */
function pbsKeyFingerprint(key: string | undefined): string | undefined {
  if (key === undefined) return undefined;
  if (key === "autogen") throw die("encryption-key 'autogen' needs proxmox-backup-client, which the simulator does not run");
  let decoded: unknown;
  try {
    decoded = JSON.parse(key);
  } catch {
    decoded = undefined;
  }
  if (typeof decoded !== "object" || decoded === null || !("data" in decoded)) throw die("Value does not seems like a valid, JSON formatted encryption key!");
  const fp = (decoded as { fingerprint?: unknown }).fingerprint;
  return typeof fp === "string" && fp !== "" ? fp : "1";
}
/** pve-storage@9.1.0 src/PVE/Storage/ZFSPoolPlugin.pm and DirPlugin.pm plugindata `content`. */
const CONTENT_ALLOWED: Record<string, string[]> = {
  zfspool: ["images", "rootdir"],
  dir: ["images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none"],
  pbs: ["backup", "none"],
};
const STORAGE_CONTROL = new Set(["storage", "type", "delete", "digest"]);

function storageValues(ctx: HandlerCtx, type: string): Record<string, string> {
  const out: Record<string, string> = {};
  const keys = STORAGE_KEYS[type];
  for (const [k, v] of Object.entries(ctx.params)) {
    if (STORAGE_CONTROL.has(k)) continue;
    if (keys && !keys.includes(k)) throw paramError({ [k]: `unexpected property '${k}'` });
    out[k] = Array.isArray(v) ? v.join(",") : v;
  }
  const allowed = CONTENT_ALLOWED[type];
  if (out.content !== undefined && allowed) {
    // pve-storage@9.1.0 src/PVE/Storage/Plugin.pm decode_value: a content type the plugin does
    // not support is dropped with a warning (`warn`, which a synchronous API call does not
    // return); 'none' cannot be combined, and nothing left is an error unless 'none' is allowed.
    const content = splitList(out.content).filter((c) => allowed.includes(c));
    if (content.includes("none") && content.length > 1) throw die("unable to combine 'none' with other content types");
    if (content.length === 0 && !allowed.includes("none")) throw die("storage does not support content type 'none'");
    out.content = content.join(",");
  }
  return out;
}

function storageHandlers(): Record<string, Handler> {
  const schemaOf = (ctx: HandlerCtx) => ctx.sim.schema.find("POST", "/storage")?.params ?? {};
  const show = (ctx: HandlerCtx, id: string) => {
    const s = ctx.sim.state.storage(id);
    return { storage: s.id, type: s.type, ...typed(s.config, schemaOf(ctx)), digest: digestOf(s.config) };
  };
  const volumeList = (ctx: HandlerCtx, storageId: string) => {
    const content = str(ctx, "content");
    const vmid = int(ctx, "vmid");
    return [...ctx.sim.state.storage(storageId).volumes.values()]
      .filter((v) => content === undefined || v.content === content)
      .filter((v) => vmid === undefined || v.vmid === vmid)
      .map((v) => ({ volid: v.volid, content: v.content, format: v.format, size: v.size, ctime: v.ctime, ...(v.vmid !== undefined ? { vmid: v.vmid } : {}), ...(v.parent ? { parent: v.parent } : {}), ...(v.notes !== undefined ? { notes: v.notes.split("\n")[0] } : {}) }));
  };
  const addFile = (ctx: HandlerCtx, type: string, storageId: string, content: string, filename: string) => {
    const s = ctx.sim.state.storage(storageId);
    if (!ctx.sim.state.contentOf(s).includes(content)) {
      throw die(`storage '${storageId}' is not configured for content-type '${content}'`);
    }
    const dir = content === "vztmpl" ? "vztmpl" : content === "iso" ? "iso" : content;
    const volid = `${storageId}:${dir}/${filename}`;
    return startTask(ctx, type, filename, async ({ log, sleep }) => {
      log(`downloading ${filename} to ${volid}`);
      await withStorageLock(ctx.sim, storageId, sleep, () => {
        s.volumes.set(volid, { volid, storage: storageId, content, format: /\.iso$/.test(filename) ? "iso" : "tzst", size: 200 * 1024 ** 2, ctime: Math.floor(ctx.sim.state.now() / 1000) });
      });
    });
  };
  return {
    "GET /storage": (ctx) => [...ctx.sim.state.storages.keys()].map((id) => show(ctx, id)),
    "POST /storage": (ctx) => {
      const id = req(ctx, "storage");
      const type = req(ctx, "type");
      if (ctx.sim.state.storages.has(id)) throw die(`create storage failed: storage ID '${id}' already defined`);
      const config = storageValues(ctx, type);
      for (const k of STORAGE_FIXED[type] ?? []) {
        if (config[k] === undefined) throw paramError({ [k]: "property is missing and it is not optional" });
      }
      const keyFingerprint = type === "pbs" ? pbsKeyFingerprint(config["encryption-key"]) : undefined;
      keepSensitive(ctx, id, type, config);
      if (keyFingerprint !== undefined) config["encryption-key"] = keyFingerprint;
      // PBSPlugin.pm plugindata: content defaults to backup.
      if (type === "pbs") config.content ??= "backup";
      ctx.sim.state.addStorage(id, type, config, 1000);
      return { storage: id, type };
    },
    "GET /storage/{storage}": (ctx) => show(ctx, req(ctx, "storage")),
    "PUT /storage/{storage}": (ctx) => {
      const s = ctx.sim.state.storage(req(ctx, "storage"));
      checkDigest(ctx, digestOf(s.config));
      const values = storageValues(ctx, s.type);
      for (const k of STORAGE_FIXED[s.type] ?? []) {
        if (k in values) throw paramError({ [k]: "can't change value of fixed parameter" });
      }
      const keyFingerprint = s.type === "pbs" ? pbsKeyFingerprint(values["encryption-key"]) : undefined;
      keepSensitive(ctx, s.id, s.type, values, deleteList(ctx));
      for (const k of deleteList(ctx)) delete s.config[k];
      Object.assign(s.config, values);
      if (keyFingerprint !== undefined) s.config["encryption-key"] = keyFingerprint;
      return { storage: s.id, type: s.type };
    },
    "DELETE /storage/{storage}": (ctx) => {
      const id = req(ctx, "storage");
      ctx.sim.state.storage(id);
      ctx.sim.state.storages.delete(id);
      // PBSPlugin.pm on_delete_hook: pbs_delete_password and the keys.
      PRIV.get(ctx.sim.state)?.delete(id);
      return null;
    },
    "GET /nodes/{node}/storage": (ctx) => {
      nodeOf(ctx);
      const content = str(ctx, "content");
      return [...ctx.sim.state.storages.values()]
        .filter((s) => content === undefined || splitList(content).some((c) => ctx.sim.state.contentOf(s).includes(c)))
        .map((s) => {
          const used = ctx.sim.state.usedBytes(s);
          return { storage: s.id, type: s.type, content: s.config.content ?? "", active: 1, enabled: s.config.disable === "1" ? 0 : 1, shared: 0, total: s.total, used, avail: s.total - used, used_fraction: used / s.total };
        });
    },
    "GET /nodes/{node}/storage/{storage}/content": (ctx) => {
      nodeOf(ctx);
      return volumeList(ctx, req(ctx, "storage"));
    },
    "POST /nodes/{node}/storage/{storage}/content": (ctx) => {
      nodeOf(ctx);
      const storage = req(ctx, "storage");
      const vmid = Number(req(ctx, "vmid"));
      const size = req(ctx, "size");
      const gib = Number(/^(\d+)/.exec(size)?.[1] ?? 0) / ({ K: 1024 ** 2, M: 1024, G: 1 }[size.slice(-1)] ?? 1024 ** 2);
      return ctx.sim.state.allocDisk(storage, vmid, gib, "images").volid;
    },
    "GET /nodes/{node}/storage/{storage}/content/{volume}": (ctx) => {
      nodeOf(ctx);
      const volume = req(ctx, "volume");
      const v = ctx.sim.state.volume(volume.includes(":") ? volume : `${req(ctx, "storage")}:${volume}`);
      return { path: `/dev/null/${v.volid}`, size: v.size, used: v.size, format: v.format };
    },
    "DELETE /nodes/{node}/storage/{storage}/content/{volume}": (ctx) => {
      nodeOf(ctx);
      const volume = req(ctx, "volume");
      const volid = volume.includes(":") ? volume : `${req(ctx, "storage")}:${volume}`;
      const owner = ctx.sim.state.volume(volid).vmid;
      // pve-storage@9.1.7 src/PVE/API2/Storage/Content.pm delete: the worker's id is "<ownervm>@<storage>", or the storage.
      const storeid = volid.split(":")[0]!;
      return startTask(ctx, "imgdel", owner !== undefined ? `${owner}@${storeid}` : storeid, () => ctx.sim.state.freeVolume(volid));
    },
    "GET /nodes/{node}/aplinfo": (ctx) => {
      nodeOf(ctx);
      return ctx.sim.state.aplinfo;
    },
    "POST /nodes/{node}/aplinfo": (ctx) => {
      nodeOf(ctx);
      const template = req(ctx, "template");
      if (!ctx.sim.state.aplinfo.some((e) => e.template === template)) throw paramError({ template: "no such template" });
      return addFile(ctx, "download", req(ctx, "storage"), "vztmpl", template);
    },
    "POST /nodes/{node}/storage/{storage}/download-url": (ctx) => {
      nodeOf(ctx);
      if (str(ctx, "checksum") !== undefined && str(ctx, "checksum-algorithm") === undefined) {
        throw paramError({ "checksum-algorithm": "missing property - 'checksum' requires this property" });
      }
      return addFile(ctx, "download", req(ctx, "storage"), req(ctx, "content"), req(ctx, "filename"));
    },
    "GET /nodes/{node}/disks/list": (ctx) => ctx.sim.state.node(nodeOf(ctx)).disks.map((d) => ({ ...d, devpath: d.devpath, gpt: 1, health: "PASSED", wearout: 99 })),
    "GET /nodes/{node}/disks/zfs": (ctx) =>
      [...ctx.sim.state.node(nodeOf(ctx)).zfsPools.values()].map((p) => ({ name: p.name, size: p.size, alloc: 0, free: p.size, frag: 0, dedup: 1, health: "ONLINE" })),
    "GET /nodes/{node}/disks/zfs/{name}": (ctx) => {
      const p = ctx.sim.state.node(nodeOf(ctx)).zfsPools.get(req(ctx, "name"));
      if (!p) throw die(`zpool '${req(ctx, "name")}' does not exist`);
      return { name: p.name, state: "ONLINE", status: "", action: "", scan: "none requested", errors: "No known data errors", children: p.devices.map((name) => ({ name, state: "ONLINE", read: 0, write: 0, cksum: 0, msg: "" })) };
    },
    "POST /nodes/{node}/disks/zfs": (ctx) => {
      const node = ctx.sim.state.node(nodeOf(ctx));
      const name = req(ctx, "name");
      if (node.zfsPools.has(name)) throw die(`pool '${name}' already exists`);
      const devices = splitList(req(ctx, "devices"));
      for (const dev of devices) {
        const disk = node.disks.find((d) => d.devpath === dev);
        if (!disk) throw die(`unable to get device info for '${dev}'`);
        if (disk.used) throw die(`${dev} is already in use`);
      }
      return startTask(ctx, "zfscreate", name, () => {
        let size = 0;
        for (const dev of devices) {
          const disk = node.disks.find((d) => d.devpath === dev);
          if (disk) {
            disk.used = "ZFS";
            size += disk.size;
          }
        }
        node.zfsPools.set(name, { name, size, devices, raidlevel: req(ctx, "raidlevel") });
        if (flag(ctx, "add_storage")) ctx.sim.state.addStorage(name, "zfspool", { pool: name, content: "rootdir,images" }, size / 1024 ** 3);
      });
    },
  };
}

function pciHandlers(): Record<string, Handler> {
  const mappingOut = (m: { id: string; description?: string; map: string[]; mdev?: string; "live-migration-capable"?: string }) => ({
    id: m.id,
    map: m.map,
    ...(m.description !== undefined ? { description: m.description } : {}),
    ...(m.mdev !== undefined ? { mdev: Number(m.mdev) } : {}),
    ...(m["live-migration-capable"] !== undefined ? { "live-migration-capable": Number(m["live-migration-capable"]) } : {}),
    digest: digestOf(m),
  });
  const mapList = (ctx: HandlerCtx): string[] => {
    const v = ctx.params.map;
    return v === undefined ? [] : Array.isArray(v) ? v : [v];
  };
  const checkNodes = (map: string[]): void => {
    const nodes = map.map((m) => /(?:^|,)node=([^,]+)/.exec(m)?.[1]);
    const dup = nodes.find((n, i) => nodes.indexOf(n) !== i);
    if (dup) throw paramError({ map: `multiple entries for node '${dup}'` });
  };
  return {
    "GET /nodes/{node}/hardware/pci": (ctx) => {
      const node = ctx.sim.state.node(nodeOf(ctx));
      const blacklist = splitList(str(ctx, "pci-class-blacklist") ?? "05;06;0b");
      const verbose = flag(ctx, "verbose") ?? true;
      return node.pci
        .filter((d) => !blacklist.some((c) => d.class.slice(2).startsWith(c)))
        .map((d) =>
          verbose
            ? d
            : { id: d.id, class: d.class, vendor: d.vendor, device: d.device, iommugroup: d.iommugroup, subsystem_vendor: d.subsystem_vendor, subsystem_device: d.subsystem_device },
        );
    },
    "GET /cluster/mapping/pci": (ctx) => {
      const checkNode = str(ctx, "check-node");
      return [...ctx.sim.state.mappings.values()].map((m) => {
        const out: Record<string, unknown> = mappingOut(m);
        if (checkNode !== undefined) {
          const node = ctx.sim.state.nodes.get(checkNode);
          const checks: Array<{ severity: string; message: string }> = [];
          const entry = m.map.find((e) => e.includes(`node=${checkNode}`));
          if (!entry) checks.push({ severity: "warning", message: `No mapping for node ${checkNode}` });
          else {
            const path = /(?:^|,)path=([^,]+)/.exec(entry)?.[1] ?? "";
            const dev = node?.pci.find((d) => d.id === path || d.id.startsWith(`${path}.`));
            if (!dev) checks.push({ severity: "error", message: `Device ${path} does not exist` });
          }
          out.checks = checks;
        }
        return out;
      });
    },
    "POST /cluster/mapping/pci": (ctx) => {
      const id = req(ctx, "id");
      if (ctx.sim.state.mappings.has(id)) throw die(`pci ID '${id}' already defined`);
      const map = mapList(ctx);
      checkNodes(map);
      ctx.sim.state.mappings.set(id, {
        id,
        map,
        ...(str(ctx, "description") !== undefined ? { description: str(ctx, "description") } : {}),
        ...(str(ctx, "mdev") !== undefined ? { mdev: str(ctx, "mdev") } : {}),
        ...(str(ctx, "live-migration-capable") !== undefined ? { "live-migration-capable": str(ctx, "live-migration-capable") } : {}),
      });
      return null;
    },
    "GET /cluster/mapping/pci/{id}": (ctx) => {
      const m = ctx.sim.state.mappings.get(req(ctx, "id"));
      if (!m) throw die(`PCI mapping '${req(ctx, "id")}' not found`);
      return mappingOut(m);
    },
    "PUT /cluster/mapping/pci/{id}": (ctx) => {
      const m = ctx.sim.state.mappings.get(req(ctx, "id"));
      if (!m) throw die(`PCI mapping '${req(ctx, "id")}' not found`);
      checkDigest(ctx, digestOf(m));
      for (const k of deleteList(ctx)) {
        if (k === "description" || k === "mdev" || k === "live-migration-capable") delete m[k];
      }
      if (ctx.params.map !== undefined) {
        const map = mapList(ctx);
        checkNodes(map);
        m.map = map;
      }
      for (const k of ["description", "mdev", "live-migration-capable"] as const) {
        const v = str(ctx, k);
        if (v !== undefined) m[k] = v;
      }
      return null;
    },
    "DELETE /cluster/mapping/pci/{id}": (ctx) => {
      const id = req(ctx, "id");
      if (!ctx.sim.state.mappings.delete(id)) throw die(`PCI mapping '${id}' not found`);
      return null;
    },
  };
}

/** Handlers for cluster, tasks, storage, hardware, mapping and firewall endpoints, keyed by `METHOD template`. */
export function miscHandlers(): Record<string, Handler> {
  return { ...clusterHandlers(), ...taskHandlers(), ...storageHandlers(), ...pciHandlers(), ...firewallHandlers(), ...accessHandlers() };
}
