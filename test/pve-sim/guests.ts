import {
  checkDigest,
  deleteList,
  flag,
  isRoot,
  permError,
  req,
  startTask,
  str,
  typed,
  withStorageLock,
  type Handler,
  type HandlerCtx,
  type Sim,
} from "./core";
import type { ParamSchema } from "./schema";
import { digestOf, type Guest } from "./state";
import { die, paramError } from "./tasks";
import { parseWithSchema } from "./validate";
import { cloneTarget, refuseLocalClone } from "./clone-target";

export type Kind = "lxc" | "qemu";

export const LABEL: Record<Kind, string> = { lxc: "CT", qemu: "VM" };

/** Keys a guest config may hold: those `PUT …/config` accepts, minus its control parameters. */
export function configSchema(sim: Sim, kind: Kind): Record<string, ParamSchema> {
  const route = sim.schema.find("PUT", `/nodes/{node}/${kind}/{vmid}/config`);
  if (!route) throw new Error(`pve-sim: schema has no PUT /nodes/{node}/${kind}/{vmid}/config`);
  const out = { ...route.params };
  for (const k of ["node", "vmid", "delete", "revert", "digest", "skiplock", "force", "background_delay"]) delete out[k];
  return out;
}

function propertyKeys(schema: ParamSchema): Record<string, ParamSchema> | undefined {
  return typeof schema.format === "object" ? schema.format : undefined;
}

/** print_property_string: default key unkeyed first, then required keys sorted, then optional keys sorted. */
function printPropertyString(keys: Record<string, ParamSchema>, parsed: Record<string, string>, skip: string[] = []): string {
  const names = Object.keys(parsed).filter((k) => !skip.includes(k));
  const def = names.find((k) => keys[k]?.default_key);
  const required = names.filter((k) => k !== def && !keys[k]?.optional).sort();
  const optional = names.filter((k) => k !== def && keys[k]?.optional).sort();
  return [...(def !== undefined ? [parsed[def] as string] : []), ...[...required, ...optional].map((k) => `${k}=${parsed[k]}`)].join(",");
}

const NEW_DISK_LXC = /^([^:\s]+):(\d+(\.\d+)?)$/;
const NEW_DISK_QEMU = /^(?:([^/:\s]+):)?(\d+(\.\d+)?)$/;
const DISK_KEY: Record<Kind, RegExp> = {
  lxc: /^(rootfs|mp\d+)$/,
  qemu: /^(scsi|virtio|sata|ide)\d+$|^(efidisk0|tpmstate0)$/,
};

function diskField(kind: Kind): string {
  return kind === "lxc" ? "volume" : "file";
}

export function parseSize(size: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT])?$/.exec(size);
  if (!m) throw die(`unable to parse size '${size}'`);
  const f: Record<string, number> = { K: 1 / 1024 ** 2, M: 1 / 1024, G: 1, T: 1024 };
  return Number(m[1]) * (f[m[2] ?? "G"] ?? 1);
}

function formatSize(gib: number): string {
  return Number.isInteger(gib) ? `${gib}G` : `${Math.round(gib * 1024)}M`;
}

/** A QEMU drive's volume is cloud-init: `STORAGE:cloudinit` on create, then `vm-<vmid>-cloudinit[.fmt]`. */
const CLOUDINIT = /^([^/:\s]+):(?:\d+\/)?(?:vm-\d+-)?cloudinit(\.\w+)?$/;

/** The storage-backed volumes of a config (not bind mounts, not cdroms); with `cloudinit`, only QEMU's cloud-init drives. */
export function volumesOf(kind: Kind, config: Record<string, string>, sim: Sim, cloudinit = false): Array<{ key: string; volid: string }> {
  const out: Array<{ key: string; volid: string }> = [];
  const schema = configSchema(sim, kind);
  for (const [k, v] of Object.entries(config)) {
    if (!DISK_KEY[kind].test(k)) continue;
    const s = schema[k];
    if (!s) continue;
    const parsed = parseWithSchema(s, v, k);
    const volid = parsed[diskField(kind)];
    if (!volid || !/^[^/:\s]+:/.test(volid)) continue;
    const isCloudinit = kind === "qemu" && CLOUDINIT.test(volid);
    if (cloudinit ? isCloudinit : !isCloudinit && parsed.media !== "cdrom") out.push({ key: k, volid });
  }
  return out;
}

/**
 * pve-container@6.0.18 (963730e) src/PVE/LXC.pm check_ct_modify_config_perm, its `features`
 * branch, for a user other than root@pam: any `features` on a privileged container is refused,
 * whatever the value; otherwise the old and new flags are compared key by key as strings
 * (`$old_features->{$feature} // ''` against the new), so a key newly present, even as 0, is a
 * change, and a change of any key but `nesting` is refused. Without old features (a new
 * container, or none set), only `nesting` alone passes. Deleting `features` is judged on the
 * old flags the same way. `nesting` alone needs VM.Allocate, which the token has.
 */
function checkFeatures(schema: ParamSchema, unprivileged: boolean, old: string | undefined, next: string | undefined): void {
  if (!unprivileged) throw permError("changing feature flags for privileged container is only allowed for root@pam");
  const parse = (v: string | undefined) => (v ? parseWithSchema(schema, v, "features") : {});
  const onlyNesting = (f: Record<string, string>) => Object.keys(f).length === 0 || (Object.keys(f).length === 1 && "nesting" in f);
  let otherChanged: boolean;
  if (next === undefined) otherChanged = !onlyNesting(parse(old));
  else if (old) {
    const was = parse(old);
    const is = parse(next);
    otherChanged = [...Object.keys(was), ...Object.keys(is)].some((f) => f !== "nesting" && (was[f] ?? "") !== (is[f] ?? ""));
  } else otherChanged = !onlyNesting(parse(next));
  if (otherChanged) throw permError("changing feature flags (except nesting) is only allowed for root@pam");
}

/**
 * pve-container check_ct_modify_config_perm and qemu-server's hostpci check: the settings only
 * `root@pam` may make. Tokens are never `root@pam`. For a container, `unprivileged` is the
 * create call's (default 1) or the existing config's, `old` its config before the change and
 * `del` the keys the call deletes.
 */
function checkRootOnly(
  ctx: HandlerCtx,
  kind: Kind,
  values: Record<string, string>,
  schema: Record<string, ParamSchema>,
  ct: { unprivileged: boolean; old?: Record<string, string>; del?: readonly string[] } = { unprivileged: true },
): void {
  if (isRoot(ctx)) return;
  if (kind === "lxc") {
    if (ct.del?.some((k) => /^dev\d+$/.test(k))) throw permError("configuring device passthrough is only allowed for root@pam");
    if (ct.del?.includes("features")) checkFeatures(schema.features as ParamSchema, ct.unprivileged, ct.old?.features, undefined);
  }
  for (const [k, v] of Object.entries(values)) {
    if (kind === "lxc") {
      if (/^dev\d+$/.test(k)) throw permError("configuring device passthrough is only allowed for root@pam");
      if (/^mp\d+$/.test(k)) {
        const mp = parseWithSchema(schema[k] as ParamSchema, v, k);
        if (mp.volume?.startsWith("/")) {
          throw permError(`mount point type ${mp.volume.startsWith("/dev/") ? "device" : "bind"} is only allowed for root@pam`);
        }
      }
      if (k === "features") checkFeatures(schema[k] as ParamSchema, ct.unprivileged, ct.old?.features, v);
    }
    if (k === "hookscript") throw permError("changing the hookscript is only allowed for root@pam");
    if (kind === "qemu" && /^hostpci\d+$/.test(k)) {
      const dev = parseWithSchema(schema[k] as ParamSchema, v, k);
      if (dev.host !== undefined) throw die(`only root can set '${k}' config for real devices`);
    }
  }
}

export function checkLock(g: Guest, ctx: HandlerCtx): void {
  const lock = g.config.lock;
  if (lock === undefined) return;
  if (flag(ctx, "skiplock")) return;
  throw die(`${LABEL[g.kind]} is locked (${lock})`);
}

function checkSkiplock(ctx: HandlerCtx): void {
  if (str(ctx, "skiplock") !== undefined && !isRoot(ctx)) throw paramError({ skiplock: "Only root may use this option." });
}

/** Normalises a property-string value the way PVE writes it back (hwaddr, veth type, booleans, key order). */
function canonical(sim: Sim, kind: Kind, key: string, value: string): string {
  const schema = configSchema(sim, kind)[key];
  if (!schema) return value;
  const keys = propertyKeys(schema);
  if (!keys) return value;
  const parsed = parseWithSchema(schema, value, key);
  if (kind === "lxc" && /^net\d+$/.test(key)) {
    parsed.type ??= "veth";
    parsed.hwaddr ??= sim.state.newMac();
  }
  if (kind === "qemu" && /^net\d+$/.test(key)) {
    const mac = parsed.macaddr ?? sim.state.newMac();
    const model = parsed.model as string;
    const rest = printPropertyString(keys, parsed, ["model", "macaddr"]);
    return rest ? `${model}=${mac},${rest}` : `${model}=${mac}`;
  }
  return printPropertyString(keys, parsed);
}

/** Disk keys whose volume is `STORAGE:SIZE` (a new volume to allocate). */
function newDisks(kind: Kind, sim: Sim, values: Record<string, string>): Array<{ key: string; storage: string; gib: number }> {
  const out: Array<{ key: string; storage: string; gib: number }> = [];
  const schema = configSchema(sim, kind);
  for (const [k, v] of Object.entries(values)) {
    if (!DISK_KEY[kind].test(k)) continue;
    const parsed = parseWithSchema(schema[k] as ParamSchema, v, k);
    const vol = parsed[diskField(kind)] ?? "";
    const m = (kind === "lxc" ? NEW_DISK_LXC : NEW_DISK_QEMU).exec(vol);
    if (m) out.push({ key: k, storage: m[1] ?? "local", gib: Number(m[2]) });
  }
  return out;
}

function setVolume(sim: Sim, kind: Kind, g: Guest, key: string, volid: string, gib: number): void {
  const schema = configSchema(sim, kind)[key] as ParamSchema;
  const parsed = parseWithSchema(schema, g.config[key] ?? volid, key);
  parsed[diskField(kind)] = volid;
  parsed.size = formatSize(gib);
  // Import happens once, at allocation: PVE does not keep the option in the config.
  delete parsed["import-from"];
  g.config[key] = printPropertyString(propertyKeys(schema) ?? {}, parsed);
}

function applyConfig(sim: Sim, kind: Kind, g: Guest, values: Record<string, string>): void {
  for (const [k, v] of Object.entries(values)) g.config[k] = canonical(sim, kind, k, v);
}

function configValues(ctx: HandlerCtx, kind: Kind): Record<string, string> {
  const schema = configSchema(ctx.sim, kind);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.params)) {
    if (k in schema && k !== "node" && k !== "vmid" && v !== undefined) out[k] = Array.isArray(v) ? (v[0] ?? "") : v;
  }
  return out;
}

async function allocate(sim: Sim, kind: Kind, g: Guest, disks: Array<{ key: string; storage: string; gib: number }>, sleep: (ms: number) => Promise<void>, log: (l: string) => void): Promise<void> {
  for (const d of disks) {
    const vol = await withStorageLock(sim, d.storage, sleep, () =>
      sim.state.allocDisk(d.storage, g.vmid, d.gib, kind === "lxc" ? "rootdir" : "images"),
    );
    log(`allocated ${vol.volid} (${formatSize(d.gib)})`);
    setVolume(sim, kind, g, d.key, vol.volid, d.gib);
  }
  if (kind === "qemu") {
    for (const { key, volid } of volumesOf(kind, g.config, sim, true)) {
      const m = /^([^/:\s]+):cloudinit$/.exec(volid);
      if (!m) continue;
      const vol = await withStorageLock(sim, m[1] as string, sleep, () => sim.state.allocCloudinit(m[1] as string, g.vmid));
      log(`${key}: successfully created disk '${vol.volid},media=cdrom'`);
      setCloudinit(sim, g, key, vol.volid);
    }
  }
}

/** Points a cloud-init drive at its volume; PVE keeps no size on it. */
function setCloudinit(sim: Sim, g: Guest, key: string, volid: string): void {
  const schema = configSchema(sim, "qemu")[key] as ParamSchema;
  const parsed = parseWithSchema(schema, g.config[key] as string, key);
  parsed.file = volid;
  parsed.media = "cdrom";
  g.config[key] = printPropertyString(propertyKeys(schema) ?? {}, parsed);
}

function makeTemplate(sim: Sim, kind: Kind, g: Guest): void {
  for (const { key, volid } of volumesOf(kind, g.config, sim)) {
    const base = sim.state.convertToBase(volid);
    const schema = configSchema(sim, kind)[key] as ParamSchema;
    const parsed = parseWithSchema(schema, g.config[key] as string, key);
    parsed[diskField(kind)] = base;
    g.config[key] = printPropertyString(propertyKeys(schema) ?? {}, parsed);
  }
  g.config.template = "1";
}

export function removeGuest(sim: Sim, g: Guest): void {
  for (const { volid } of [...volumesOf(g.kind, g.config, sim), ...volumesOf(g.kind, g.config, sim, true)]) {
    if (sim.state.storages.get(volid.split(":")[0] ?? "")?.volumes.has(volid)) sim.state.freeVolume(volid);
  }
  sim.state.guests.delete(g.vmid);
  sim.state.guestFirewall.delete(g.vmid);
}

function ostypeOf(template: string): string {
  const name = template.split("/").pop() ?? "";
  const os = /^(debian|ubuntu|alpine|centos|fedora|archlinux|almalinux|rockylinux|opensuse|devuan|gentoo|nixos)/.exec(name);
  return os ? (os[1] as string) : "unmanaged";
}

function create(kind: Kind): Handler {
  return (ctx) => {
    const { sim } = ctx;
    const node = req(ctx, "node");
    sim.state.node(node);
    const vmid = Number(req(ctx, "vmid"));
    const existing = sim.state.guests.get(vmid);
    if (existing) throw die(`${LABEL[existing.kind]} ${vmid} already exists on node '${existing.node}'`);
    const schema = configSchema(sim, kind);
    const values = configValues(ctx, kind);
    // pve-container@6.0.18 src/PVE/API2/LXC.pm create_vm: `$unprivileged = 1 if !defined($unprivileged)` (no restore).
    // A restore checks only what the call gives (pve-container create_vm runs check_ct_modify_config_perm on
    // the call's parameters; the backup's are merged later by sanitize_and_merge_config).
    const own = Object.fromEntries(Object.entries(values).filter(([k]) => !ctx.inherited?.has(k)));
    checkRootOnly(ctx, kind, own, schema, { unprivileged: values.unprivileged === undefined || values.unprivileged === "1" });
    if (kind === "lxc") {
      const ostemplate = req(ctx, "ostemplate");
      const vol = sim.state.volume(ostemplate);
      if (vol.content !== "vztmpl" && vol.content !== "backup") throw die(`volume '${ostemplate}' is not a container template`);
      values.rootfs ??= `${str(ctx, "storage") ?? "local"}:4`;
      values.unprivileged ??= "1";
      values.arch ??= "amd64";
      values.ostype ??= ostypeOf(ostemplate);
      values.hostname ??= `CT${vmid}`;
      // pve-container@6.0.18 src/PVE/API2/LXC.pm create_vm $check_and_activate_storage: every
      // volume's storage (and the default `storage`) must allow container directories, a 400.
      for (const sid of new Set([...newDisks(kind, sim, values).map((d) => d.storage), ...volumesOf(kind, values, sim).map((v) => v.volid.split(":")[0] as string)])) {
        if (!sim.state.contentOf(sim.state.storage(sid)).includes("rootdir")) {
          throw paramError({ storage: `storage '${sid}' does not support container directories` });
        }
      }
    }
    for (const [k, v] of Object.entries(values)) {
      if (DISK_KEY[kind].test(k)) {
        // A disk imported at creation must come from a volume that exists (qm's import-from).
        const from = parseWithSchema(schema[k] as ParamSchema, v, k)["import-from"];
        if (from !== undefined) sim.state.volume(from);
        continue;
      }
      if (/^hostpci\d+$/.test(k)) checkMapping(sim, parseWithSchema(schema[k] as ParamSchema, v, k));
    }
    const disks = newDisks(kind, sim, values);
    const template = values.template === "1";
    delete values.template;
    const g: Guest = { kind, vmid, node, config: {}, status: "stopped", snapshots: new Map() };
    applyConfig(sim, kind, g, values);
    g.config.lock = "create";
    sim.state.guests.set(vmid, g);
    let ok = false;
    // A restore (snapshots.ts) is this create with the backup's configuration merged in: its worker is
    // `vzrestore` (pve-container src/PVE/API2/LXC.pm create_vm) or `qmrestore` (qemu-server src/PVE/API2/Qemu.pm).
    const restoring = kind === "lxc" ? flag(ctx, "restore") === true : str(ctx, "archive") !== undefined;
    return startTask(
      ctx,
      `${kind === "lxc" ? "vz" : "qm"}${restoring ? "restore" : "create"}`,
      String(vmid),
      async ({ log, sleep }) => {
        await allocate(sim, kind, g, disks, sleep, log);
        if (kind === "lxc") log(`extracting archive '${str(ctx, "ostemplate")}'`);
        if (template) makeTemplate(sim, kind, g);
        ok = true;
      },
      () => {
        if (!ok) {
          removeGuest(sim, g);
          return;
        }
        delete g.config.lock;
        if (flag(ctx, "start") && !template) g.status = "running";
      },
    );
  };
}

function checkMapping(sim: Sim, dev: Record<string, string>): void {
  if (dev.mapping !== undefined && !sim.state.mappings.has(dev.mapping)) {
    throw die(`PCI mapping '${dev.mapping}' does not exist`);
  }
}

export function guestOf(ctx: HandlerCtx, kind: Kind): Guest {
  const node = req(ctx, "node");
  ctx.sim.state.node(node);
  return ctx.sim.state.guest(node, kind, Number(req(ctx, "vmid")));
}

function getConfig(kind: Kind): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    const snap = str(ctx, "snapshot");
    const config = snap ? g.snapshots.get(snap)?.config : g.config;
    if (!config) throw die(`snapshot '${snap}' does not exist`);
    return { ...typed(config, configSchema(ctx.sim, kind)), digest: digestOf(config) };
  };
}

function putConfig(kind: Kind, async: boolean): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    checkSkiplock(ctx);
    checkLock(g, ctx);
    checkDigest(ctx, digestOf(g.config));
    const schema = configSchema(ctx.sim, kind);
    const values = configValues(ctx, kind);
    const del = deleteList(ctx);
    // pve-container@6.0.18 src/PVE/API2/LXC/Config.pm update_vm: the deleted keys are checked first, then the new values, against the stored config.
    checkRootOnly(ctx, kind, values, schema, { unprivileged: g.config.unprivileged === "1", old: g.config, del });
    for (const [k, v] of Object.entries(values)) {
      if (/^hostpci\d+$/.test(k)) checkMapping(ctx.sim, parseWithSchema(schema[k] as ParamSchema, v, k));
    }
    if (kind === "lxc") {
      // pve-container@6.0.18 src/PVE/LXC/Config.pm update_pct_config: `unprivileged` is
      // read-only, whatever the value (deleting it when unset only warns); a new mount point's
      // storage must allow container directories.
      if (del.includes("unprivileged") && g.config.unprivileged !== undefined) throw die("unable to delete read-only option: 'unprivileged'");
      if ("unprivileged" in values) throw die("unable to modify read-only option: 'unprivileged'");
      for (const d of newDisks(kind, ctx.sim, values)) {
        if (!ctx.sim.state.contentOf(ctx.sim.state.storage(d.storage)).includes("rootdir")) {
          throw die(`storage '${d.storage}' does not allow content type 'rootdir' (Container)`);
        }
      }
    }
    const overlap = del.find((k) => k in values);
    if (overlap) throw paramError({ delete: `cannot set and delete '${overlap}' at the same time` });
    for (const k of del) {
      if (!(k in schema)) throw paramError({ delete: `invalid configuration ID '${k}'` });
      delete g.config[k];
    }
    const disks = newDisks(kind, ctx.sim, values);
    applyConfig(ctx.sim, kind, g, values);
    for (const d of disks) {
      const vol = ctx.sim.state.allocDisk(d.storage, g.vmid, d.gib, kind === "lxc" ? "rootdir" : "images");
      setVolume(ctx.sim, kind, g, d.key, vol.volid, d.gib);
    }
    if (values.template === "1") makeTemplate(ctx.sim, kind, g);
    return async ? startTask(ctx, "qmconfig", String(g.vmid), () => undefined) : null;
  };
}

/**
 * pve-storage@9.1.0 src/PVE/Storage/ZFSPoolPlugin.pm and Plugin.pm volume_has_feature('clone'):
 * only a base volume can be linked-cloned; on a directory storage the clone is a qcow2, which a
 * container cannot use (pve-container passes valid_target_formats raw/subvol).
 */
function canLinkClone(sim: Sim, kind: Kind, volid: string): boolean {
  const storage = sim.state.storage(volid.split(":")[0] ?? "");
  // RBDPlugin.pm volume_has_feature (pve-storage HEAD :955-975): clone => { base => 1, snap => 1 } too.
  if (kind === "lxc" && storage.type !== "zfspool" && storage.type !== "rbd") return false;
  return /(^|[:/])base(vol)?-\d+-disk-\d+(\.\w+)?$/.test(volid);
}

/**
 * pve-container@6.0.18 src/PVE/API2/LXC.pm clone_vm and qemu-server@9.1.2 src/PVE/API2/Qemu.pm
 * clone_vm. Up front: a `storage` must hold the new disks (QEMU: a 400 without `images`), is
 * refused for linked clones ("parameter 'storage' not allowed for linked clones", a 500), and
 * every disk of a linked clone must support it ("Linked clone feature …"). The clone gets the
 * source's firewall file (pve-firewall@6.0.4 src/PVE/Firewall/Helpers.pm clone_vmfw_conf) and,
 * for a VM, a copy of its cloud-init drive named `vm-<newid>-cloudinit` (QemuServer.pm clone_disk).
 */
function clone(kind: Kind): Handler {
  return (ctx) => {
    const { sim } = ctx;
    const src = guestOf(ctx, kind);
    const newid = Number(req(ctx, "newid"));
    const storage = str(ctx, "storage");
    const target = cloneTarget(ctx, kind, storage);
    checkLock(src, ctx);
    const existing = sim.state.guests.get(newid);
    // pve-container: create_and_lock_config right after the source's lock, whose
    // check_vmid_unused sees every node (pve-cluster 7091d92 src/PVE/Cluster.pm:785-797).
    if (kind === "lxc" && existing) throw die(`${LABEL[existing.kind]} ${newid} already exists on node '${existing.node}'`);
    const full = flag(ctx, "full") ?? src.config.template !== "1";
    if (storage !== undefined && !full) throw die("parameter 'storage' not allowed for linked clones");
    if (kind === "qemu") refuseLocalClone(sim, kind, src.config, storage, target);
    // qemu-server e6352be6 Qemu.pm:4502-4503: only this node's config file is looked for up front.
    if (kind === "qemu" && existing?.kind === "qemu" && existing.node === src.node) throw die(`unable to create VM ${newid}: config file already exists`);
    const disks = volumesOf(kind, src.config, sim);
    if (!full) {
      for (const { key, volid } of disks) {
        if (!canLinkClone(sim, kind, volid)) {
          throw die(kind === "lxc" ? `Linked clone feature for '${volid}' is not available` : `Linked clone feature is not supported for '${volid}' (${key})`);
        }
      }
    }
    if (kind === "lxc") refuseLocalClone(sim, kind, src.config, storage, target);
    if (existing) {
      // A VM id taken elsewhere (another node, or a CT): the worker writes the new config with
      // file_set_contents (pve-common f665029 src/PVE/File.pm:49-101, a temp file renamed into
      // place, outside the clone's eval: no cleanup, no "clone failed:"), and pmxcfs refuses the
      // rename with EEXIST (pve-cluster 7091d92 src/pmxcfs/memdb.c:1095-1104 memdb_rename,
      // status.c:656 vmlist_different_vm_exists).
      return startTask(ctx, "qmclone", String(src.vmid), ({ log }) => {
        log(`creating a clone of VM ${src.vmid} with ID ${newid}`);
        throw die(`close (rename) atomic file '/etc/pve/nodes/${src.node}/qemu-server/${newid}.conf' failed: File exists`);
      });
    }
    // pve-container takes the source's `disk` lock before forking and holds it for the whole
    // clone; qemu-server only takes a shared flock inside the worker.
    if (kind === "lxc") src.config.lock = "disk";
    const config: Record<string, string> = {};
    for (const [k, v] of Object.entries(src.config)) {
      if (k === "lock" || k === "template" || k === "digest") continue;
      config[k] = v;
    }
    const name = str(ctx, kind === "lxc" ? "hostname" : "name");
    if (name !== undefined) config[kind === "lxc" ? "hostname" : "name"] = name;
    const description = str(ctx, "description");
    if (description !== undefined) config.description = description;
    for (const k of Object.keys(config)) {
      if (/^net\d+$/.test(k)) {
        const schema = configSchema(sim, kind)[k] as ParamSchema;
        const parsed = parseWithSchema(schema, config[k] as string, k);
        delete parsed[kind === "lxc" ? "hwaddr" : "macaddr"];
        if (kind === "qemu") delete parsed[parsed.model as string];
        config[k] = printPropertyString(propertyKeys(schema) ?? {}, parsed);
      }
    }
    const g: Guest = { kind, vmid: newid, node: src.node, config: {}, status: "stopped", snapshots: new Map() };
    for (const [k, v] of Object.entries(config)) g.config[k] = DISK_KEY[kind].test(k) ? v : canonical(sim, kind, k, v);
    g.config.lock = kind === "lxc" ? "create" : "clone";
    sim.state.guests.set(newid, g);
    const srcFw = sim.state.guestFirewall.get(src.vmid);
    if (srcFw) sim.state.guestFirewall.set(newid, structuredClone(srcFw));
    else sim.state.guestFirewall.delete(newid);
    let ok = false;
    return startTask(
      ctx,
      kind === "lxc" ? "vzclone" : "qmclone",
      String(src.vmid),
      async ({ log, sleep }) => {
        for (const { key, volid } of disks) {
          const base = sim.state.volume(volid);
          const gib = base.size / 1024 ** 3;
          const target = storage ?? base.storage;
          const vol = await withStorageLock(sim, target, sleep, () =>
            full ? sim.state.allocDisk(target, newid, gib, kind === "lxc" ? "rootdir" : "images") : sim.state.linkClone(volid, newid),
          );
          log(`create ${full ? "full" : "linked"} clone of drive ${key} (${volid})`);
          setVolume(sim, kind, g, key, vol.volid, gib);
        }
        for (const { key, volid } of volumesOf(kind, src.config, sim, true)) {
          const target = storage ?? (volid.split(":")[0] as string);
          log(`create full clone of drive ${key} (${volid})`);
          const vol = await withStorageLock(sim, target, sleep, () => sim.state.allocCloudinit(target, newid));
          setCloudinit(sim, g, key, vol.volid);
        }
        ok = true;
      },
      () => {
        if (kind === "lxc") delete src.config.lock;
        if (ok) delete g.config.lock;
        else removeGuest(sim, g);
        // Made on the source's node, then its config moved to the target (LXC.pm:2240-2248, Qemu.pm:4693-4707).
        if (ok && target !== undefined) g.node = target;
      },
    );
  };
}

function template(kind: Kind): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    // pve-container@6.0.18 src/PVE/API2/LXC.pm and qemu-server@9.1.2 src/PVE/API2/Qemu.pm
    // `template`: these checks, in this order, before the worker.
    checkLock(g, ctx);
    if (g.snapshots.size > 0) throw die(`unable to create template, because ${LABEL[kind]} contains snapshots`);
    if (g.config.template === "1") throw die("you can't convert a template to a template");
    if (g.status === "running") {
      throw die(kind === "lxc" ? "you can't convert a CT to template if the CT is running" : "you can't convert a VM to template if VM is running");
    }
    const upid = startTask(ctx, kind === "lxc" ? "vztemplate" : "qmtemplate", String(g.vmid), () => makeTemplate(ctx.sim, kind, g));
    // pve-container forks the `vztemplate` worker yet declares `returns: null` and returns undef;
    // qemu-server returns the `qmtemplate` UPID.
    return kind === "lxc" ? null : upid;
  };
}

/**
 * Start, stop, shutdown and reboot, with each check where PVE makes it: before the worker (the
 * call fails) or inside it (the call returns a UPID and the task fails).
 *
 * pve-container@6.0.18 src/PVE/API2/LXC/Status.pm: start refuses a running CT up front; its
 * worker refuses a template ("you can't start a CT if it's a template") and a lock (unless
 * `skiplock` or the lock is `mounted`). stop and shutdown refuse a stopped CT up front; the
 * worker checks the lock (stop honours `skiplock`/`mounted`, shutdown does not). reboot refuses
 * a stopped CT up front with "VM <vmid> not running".
 * qemu-server@9.1.2 src/PVE/QemuServer.pm vm_start / _do_vm_stop: every check runs in the
 * worker: a template, the lock (unless `skiplock` or `suspended`), "VM <vmid> already running";
 * stopping a VM that is not running does nothing. src/PVE/API2/Qemu.pm vm_reboot refuses a
 * stopped VM up front.
 */
function statusChange(kind: Kind, action: "start" | "stop" | "shutdown" | "reboot" | "suspend" | "resume"): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    checkSkiplock(ctx);
    const label = `${LABEL[kind]} ${g.vmid}`;
    const lockedFor = (exempt?: string): void => {
      if (g.config.lock !== undefined && g.config.lock !== exempt) checkLock(g, ctx);
    };
    let inTask: () => boolean = () => true;
    if (action === "start") {
      if (kind === "lxc" && g.status === "running") throw die(`${label} already running`);
      inTask = () => {
        if (g.config.template === "1") throw die(kind === "lxc" ? "you can't start a CT if it's a template" : "you can't start a vm if it's a template");
        lockedFor(kind === "lxc" ? "mounted" : "suspended");
        if (g.status === "running") throw die(`${label} already running`);
        return true;
      };
    } else if (action === "stop" || action === "shutdown") {
      if (kind === "lxc" && g.status !== "running") throw die(`${label} not running`);
      inTask = () => {
        if (g.status !== "running") return false;
        if (kind === "lxc" && action === "shutdown") checkLock(g, ctx);
        else lockedFor(kind === "lxc" ? "mounted" : undefined);
        return true;
      };
    } else if (action === "reboot") {
      if (g.status !== "running") throw die(`VM ${g.vmid} not running`);
    } else {
      // suspend/resume: unverified against upstream, Phoenix does not use them.
      if (g.status !== "running") throw die(`${label} not running`);
      checkLock(g, ctx);
    }
    const prefix = kind === "lxc" ? "vz" : "qm";
    return startTask(ctx, `${prefix}${action}`, String(g.vmid), () => {
      if (!inTask()) return;
      if (action === "start" && kind === "qemu") {
        for (const [k, v] of Object.entries(g.config)) {
          if (/^hostpci\d+$/.test(k) && /(^|,)pcie=1/.test(v) && !/q35/.test(g.config.machine ?? "")) {
            throw die("q35 machine model is not enabled");
          }
        }
      }
      if (action === "start" || action === "reboot" || action === "resume") {
        g.status = "running";
        g.startedAt = ctx.sim.state.now();
      } else {
        g.status = "stopped";
        delete g.startedAt;
      }
    });
  };
}

function currentStatus(kind: Kind): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    const uptime = g.startedAt === undefined ? 0 : Math.floor((ctx.sim.state.now() - g.startedAt) / 1000);
    return {
      vmid: g.vmid,
      status: g.status,
      name: g.config.hostname ?? g.config.name ?? `${LABEL[kind]}${g.vmid}`,
      cpus: Number(g.config.cores ?? 1),
      maxmem: Number(g.config.memory ?? 512) * 1024 * 1024,
      uptime,
      type: kind,
      ha: { managed: 0 },
      ...(g.config.lock !== undefined ? { lock: g.config.lock } : {}),
      ...(g.config.template === "1" ? { template: 1 } : {}),
      ...(kind === "qemu" ? { qmpstatus: g.status, agent: g.config.agent?.startsWith("1") ? 1 : 0 } : {}),
    };
  };
}

function destroy(kind: Kind): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    checkSkiplock(ctx);
    checkLock(g, ctx);
    if (g.status === "running") {
      throw die(kind === "lxc" ? `unable to destroy CT ${g.vmid} - container is running` : `VM ${g.vmid} is running - destroy failed`);
    }
    g.config.lock = "destroyed";
    return startTask(ctx, kind === "lxc" ? "vzdestroy" : "qmdestroy", String(g.vmid), () => removeGuest(ctx.sim, g), () => {
      if (ctx.sim.state.guests.get(g.vmid) === g) delete g.config.lock;
    });
  };
}

/**
 * pve-container@6.0.18 src/PVE/API2/LXC.pm resize_vm: lock, digest and size are checked before
 * the worker ("unable to shrink disk size", "disk is already at specified size") and again in it.
 * qemu-server@9.1.2 src/PVE/API2/Qemu.pm resize_vm: all checks run in the worker; a smaller size
 * fails it ("shrinking disks is not supported"), the same size is a no-op.
 */
function resize(kind: Kind): Handler {
  return (ctx) => {
    const g = guestOf(ctx, kind);
    checkSkiplock(ctx);
    const disk = req(ctx, "disk");
    const sizeArg = req(ctx, "size");
    const check = (): { volid: string; target: number } | undefined => {
      if (kind === "qemu") {
        const given = str(ctx, "digest");
        if (given && given !== digestOf(g.config)) throw die("checksum mismatch (file change by other user?)");
      }
      checkLock(g, ctx);
      if (kind === "lxc") checkDigest(ctx, digestOf(g.config));
      const value = g.config[disk];
      if (value === undefined) throw die(kind === "lxc" ? `unable to parse volume ID '${disk}'` : `disk '${disk}' does not exist`);
      const parsed = parseWithSchema(configSchema(ctx.sim, kind)[disk] as ParamSchema, value, disk);
      const volid = parsed[diskField(kind)] as string;
      const current = parseSize(parsed.size ?? "0");
      const target = sizeArg.startsWith("+") ? current + parseSize(sizeArg.slice(1)) : parseSize(sizeArg);
      if (target < current) throw die(kind === "lxc" ? "unable to shrink disk size" : "shrinking disks is not supported");
      if (target === current) {
        if (kind === "lxc") throw die("disk is already at specified size");
        return undefined;
      }
      return { volid, target };
    };
    if (kind === "lxc") check();
    return startTask(ctx, "resize", String(g.vmid), () => {
      const r = check();
      if (!r) return;
      ctx.sim.state.volume(r.volid).size = Math.round(r.target * 1024 ** 3);
      setVolume(ctx.sim, kind, g, disk, r.volid, r.target);
    });
  };
}

function list(kind: Kind): Handler {
  return (ctx) => {
    const node = req(ctx, "node");
    ctx.sim.state.node(node);
    return [...ctx.sim.state.guests.values()]
      .filter((g) => g.kind === kind && g.node === node)
      .map((g) => ({
        vmid: g.vmid,
        name: g.config.hostname ?? g.config.name,
        status: g.status,
        type: kind,
        maxmem: Number(g.config.memory ?? 512) * 1024 * 1024,
        cpus: Number(g.config.cores ?? 1),
        ...(g.config.lock !== undefined ? { lock: g.config.lock } : {}),
        ...(g.config.template === "1" ? { template: 1 } : {}),
        ...(g.config.tags !== undefined ? { tags: g.config.tags } : {}),
      }));
  };
}

function interfaces(ctx: HandlerCtx): unknown {
  const g = guestOf(ctx, "lxc");
  if (g.status !== "running") throw die(`CT ${g.vmid} not running`);
  const schema = configSchema(ctx.sim, "lxc");
  const out: Array<Record<string, string>> = [{ name: "lo", hwaddr: "00:00:00:00:00:00", inet: "127.0.0.1/8", inet6: "::1/128" }];
  for (const [k, v] of Object.entries(g.config)) {
    if (!/^net\d+$/.test(k)) continue;
    const n = parseWithSchema(schema[k] as ParamSchema, v, k);
    out.push({ name: n.name ?? k, hwaddr: n.hwaddr ?? "", ...(n.ip && n.ip.includes("/") ? { inet: n.ip } : {}) });
  }
  return out;
}

/** Handlers of the container and VM endpoints Phoenix uses, keyed by `METHOD template`. */
export function guestHandlers(): Record<string, Handler> {
  const out: Record<string, Handler> = {};
  for (const kind of ["lxc", "qemu"] as const) {
    const b = `/nodes/{node}/${kind}`;
    Object.assign(out, {
      [`GET ${b}`]: list(kind),
      [`POST ${b}`]: create(kind),
      [`GET ${b}/{vmid}/config`]: getConfig(kind),
      [`PUT ${b}/{vmid}/config`]: putConfig(kind, false),
      [`POST ${b}/{vmid}/clone`]: clone(kind),
      [`POST ${b}/{vmid}/template`]: template(kind),
      [`GET ${b}/{vmid}/status/current`]: currentStatus(kind),
      [`PUT ${b}/{vmid}/resize`]: resize(kind),
      [`DELETE ${b}/{vmid}`]: destroy(kind),
    });
    for (const action of ["start", "stop", "shutdown", "reboot", "suspend", "resume"] as const) {
      out[`POST ${b}/{vmid}/status/${action}`] = statusChange(kind, action);
    }
  }
  out["POST /nodes/{node}/qemu/{vmid}/config"] = putConfig("qemu", true);
  out["GET /nodes/{node}/lxc/{vmid}/interfaces"] = interfaces;
  return out;
}
