/**
 * GuestSnapshot: a PVE snapshot of a guest taken right before Phoenix changes it (re-runs its
 * install, changes its root settings, rebuilds its template), named for the change, keeping the
 * last N of Phoenix's own (`phoenix-*`); older ones of Phoenix's are deleted, no other snapshot is
 * touched. The first run on a new guest takes none: there is nothing to go back to.
 *
 * PVE: POST /nodes/{node}/{lxc|qemu}/{vmid}/snapshot (pve-container@6.0.18 src/PVE/API2/LXC/Snapshot.pm,
 * qemu-server@9.1.2 src/PVE/API2/Qemu.pm). `snapname` is a pve-configid of at most 40 characters (the
 * API schema: a letter, then letters, digits, '-' and '_'); `current` and `vzdump` are reserved. The
 * snapshot runs in a worker under the guest's `snapshot` lock (pve-guest-common@6.0.2
 * src/PVE/AbstractConfig.pm __snapshot_prepare) and fails there with "snapshot feature is not
 * available" when a volume cannot be snapshotted: for a container any bind or device mount point
 * (pve-container src/PVE/LXC/Config.pm has_feature asks PVE::Storage::volume_has_feature for every
 * mount point, and for a path that is undef; `backup=0` only matters for vzdump's own snapshot), or
 * a volume on a storage without snapshots (pve-storage@9.1.0 ZFSPoolPlugin: yes; dir (Plugin.pm):
 * only qcow2). Phoenix reads that before the call, so the failure is named, not met.
 */
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { withTokenApi, type ApiAccess, type GuestKind, type PveApi } from "../pve";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { Checker, diffResult, isUnknown } from "../common";
import { isOwnedKey } from "./lxc-root-config.render";
import { runCommand, type SshConnection } from "../ssh";
import { takeZfsSnapshot, zfsPlan } from "./zfs-snapshot";

export const SNAPSHOT_PREFIX = "phoenix-";
/** The API schema's maxLength of `snapname`. */
const SNAPNAME_MAX = 40;

export type WhenUnsupported = "refuse" | "proceed";

/** `phoenix-<change>-<first 8 hex of hash>`, cut to PVE's 40 characters; the change is reduced to [a-z0-9-]. */
export function snapshotName(change: string, trigger: string): string {
  const hash = crypto.createHash("sha256").update(trigger).digest("hex").slice(0, 8);
  const what = change.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "") || "change";
  return `${SNAPSHOT_PREFIX}${what.slice(0, SNAPNAME_MAX - SNAPSHOT_PREFIX.length - 9)}-${hash}`;
}

export interface SnapshotEntry {
  name: string;
  description?: string;
  snaptime?: number;
  parent?: string;
}

/** Phoenix's snapshots beyond the newest `keep` (after a new one is taken), oldest first. Others' snapshots are never listed. */
export function snapshotsToPrune(list: readonly SnapshotEntry[], keep: number): string[] {
  const ours = list.filter((s) => s.name.startsWith(SNAPSHOT_PREFIX)).sort((a, b) => (a.snaptime ?? 0) - (b.snaptime ?? 0));
  return ours.slice(0, Math.max(0, ours.length - keep)).map((s) => s.name);
}

/**
 * Why a guest's volumes cannot be snapshotted, from its config and its storages' types: bind and
 * device mount points; volumes on storages without snapshots. QEMU cd-rom drives (cloud-init
 * included) do not count (qemu-server has_feature skips them).
 */
/**
 * Storage types whose volumes PVE snapshots in place: pve-storage 9.1.7 `volume_has_feature`
 * answers `snapshot => { current => 1, … }` in ZFSPoolPlugin.pm:813, RBDPlugin.pm:959 and
 * LvmThinPlugin.pm:412; dir-like storages only for a qcow2 volume.
 */
export const SNAPSHOT_STORAGE_TYPES: ReadonlySet<string> = new Set(["zfspool", "rbd", "lvmthin"]);

export function snapshotObstacles(kind: GuestKind, config: Record<string, unknown>, storageType: (id: string) => string | undefined): string[] {
  const out: string[] = [];
  const volumeKey = kind === "lxc" ? /^(rootfs|mp\d+)$/ : /^(scsi|virtio|sata|ide)\d+$|^(efidisk0|tpmstate0)$/;
  for (const [key, raw] of Object.entries(config)) {
    if (!volumeKey.test(key) || typeof raw !== "string") continue;
    if (kind === "qemu" && (/(^|,)media=cdrom(,|$)/.test(raw) || /cloudinit/.test(raw))) continue;
    const volume = (/^(?:volume=|file=)?([^,]+)/.exec(raw)?.[1] ?? "").trim();
    if (volume.startsWith("/")) {
      out.push(`${key} is a ${volume.startsWith("/dev/") ? "device" : "bind"} mount (${volume})`);
      continue;
    }
    const storage = volume.split(":")[0] ?? "";
    const type = storageType(storage);
    const ok = SNAPSHOT_STORAGE_TYPES.has(type ?? "") || /\.qcow2$/.test(volume);
    if (!ok) out.push(`${key} is on ${type ?? "unknown"} storage ${storage}, which cannot snapshot this volume`);
  }
  return out;
}

/** The root-only settings that differ between two configs (devices, bind mounts, features, unprivileged), as `key: <from> → <to>`. */
export function rootSettingsChanges(from: Record<string, unknown>, to: Record<string, unknown>): string[] {
  const owned = (c: Record<string, unknown>) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, String(v)]).filter(([k, v]) => isOwnedKey(k!, v!) || k === "unprivileged"));
  const a = owned(from);
  const b = owned(to);
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort().filter((k) => a[k] !== b[k]).map((k) => `${k}: ${a[k] ?? "(none)"} → ${b[k] ?? "(none)"}`);
}

const guestPath = (node: string, kind: GuestKind, vmid: number) => `/nodes/${encodeURIComponent(node)}/${kind}/${vmid}`;

/** Reads what stops a PVE snapshot of this guest right now, and, for a container, what its ZFS path would cover. */
export async function liveObstacles(api: PveApi, node: string, kind: GuestKind, vmid: number, declared: readonly string[] = []) {
  const config = (await api.guestConfig(node, kind, vmid)) as Record<string, unknown>;
  const storages = await api.storages();
  const types = new Map(storages.map((s) => [s.storage, s.type]));
  return { obstacles: snapshotObstacles(kind, config, (id) => types.get(id)), zfs: kind === "lxc" ? zfsPlan(config, storages, declared) : undefined };
}

/** The ZFS path (providers/guest/zfs-snapshot.ts): the node's SSH connection and the datasets the stack declares. */
export interface ZfsAccess {
  connection: SshConnection;
  declared: string[];
}

export interface TakeResult {
  taken?: string;
  skipped?: string;
  pruned: string[];
}

/** Takes the change's snapshot (replacing an older one of the same name) and prunes Phoenix's beyond `keep`. */
export async function takeChangeSnapshot(api: PveApi, i: { node: string; kind: GuestKind; vmid: number; change: string; trigger: string; keep: number; whenUnsupported: WhenUnsupported; zfs?: ZfsAccess }): Promise<TakeResult> {
  const label = `${i.kind === "lxc" ? "CT" : "VM"} ${i.vmid}`;
  const live = await liveObstacles(api, i.node, i.kind, i.vmid, i.zfs?.declared);
  const name = snapshotName(i.change, i.trigger);
  if (live.obstacles.length > 0) {
    // PVE cannot; the node's ZFS can when every volume and mount is a ZFS dataset Phoenix knows.
    if (i.zfs && live.zfs && live.zfs.obstacles.length === 0) {
      const connection = i.zfs.connection;
      const r = await takeZfsSnapshot((command) => runCommand(connection, command, { timeoutMs: 120_000 }), live.zfs.datasets, name, i.keep);
      return { taken: `zfs:${name}`, pruned: r.pruned };
    }
    const zfsWhy = i.zfs && live.zfs ? `; nor by ZFS on the node: ${live.zfs.obstacles.join("; ")}` : "";
    const why = `${label} cannot be snapshotted before its ${i.change}: ${live.obstacles.join("; ")}${zfsWhy}`;
    if (i.whenUnsupported === "refuse") throw new Error(`${why}. Set changeSnapshots.whenUnsupported: proceed to change it without a snapshot.`);
    return { skipped: why, pruned: [] };
  }
  const path = guestPath(i.node, i.kind, i.vmid);
  const before = await api.snapshots(i.node, i.kind, i.vmid);
  if (before.some((s) => s.name === name)) await api.runTask("DELETE", `${path}/snapshot/${name}`);
  await api.runTask("POST", `${path}/snapshot`, { snapname: name, description: `Phoenix: before ${i.change} (${new Date().toISOString()})` });
  const pruned = snapshotsToPrune(await api.snapshots(i.node, i.kind, i.vmid), i.keep);
  for (const old of pruned) await api.runTask("DELETE", `${path}/snapshot/${old}`);
  return { taken: name, pruned };
}

export interface GuestSnapshotInputs {
  api: ApiAccess;
  node: string;
  kind: GuestKind;
  vmid: number;
  /** What is about to change: `install`, `root-settings`, `template`. */
  change: string;
  /** Changes when the change does (the install script's hash): an update takes the snapshot. */
  trigger: string;
  /** How many of Phoenix's snapshots of this guest to keep. */
  keep: number;
  whenUnsupported: WhenUnsupported;
  /** What the stack already says stops a snapshot (bind mounts, storage), so preview can say so. */
  obstacles: string[];
  /** When set, the ZFS path is taken where PVE cannot snapshot the guest. */
  zfs?: ZfsAccess;
}

export interface GuestSnapshotOutputs extends GuestSnapshotInputs {
  taken?: string;
  skipped?: string;
}

export interface GuestSnapshotArgs {
  api: pulumi.Input<ApiAccess>;
  node: pulumi.Input<string>;
  kind: pulumi.Input<GuestKind>;
  vmid: pulumi.Input<number>;
  change: pulumi.Input<string>;
  trigger: pulumi.Input<string>;
  keep: pulumi.Input<number>;
  whenUnsupported: pulumi.Input<WhenUnsupported>;
  obstacles: pulumi.Input<string[]>;
  zfs?: pulumi.Input<ZfsAccess>;
}

export const guestSnapshotProvider = dynamicProvider<GuestSnapshotInputs, GuestSnapshotOutputs>("guest/guest-snapshot");

export class GuestSnapshot extends DynamicResource {
  declare readonly taken: pulumi.Output<string | undefined>;

  constructor(name: string, args: GuestSnapshotArgs, opts?: pulumi.CustomResourceOptions) {
    super(guestSnapshotProvider, name, { taken: undefined, skipped: undefined, ...args }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api", "zfs"] }), "phoenix/guest", "GuestSnapshot");
  }
}

const labelOf = (i: { kind: GuestKind; vmid: number }) => `${i.kind === "lxc" ? "CT" : "VM"} ${i.vmid}`;

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`snapshot before changes of guest ${String(news.vmid)}`);
    c.node(news.node);
    c.require("kind", isUnknown(news.kind) || news.kind === "lxc" || news.kind === "qemu", "kind must be lxc or qemu");
    c.require("vmid", isUnknown(news.vmid) || (Number.isInteger(news.vmid) && (news.vmid as number) >= 100), "vmid must be a guest id (100 or more)");
    c.require("keep", isUnknown(news.keep) || (Number.isInteger(news.keep) && (news.keep as number) >= 1), "keep must be at least 1");
    c.require("whenUnsupported", isUnknown(news.whenUnsupported) || news.whenUnsupported === "refuse" || news.whenUnsupported === "proceed", "whenUnsupported must be refuse or proceed");
    c.string("change", news.change, /^[a-z][a-z0-9-]{0,20}$/, "a short change name such as install");
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: GuestSnapshotOutputs, news: GuestSnapshotInputs) {
    const replaces = ["node", "kind", "vmid"].filter((k) => !isUnknown(news[k as keyof GuestSnapshotInputs]) && olds[k as keyof GuestSnapshotOutputs] !== news[k as keyof GuestSnapshotInputs]);
    const retriggered = isUnknown(news.trigger) || olds.trigger !== news.trigger;
    // Preview says it here: a change that would need a snapshot the stack says cannot be taken.
    if (retriggered && !isUnknown(news.obstacles) && news.obstacles.length > 0 && news.whenUnsupported === "refuse") {
      throw new Error(`${labelOf(news)}: its ${news.change} would change without a snapshot first: ${news.obstacles.join("; ")}. Set changeSnapshots.whenUnsupported: proceed to allow it.`);
    }
    const changed = ["trigger", "keep", "whenUnsupported", "change", "obstacles", "api", "zfs"].filter((k) => JSON.stringify(olds[k as keyof GuestSnapshotOutputs]) !== JSON.stringify(news[k as keyof GuestSnapshotInputs]));
    return diffResult(changed, replaces);
  },

  async create(inputs: GuestSnapshotInputs) {
    return { id: `${inputs.node}/${inputs.vmid}/${inputs.change}`, outs: { ...inputs } };
  },

  async read(id: string, props: GuestSnapshotOutputs) {
    return { id, props };
  },

  async update(_id: string, olds: GuestSnapshotOutputs, news: GuestSnapshotInputs) {
    if (olds.trigger === news.trigger) return { outs: { ...news, taken: olds.taken, skipped: olds.skipped } };
    const r = await withTokenApi(news.api, (api) => takeChangeSnapshot(api, news));
    return { outs: { ...news, ...(r.taken ? { taken: r.taken } : {}), ...(r.skipped ? { skipped: r.skipped } : {}) } };
  },

  async delete() {
    // The snapshots stay with the guest: they are what `npm run rollback` goes back to.
  },
};
