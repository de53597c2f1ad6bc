/**
 * The ZFS path of the snapshot before a change: for a container PVE cannot snapshot only because
 * it bind-mounts datasets the stack declares (pve-container src/PVE/LXC/Config.pm has_feature asks
 * volume_has_feature of every mount point; a path has none), Phoenix snapshots the container's
 * ZFS volumes and the mounted datasets itself on the node, under the same `phoenix-<change>-<hash>`
 * name, and keeps the last N of its own on each dataset.
 *
 * The dataset of a volume `<storage>:subvol-<vmid>-disk-N` on a zfspool storage is
 * `<pool>/subvol-<vmid>-disk-N`, `pool` being the storage's (pve-storage@9.1.7
 * src/PVE/Storage/ZFSPoolPlugin.pm volume_snapshot/volume_snapshot_rollback: "$scfg->{pool}/$vname@$snap").
 * A bind mount `/<pool>/<name>` is the declared dataset `<pool>/<name>` (components/guest/lxc.ts
 * mounts each at its default mountpoint).
 *
 * Atomicity: `zfs snapshot a@s b@s …` takes them in one ioctl, "created atomically" (openzfs
 * zfs-2.3.4 man/man8/zfs-snapshot.8), but only within one pool: lzc_snapshot's "They must all be in
 * the same pool" (lib/libzfs_core/libzfs_core.c) and zfs_ioc_snapshot returns EXDEV for a name in
 * another pool (module/zfs/zfs_ioctl.c). So Phoenix runs one `zfs snapshot` per pool, back to back
 * in one script: atomic per pool, not across pools (a root disk on quickOS and data on fastData are
 * two instants, milliseconds apart).
 */
import { shellQuote } from "../ssh";
import { SNAPSHOT_PREFIX } from "./guest-snapshot";

/** Runs a shell command on the node (over the stack's SSH connection; a local shell in tests). */
export type NodeRun = (command: string) => Promise<{ code: number | null; stdout: string; stderr: string }>;

/**
 * A container volume's name on a zfspool storage and its dataset's last part: a linked clone is
 * `<base>/<name>` (pve-storage@9.1.7 ZFSPoolPlugin.pm parse_volname: `^(((base|basevol)-(\d+)-\S+)\/)?((base|basevol|vm|subvol)-(\d+)-\S+)$`,
 * the dataset being "$scfg->{pool}/$5").
 */
const SUBVOL = /^(?:(?:base|basevol)-\d+-[^/\s]+\/)?((?:subvol|basevol)-\d+-[^/\s]+)$/;

export interface ZfsPlan {
  /** The datasets to snapshot together, the container's volumes first. */
  datasets: string[];
  /** What keeps even the ZFS path from covering the guest. */
  obstacles: string[];
}

/**
 * The datasets of a container's volumes and bind mounts, from its config and the storages' config
 * (`GET /storage`: type and, for zfspool, pool). A bind mount of anything but a declared dataset,
 * a device mount, or a volume on a non-zfspool storage is an obstacle.
 */
export function zfsPlan(config: Record<string, unknown>, storages: ReadonlyArray<Record<string, unknown>>, declared: readonly string[]): ZfsPlan {
  const datasets: string[] = [];
  const obstacles: string[] = [];
  const byId = new Map(storages.map((s) => [String(s.storage), s]));
  const keys = Object.keys(config).filter((k) => /^(rootfs|mp\d+)$/.test(k)).sort((a, b) => (a === "rootfs" ? -1 : b === "rootfs" ? 1 : Number(a.slice(2)) - Number(b.slice(2))));
  for (const key of keys) {
    const volume = (/^(?:volume=)?([^,]+)/.exec(String(config[key]))?.[1] ?? "").trim();
    if (volume.startsWith("/")) {
      const ds = volume.slice(1);
      if (declared.includes(ds)) datasets.push(ds);
      else obstacles.push(`${key} is a ${volume.startsWith("/dev/") ? "device" : "bind"} mount of ${volume}, not a dataset of host.zfs.datasets`);
      continue;
    }
    const [id, volname] = volume.split(":") as [string, string | undefined];
    const storage = byId.get(id);
    const name = SUBVOL.exec(volname ?? "")?.[1];
    if (storage?.type === "zfspool" && typeof storage.pool === "string" && name) datasets.push(`${storage.pool}/${name}`);
    else obstacles.push(`${key} is on ${String(storage?.type ?? "unknown")} storage ${id}, not a ZFS subvolume`);
  }
  return { datasets, obstacles };
}

const poolOf = (ds: string) => ds.split("/")[0]!;

/** One `zfs snapshot` per pool (atomic within it), in one script that stops at the first failure. */
export function renderZfsSnapshot(datasets: readonly string[], name: string): string {
  const pools = [...new Set(datasets.map(poolOf))];
  return ["set -e", ...pools.map((p) => `zfs snapshot -- ${datasets.filter((d) => poolOf(d) === p).map((d) => shellQuote(`${d}@${name}`)).join(" ")}`)].join("\n");
}

/**
 * Every snapshot and bookmark of these datasets (not their children), oldest first, with what the
 * rollback plan needs: `createtxg` (what `zfs rollback` compares: zfs-2.3.4 cmd/zfs/zfs_main.c
 * rollback_check, "more recent" is a greater createtxg), `creation` (seconds, -p), `userrefs` (the
 * user holds, zfs-hold(8)) and `clones` (the file systems cloned from it); zfsprops(7). A bookmark
 * shows `-` for the last two.
 */
export function renderZfsList(datasets: readonly string[]): string {
  return `zfs list -t snapshot,bookmark -H -p -o name,createtxg,creation,userrefs,clones -s createtxg -d 1 -- ${datasets.map(shellQuote).join(" ")}`;
}

export function renderZfsDestroy(snapshots: readonly string[]): string {
  return ["set -e", ...snapshots.map((s) => `zfs destroy -- ${shellQuote(s)}`)].join("\n");
}

/**
 * `zfs rollback` of each dataset to `name`; `-r` destroys the snapshots newer than it (zfs-rollback(8)).
 * A guest volume (subvol-…) is then unmounted, as PVE does after its own rollback "to invalidate
 * wrong kernel caches" (openzfs#10931), tolerating "not currently mounted"; PVE mounts it again when
 * the guest starts (ZFSPoolPlugin.pm volume_snapshot_rollback, activate_volume).
 */
export function renderZfsRollback(datasets: readonly string[], name: string, destroyNewer: boolean): string {
  return [
    "set -e",
    ...datasets.flatMap((d) => [
      `zfs rollback ${destroyNewer ? "-r " : ""}-- ${shellQuote(`${d}@${name}`)}`,
      ...(/\/(subvol|basevol)-\d+-disk-\d+$/.test(d) ? [`out=$(zfs unmount -- ${shellQuote(d)} 2>&1) || case $out in *"not currently mounted") ;; *) echo "$out" >&2; exit 1 ;; esac`] : []),
    ]),
  ].join("\n");
}

/** A snapshot (`dataset@name`) or bookmark (`dataset#name`) of a dataset, as `zfs list` shows it. */
export interface ZfsSnap {
  name: string;
  bookmark: boolean;
  createtxg: number;
  /** Seconds since the epoch. */
  creation?: number;
  /** User holds (`zfs holds`). */
  holds: number;
  /** File systems cloned from it. */
  clones: string[];
}

/** `zfs list` lines (renderZfsList's columns; a line of only a name is read as one), grouped per dataset in createtxg order. */
export function parseZfsList(stdout: string): Map<string, ZfsSnap[]> {
  const out = new Map<string, ZfsSnap[]>();
  stdout.split("\n").filter(Boolean).forEach((line, i) => {
    const [full = "", txg, creation, userrefs, clones] = line.split("\t");
    const at = full.search(/[@#]/);
    if (at < 0) return;
    const num = (v?: string) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
    const ds = full.slice(0, at);
    const snap: ZfsSnap = { name: full.slice(at + 1), bookmark: full[at] === "#", createtxg: num(txg) ?? i, holds: num(userrefs) ?? 0, clones: clones && clones !== "-" ? clones.split(",").filter(Boolean) : [] };
    const seconds = num(creation);
    if (seconds !== undefined) snap.creation = seconds;
    out.set(ds, [...(out.get(ds) ?? []), snap]);
  });
  return out;
}

async function checked(run: NodeRun, what: string, command: string): Promise<string> {
  const r = await run(command);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${String(r.code)}): ${r.stderr.trim()}`);
  return r.stdout;
}

export const listZfsSnapshots = async (run: NodeRun, datasets: readonly string[]) => parseZfsList(await checked(run, "zfs list", renderZfsList(datasets)));

/** The snapshots' names per dataset (no bookmarks), oldest first. */
const snapshotNames = (list: Map<string, ZfsSnap[]>) => new Map([...list].map(([d, l]) => [d, l.filter((s) => !s.bookmark).map((s) => s.name)]));

/** Takes `name` on every dataset (replacing an older one of that name) and prunes this guest's own beyond `keep`. */
export async function takeZfsSnapshot(run: NodeRun, datasets: readonly string[], name: string, keep: number): Promise<{ taken: string; pruned: string[] }> {
  const existing = snapshotNames(await listZfsSnapshots(run, datasets));
  const again = datasets.filter((d) => existing.get(d)?.includes(name)).map((d) => `${d}@${name}`);
  if (again.length > 0) await checked(run, "zfs destroy", renderZfsDestroy(again));
  await checked(run, "zfs snapshot", renderZfsSnapshot(datasets, name));
  const after = snapshotNames(await listZfsSnapshots(run, datasets));
  // This guest's own are the ones on its root subvolume (datasets[0], no other guest's): a dataset shared
  // with other guests (shared-models) also holds theirs, which are theirs to prune.
  const ours = (after.get(datasets[0]!) ?? []).filter((s) => s.startsWith(SNAPSHOT_PREFIX));
  const old = ours.slice(0, Math.max(0, ours.length - keep));
  const pruned = datasets.flatMap((d) => old.filter((s) => after.get(d)?.includes(s)).map((s) => `${d}@${s}`));
  if (pruned.length > 0) await checked(run, "zfs destroy", renderZfsDestroy(pruned));
  return { taken: name, pruned };
}

/** One snapshot or bookmark that `zfs rollback -r` would destroy, and what would stop it. */
export interface Doomed extends ZfsSnap {
  dataset: string;
  /** `dataset@name` or `dataset#name`. */
  full: string;
}

/**
 * For each dataset, the snapshots and bookmarks more recent than `name` (a greater createtxg,
 * which `zfs rollback -r` destroys: zfs-2.3.4 lib/libzfs/libzfs_dataset.c zfs_rollback →
 * rollback_destroy); a dataset without the snapshot `name` is listed as missing.
 */
export function newerThan(list: Map<string, ZfsSnap[]>, datasets: readonly string[], name: string): { missing: string[]; newer: Doomed[] } {
  const target = (d: string) => (list.get(d) ?? []).find((s) => !s.bookmark && s.name === name);
  const missing = datasets.filter((d) => target(d) === undefined);
  const newer = datasets.flatMap((d) => {
    const t = target(d);
    if (!t) return [];
    return (list.get(d) ?? []).filter((s) => s.createtxg > t.createtxg).map((s) => ({ ...s, dataset: d, full: `${d}${s.bookmark ? "#" : "@"}${s.name}` }));
  });
  return { missing, newer };
}

/**
 * Why a snapshot must not be destroyed, whatever the flags: `zfs destroy` fails with EBUSY on a
 * user hold (zfs-hold(8); dsl_destroy.c dsl_destroy_snapshot_check_impl: ds_userrefs > 0) and
 * `zfs rollback -r` refuses when a newer snapshot has clones ("clones of previous snapshots exist",
 * zfs_main.c rollback_check_dependent), which only -R would destroy. A hold makes the rollback fail
 * part way, after it destroyed the snapshots it met first (rollback_destroy goes on, then returns
 * the error): so Phoenix checks before, and never passes -R.
 */
export function keptBy(s: ZfsSnap): string[] {
  return [...(s.holds > 0 ? [`${s.holds} hold${s.holds > 1 ? "s" : ""} (zfs holds)`] : []), ...(s.clones.length > 0 ? [`clones ${s.clones.join(", ")}`] : [])];
}

/** Whose a snapshot is, by its name: Phoenix's `phoenix-*`, sanoid's `autosnap_<date>_<period>` (sanoid v2.3.0 take_snapshots), syncoid's `syncoid_*`. */
export function ownerOf(name: string): string {
  return name.startsWith(SNAPSHOT_PREFIX) ? "Phoenix" : name.startsWith("autosnap_") ? "sanoid" : name.startsWith("syncoid_") ? "syncoid" : "other";
}

/**
 * A `zfs send` or `zfs receive` running on the node: a send holds the snapshot it sends without a
 * user hold (zfs-2.3.4 module/zfs/dmu_send.c dsl_dataset_long_hold), which makes its destroy fail
 * with EBUSY too (dsl_destroy_snapshot_check_impl: dsl_dataset_long_held). Its command line is all
 * the node shows of it (pgrep -a: pid and command line).
 */
export const RENDER_RUNNING_SENDS = "pgrep -a -f -- '(^|/)zfs (send|recv|receive) ' || true";

export async function rollbackZfs(run: NodeRun, datasets: readonly string[], name: string, destroyNewer: boolean): Promise<void> {
  await checked(run, "zfs rollback", renderZfsRollback(datasets, name, destroyNewer));
}
