/**
 * Guest snapshots, rollback, vzdump backups and restore, with the locks PVE holds while they run.
 *
 * Sources (PVE 9): pve-container@6.0.18 (963730e) src/PVE/API2/LXC/Snapshot.pm, src/PVE/LXC/Config.pm,
 * src/PVE/API2/LXC.pm create_vm, src/PVE/LXC/Create.pm, src/PVE/VZDump/LXC.pm; qemu-server@9.1.2
 * (4dbb6e44) src/PVE/API2/Qemu.pm, src/PVE/VZDump/QemuServer.pm; pve-guest-common@6.0.2 (7353101)
 * src/PVE/AbstractConfig.pm; pve-manager@9.1.3 (5829c814) PVE/API2/VZDump.pm, PVE/VZDump.pm;
 * pve-storage@9.1.0 (6f49432) src/PVE/Storage.pm, Plugin.pm, ZFSPoolPlugin.pm.
 */
import { flag, req, startTask, str, typed, type Handler, type Sim } from "./core";
import { checkLock, configSchema, guestOf, LABEL, parseSize, volumesOf, type Kind } from "./guests";
import { digestOf, type Guest, type Snapshot } from "./state";
import { die, paramError } from "./tasks";
import { parseWithSchema } from "./validate";

/** A worker step that holds its lock for a while, so that the lock can be seen from outside. */
const hold = (sim: Sim, sleep: (ms: number) => Promise<void>) => sleep(sim.timing.allocationMs);

/**
 * AbstractConfig check_lock, inside a worker: `CT is locked (backup)` / `VM is locked (…)`
 * (guest_type() is "CT" or "VM", with no vmid).
 */
function assertUnlocked(g: Guest): void {
  if (g.config.lock !== undefined) throw die(`${LABEL[g.kind]} is locked (${g.config.lock})`);
}

/**
 * The mount points / drives whose volume cannot be snapshotted: LXC::Config has_feature('snapshot')
 * asks PVE::Storage::volume_has_feature for every volume of foreach_volume (rootfs and mpN, bind and
 * device mounts included: for a path it returns undef, so any bind mount makes the feature
 * unavailable). With `backupOnly` (the `vzdump` snapshot) only rootfs and volume mount points with
 * backup=1 count (mountpoint_backup_enabled). Storage: ZFSPoolPlugin.pm `snapshot => { current => 1 }`;
 * Plugin.pm (dir) only for qcow2. QEMU: cdrom drives (cloud-init included) are skipped.
 */
export function snapshotBlockers(sim: Sim, g: Guest, backupOnly = false): string[] {
  const out: string[] = [];
  const schema = configSchema(sim, g.kind);
  for (const [key, value] of Object.entries(g.config)) {
    if (g.kind === "lxc" ? !/^(rootfs|mp\d+)$/.test(key) : !/^(scsi|virtio|sata|ide)\d+$|^(efidisk0|tpmstate0)$/.test(key)) continue;
    const parsed = parseWithSchema(schema[key]!, value, key);
    if (g.kind === "qemu" && (parsed.media === "cdrom" || /cloudinit/.test(parsed.file ?? ""))) continue;
    const volid = parsed[g.kind === "lxc" ? "volume" : "file"] ?? "";
    const isVolume = /^[^/:\s]+:/.test(volid);
    if (backupOnly && key !== "rootfs" && !(isVolume && parsed.backup === "1")) continue;
    if (!isVolume) {
      out.push(`${key} (${volid.startsWith("/dev/") ? "device" : "bind"} mount ${volid})`);
      continue;
    }
    const storage = sim.state.storages.get(volid.split(":")[0]!);
    const vol = storage?.volumes.get(volid);
    // pve-storage 9.1.7 volume_has_feature snapshot: ZFSPoolPlugin.pm:813, RBDPlugin.pm:959, LvmThinPlugin.pm:412; dir-like only for qcow2.
    if (["zfspool", "rbd", "lvmthin"].includes(storage?.type ?? "") || vol?.format === "qcow2") continue;
    out.push(`${key} (${volid} on ${storage?.type ?? "unknown"} storage)`);
  }
  return out;
}

function snapshotOf(g: Guest, name: string): Snapshot {
  const snap = g.snapshots.get(name);
  if (!snap) throw die(`snapshot '${name}' does not exist`);
  return snap;
}

/** The snapshot names PVE reserves: LXC dies before its worker; QEMU's snapshot_create does the same check. */
function checkReserved(name: string): void {
  for (const reserved of ["current", "vzdump"]) {
    if (name === reserved) throw die(`unable to use snapshot name '${reserved}' (reserved name)`);
  }
}

/**
 * AbstractConfig __snapshot_prepare + snapshot_create + __snapshot_commit, all inside the worker
 * (`vzsnapshot`/`qmsnapshot`): template refused, check_lock, lock `snapshot`, name already used,
 * has_feature('snapshot'), the snapshot gets the config, `snaptime` and `parent`; the commit drops the
 * lock and makes the new snapshot the config's `parent`. On failure the lock goes too.
 */
function takeSnapshot(sim: Sim, g: Guest, name: string, description: string | undefined, sleep: (ms: number) => Promise<void>): Promise<void> {
  if (g.config.template === "1") throw die("you can't take a snapshot if it's a template");
  assertUnlocked(g);
  g.config.lock = "snapshot";
  const run = async () => {
    if (g.snapshots.has(name)) throw die(`snapshot name '${name}' already used`);
    if (snapshotBlockers(sim, g, name === "vzdump").length > 0) throw die("snapshot feature is not available");
    const config = { ...g.config };
    delete config.lock;
    await hold(sim, sleep);
    g.snapshots.set(name, { name, description: description ?? "", snaptime: Math.floor(sim.state.now() / 1000), ...(g.parent ? { parent: g.parent } : {}), config });
    g.parent = name;
    sim.state.volumeEvents.push({ kind: "snapshot", vmid: g.vmid, snapname: name });
  };
  return run().finally(() => {
    if (g.config.lock === "snapshot") delete g.config.lock;
  });
}

/** AbstractConfig snapshot_delete: lock `snapshot-delete` (set_lock checks for another lock first); parent links are re-pointed. */
async function deleteSnapshot(sim: Sim, g: Guest, name: string, sleep: (ms: number) => Promise<void>): Promise<void> {
  const snap = snapshotOf(g, name);
  assertUnlocked(g);
  g.config.lock = "snapshot-delete";
  try {
    if (g.config.template === "1") throw die("you can't delete a snapshot if vm is a template");
    await hold(sim, sleep);
    if (g.parent === name) g.parent = snap.parent;
    for (const other of g.snapshots.values()) if (other.parent === name) other.parent = snap.parent;
    g.snapshots.delete(name);
    sim.state.volumeEvents.push({ kind: "delsnapshot", vmid: g.vmid, snapname: name });
  } finally {
    delete g.config.lock;
  }
}

function snapshotHandlersOf(kind: Kind): Record<string, Handler> {
  const base = `/nodes/{node}/${kind}/{vmid}/snapshot`;
  const prefix = kind === "lxc" ? "vz" : "qm";
  return {
    // Snapshot.pm `list`: every snapshot, then `current` with its parent and whether it runs.
    [`GET ${base}`]: (ctx) => {
      const g = guestOf(ctx, kind);
      const list: Array<Record<string, unknown>> = [...g.snapshots.values()].map((s) => ({
        name: s.name,
        description: s.description,
        snaptime: s.snaptime,
        ...(s.parent ? { parent: s.parent } : {}),
      }));
      list.push({ name: "current", description: "You are here!", digest: digestOf(g.config), running: g.status === "running" ? 1 : 0, ...(g.parent ? { parent: g.parent } : {}) });
      return list;
    },
    [`POST ${base}`]: (ctx) => {
      const g = guestOf(ctx, kind);
      const name = req(ctx, "snapname");
      checkReserved(name);
      return startTask(ctx, `${prefix}snapshot`, String(g.vmid), ({ sleep }) => takeSnapshot(ctx.sim, g, name, str(ctx, "description"), sleep));
    },
    [`GET ${base}/{snapname}`]: (ctx) => {
      snapshotOf(guestOf(ctx, kind), req(ctx, "snapname"));
      return [{ cmd: "rollback" }, { cmd: "config" }];
    },
    [`DELETE ${base}/{snapname}`]: (ctx) => {
      const g = guestOf(ctx, kind);
      const name = req(ctx, "snapname");
      return startTask(ctx, `${prefix}delsnapshot`, String(g.vmid), ({ sleep }) => deleteSnapshot(ctx.sim, g, name, sleep));
    },
    // Snapshot.pm get_snapshot_config: the snapshot's hash (its config, snaptime, description, parent).
    [`GET ${base}/{snapname}/config`]: (ctx) => {
      const snap = snapshotOf(guestOf(ctx, kind), req(ctx, "snapname"));
      return { ...typed(snap.config, configSchema(ctx.sim, kind)), snaptime: snap.snaptime, ...(snap.description ? { description: snap.description } : {}), ...(snap.parent ? { parent: snap.parent } : {}) };
    },
    // update_snapshot_config: only the description; check_lock first.
    [`PUT ${base}/{snapname}/config`]: (ctx) => {
      const g = guestOf(ctx, kind);
      const description = str(ctx, "description");
      if (description === undefined) return null;
      checkLock(g, ctx);
      snapshotOf(g, req(ctx, "snapname")).description = description;
      return null;
    },
    /**
     * Snapshot.pm `rollback` (worker `vzrollback`/`qmrollback`) → AbstractConfig snapshot_rollback:
     * template refused, snapshot must exist, every volume must allow it (ZFS: only to the most recent
     * snapshot, ZFSPoolPlugin volume_rollback_is_possible), check_lock, the guest is stopped, lock
     * `rollback`, volumes rolled back, then the snapshot's config becomes current with `parent` set to
     * it and the lock dropped. `start` (both kinds, PVE 9) starts the guest afterwards.
     */
    [`POST ${base}/{snapname}/rollback`]: (ctx) => {
      const g = guestOf(ctx, kind);
      const name = req(ctx, "snapname");
      return startTask(ctx, `${prefix}rollback`, String(g.vmid), async ({ sleep }) => {
        if (g.config.template === "1") throw die("you can't rollback if vm is a template");
        const snap = snapshotOf(g, name);
        const newer = [...g.snapshots.keys()].slice([...g.snapshots.keys()].indexOf(name) + 1);
        const zfsRoot = volumesOf(kind, snap.config, ctx.sim).find(({ volid }) => ctx.sim.state.storages.get(volid.split(":")[0]!)?.type === "zfspool");
        if (zfsRoot && newer.length > 0) throw die(`can't rollback, '${name}' is not most recent snapshot on '${zfsRoot.volid}'`);
        assertUnlocked(g);
        g.status = "stopped";
        delete g.startedAt;
        g.config.lock = "rollback";
        await hold(ctx.sim, sleep);
        g.config = { ...snap.config };
        g.parent = name;
        ctx.sim.state.volumeEvents.push({ kind: "rollback", vmid: g.vmid, snapname: name });
        if (flag(ctx, "start")) {
          g.status = "running";
          g.startedAt = ctx.sim.state.now();
        }
      });
    },
  };
}

/** pve-manager PVE/VZDump.pm: `vzdump-<type>-<vmid>-YYYY_MM_DD-HH_MM_SS.<tar|vma>[.<zst|gz|lzo>]` (strftime in local time; UTC here). */
function archiveName(kind: Kind, vmid: number, now: number, compress: string): string {
  const d = new Date(now);
  const p = (n: number) => String(n).padStart(2, "0");
  const stamp = `${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}-${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}`;
  const ext = { "0": "", "1": ".lzo", lzo: ".lzo", gzip: ".gz", zstd: ".zst" }[compress] ?? "";
  return `vzdump-${kind}-${vmid}-${stamp}.${kind === "qemu" ? "vma" : "tar"}${ext}`;
}

/**
 * POST /nodes/{node}/vzdump: API2/VZDump.pm forks one `vzdump` worker (its id the vmid when one
 * guest is backed up); VZDump.pm refuses a storage without `backup` content up front ("can't use
 * storage … - wrong content type"). Per guest the plugin's lock_vm sets lock `backup`
 * (VZDump/LXC.pm and VZDump/QemuServer.pm: set_lock, which fails on another lock) for the whole
 * backup; an LXC `snapshot` mode backup takes and removes the `vzdump` snapshot meanwhile (it falls
 * back to `suspend` when a volume cannot be snapshotted). The archive lands as a `backup` volume.
 */
const vzdump: Handler = (ctx) => {
  const { sim } = ctx;
  const node = req(ctx, "node");
  sim.state.node(node);
  const storageId = str(ctx, "storage") ?? "local";
  const storage = sim.state.storage(storageId);
  if (!sim.state.contentOf(storage).includes("backup")) throw die(`can't use storage '${storageId}' for backups - wrong content type`);
  const all = flag(ctx, "all") === true;
  const listed = (str(ctx, "vmid") ?? "").split(/[\s,;]+/).filter((s) => s !== "").map(Number);
  if (!all && listed.length === 0) throw paramError({ vmid: "property is missing and it is not optional" });
  const excluded = new Set((str(ctx, "exclude") ?? "").split(/[\s,;]+/).filter((s) => s !== "").map(Number));
  // A template is backed up when named (VZDump.pm get_included_guests takes the vmid list as it is;
  // a template is never running, so its mode is `stop`: VZDump.pm exec_backup_task). Not modelled:
  // templates selected by `all`, which PVE includes too.
  const guests = [...sim.state.guests.values()].filter((g) => g.node === node && (all ? !excluded.has(g.vmid) && g.config.template !== "1" : listed.includes(g.vmid)));
  if (!all) for (const vmid of listed) if (!guests.some((g) => g.vmid === vmid)) throw die(`guest ${vmid} is not on node '${node}'`);
  const mode = str(ctx, "mode") ?? "snapshot";
  const compress = str(ctx, "compress") ?? "0";
  // VZDump.pm generate_notes: {{cluster}}, {{guestname}}, {{node}}, {{vmid}}; `\\n` is a line break.
  const notesTemplate = str(ctx, "notes-template");
  const notesOf = (g: Guest) =>
    notesTemplate === undefined || notesTemplate === ""
      ? undefined
      : notesTemplate
          .replace(/\\(.)/g, (_m, c: string) => (c === "\\" ? "\\" : c === "n" ? "\n" : c))
          .replace(/\{\{(cluster|guestname|node|vmid)\}\}/g, (_m, k: string) => ({ cluster: "standalone node", guestname: g.config.hostname ?? g.config.name ?? `VM ${g.vmid}`, node, vmid: String(g.vmid) })[k]!);
  return startTask(ctx, "vzdump", guests.length === 1 ? String(guests[0]!.vmid) : "", async ({ log, sleep }) => {
    const failed: number[] = [];
    for (const g of guests) {
      log(`INFO: Starting Backup of VM ${g.vmid} (${g.kind})`);
      try {
        assertUnlocked(g);
        g.config.lock = "backup";
        try {
          const snapshotMode = g.kind === "lxc" && mode === "snapshot" && snapshotBlockers(sim, g, true).length === 0;
          if (g.kind === "lxc" && mode === "snapshot" && !snapshotMode) log("INFO: mode failure - some volumes do not support snapshots");
          if (snapshotMode) {
            log("INFO: create storage snapshot 'vzdump'");
            g.snapshots.set("vzdump", { name: "vzdump", description: "vzdump backup snapshot", snaptime: Math.floor(sim.state.now() / 1000), config: { ...g.config } });
          }
          await hold(sim, sleep);
          const config = { ...g.config };
          delete config.lock;
          const name = archiveName(g.kind, g.vmid, sim.state.now(), compress);
          const volid = `${storageId}:backup/${name}`;
          const size = volumesOf(g.kind, g.config, sim).reduce((n, { volid: v }) => n + (sim.state.storages.get(v.split(":")[0]!)?.volumes.get(v)?.size ?? 0), 0);
          storage.volumes.set(volid, { volid, storage: storageId, content: "backup", format: name.replace(/^[^.]*\./, ""), size: Math.max(1, Math.round(size / 4)), ctime: Math.floor(sim.state.now() / 1000), vmid: g.vmid, backup: { kind: g.kind, config }, ...(notesOf(g) !== undefined ? { notes: notesOf(g) } : {}) });
          sim.state.volumeEvents.push({ kind: "backup", vmid: g.vmid, volid });
          log(`INFO: creating vzdump archive '${volid}'`);
          if (snapshotMode) g.snapshots.delete("vzdump");
        } finally {
          delete g.config.lock;
        }
        log(`INFO: Finished Backup of VM ${g.vmid}`);
      } catch (e) {
        log(`ERROR: Backup of VM ${g.vmid} failed - ${(e as Error).message.trim()}`);
        failed.push(g.vmid);
      }
    }
    if (failed.length > 0) throw die(`job errors`);
  });
};

/** The backup volume a restore names, which must hold a backup of this kind of guest. */
function backupVolume(sim: Sim, volid: string, kind: Kind) {
  const vol = sim.state.volume(volid);
  if (vol.content !== "backup" || !vol.backup) throw die(`volume '${volid}' is not a backup archive`);
  if (vol.backup.kind !== kind) throw die(`volume '${volid}' is a backup of a ${LABEL[vol.backup.kind]}, not a ${LABEL[kind]}`);
  return vol.backup;
}

/**
 * A restore is the create call with the backup's configuration merged in, then its usual worker.
 *
 * LXC (API2/LXC.pm create_vm with `restore`, LXC/Create.pm sanitize_and_merge_config): every
 * key the call gives wins; from the backup come the others except digest, rootfs, snapshots,
 * unprivileged, parent, mpN, unusedN and template (`unprivileged` is taken from it when the call
 * has none). Without any rootfs/mpN in the call ("storage only mode") the backup's volume mount
 * points are recreated on `storage` with their sizes, and its bind and device mount points are
 * restored too, which only root@pam may ("restoring 'mpN' to bind mount is only possible for
 * root"); a call that names `rootfs` gets exactly the mount points it names. `unique` gives the
 * interfaces new MACs.
 *
 * QEMU (API2/Qemu.pm create_vm with `archive`): drive keys conflict with `archive` (400); other
 * keys override the backup's (`override_conf`); the drives are recreated on `storage` (or their
 * own storage) with their sizes.
 */
function restoring(kind: Kind, create: Handler): Handler {
  return (ctx) => {
    const { sim } = ctx;
    const archive = kind === "lxc" ? (flag(ctx, "restore") ? req(ctx, "ostemplate") : undefined) : str(ctx, "archive");
    if (archive === undefined) return create(ctx);
    const params = ctx.params;
    const callKeys = new Set(Object.keys(params));
    const given = (k: string) => params[k] !== undefined;
    const volumeKey = kind === "lxc" ? /^(rootfs|mp\d+)$/ : /^(scsi|virtio|sata|ide)\d+$|^(efidisk0|tpmstate0)$/;
    if (kind === "qemu") {
      const conflict = Object.keys(params).find((k) => volumeKey.test(k));
      if (conflict) throw paramError({ [conflict]: "option conflicts with option 'archive'" });
    }
    const backup = backupVolume(sim, archive, kind);
    const schema = configSchema(sim, kind);
    const storageOnly = !Object.keys(params).some((k) => volumeKey.test(k));
    const skip = kind === "lxc" ? /^(digest|rootfs|snapshots|unprivileged|parent|template|lock|mp\d+|unused\d+)$/ : /^(digest|parent|template|lock|unused\d+)$/;
    for (const [k, v] of Object.entries(backup.config)) {
      if (given(k)) continue;
      if (volumeKey.test(k)) {
        if (!storageOnly) continue;
        const parsed = parseWithSchema(schema[k]!, v, k);
        const field = kind === "lxc" ? "volume" : "file";
        const volid = parsed[field] ?? "";
        if (kind === "qemu" && (parsed.media === "cdrom" || /cloudinit/.test(volid))) continue;
        if (!/^[^/:\s]+:/.test(volid)) {
          // Raised inside the worker (create_vm's $code), so the call returns a UPID and the task fails.
          const refusal = k === "rootfs" ? "restoring rootfs to bind mount is only possible by specifying -rootfs manually!" : ctx.user !== "root@pam" ? `restoring '${k}' to bind mount is only possible for root` : undefined;
          if (refusal) return startTask(ctx, `${kind === "lxc" ? "vz" : "qm"}restore`, req(ctx, "vmid"), () => Promise.reject(die(refusal)));
          params[k] = v;
          continue;
        }
        const target = str(ctx, "storage") ?? (kind === "lxc" ? "local" : volid.split(":")[0]!);
        params[k] = [`${target}:${parseSize(parsed.size ?? "4G")}`, ...v.split(",").slice(1).filter((p) => !/^size=/.test(p))].join(",");
        continue;
      }
      if (skip.test(k)) continue;
      if (flag(ctx, "unique") && /^net\d+$/.test(k)) {
        params[k] = v.replace(/(^|,)(hwaddr|macaddr)=[^,]*/, "").replace(/^(\w+)=[0-9A-Fa-f:]{17}/, "$1");
        continue;
      }
      params[k] = v;
    }
    if (kind === "lxc" && !given("unprivileged") && backup.config.unprivileged !== undefined) params.unprivileged = backup.config.unprivileged;
    const vmid = Number(req(ctx, "vmid"));
    const upid = create({ ...ctx, inherited: new Set(Object.keys(params).filter((k) => !callKeys.has(k))) }) as string;
    const task = sim.tasks.tasks.get(upid);
    void task?.done.then(() => {
      if (task.exitstatus === "OK" && sim.state.guests.has(vmid)) sim.state.volumeEvents.push({ kind: "restore", vmid, volid: archive });
    });
    return upid;
  };
}

/** The handlers of this file; `existing` holds the create handlers a restore goes through. */
export function snapshotHandlers(existing: Record<string, Handler>): Record<string, Handler> {
  const out: Record<string, Handler> = { "POST /nodes/{node}/vzdump": vzdump };
  for (const kind of ["lxc", "qemu"] as const) {
    Object.assign(out, snapshotHandlersOf(kind));
    const create = existing[`POST /nodes/{node}/${kind}`];
    if (!create) throw new Error(`pve-sim: no create handler for ${kind}`);
    out[`POST /nodes/{node}/${kind}`] = restoring(kind, create);
  }
  return out;
}

