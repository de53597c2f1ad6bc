/**
 * The snapshot Phoenix takes before it changes a guest (providers/guest/guest-snapshot.ts), as the
 * stack sets it up: `changeSnapshots` (keep, whenUnsupported) and what the stack already says will
 * stop PVE from taking it, which preview names before any call.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ApiAccess } from "../../providers/pve";
import { SNAPSHOT_STORAGE_TYPES, type WhenUnsupported, type ZfsAccess } from "../../providers/guest/guest-snapshot";
import type { SshConnection } from "../../providers/ssh";
import type { Guest, StackConfig } from "../../stacks/schema";

export interface ChangeSnapshotPolicy {
  api: pulumi.Input<ApiAccess>;
  node: string;
  keep: number;
  whenUnsupported: WhenUnsupported;
  /** Why this guest cannot be snapshotted, known from the stack (by PVE, and by ZFS where that path applies). */
  obstacles: string[];
  /** The ZFS path, for a container whose root disk is on a zfspool storage and whose mounts are all declared datasets. */
  zfs?: pulumi.Input<ZfsAccess>;
}

/**
 * The storage type of a storage id: the stack's datasets declare theirs, the installer's are `local`
 * (dir) and `local-zfs` (zfspool) (test/pve-sim/state.ts seedInstallerStorages, pve-installer
 * StorageConfig.pm).
 */
function storageType(config: StackConfig, id: string): string | undefined {
  const declared = config.host.zfs.datasets.find((d) => d.storage?.id === id)?.storage?.type ?? config.host.existingStorages.find((s) => s.id === id)?.type;
  return declared ?? ({ local: "dir", "local-zfs": "zfspool" } as Record<string, string>)[id];
}

/**
 * What stops a snapshot of the guest, from the stack alone: every dataset mount is a bind mount
 * (pve-container has_feature('snapshot') fails on any), and a root disk on a dir storage is raw.
 */
export function stackObstacles(config: StackConfig, guest: Guest): string[] {
  const out = guest.kind === "lxc" ? guest.mounts.map((m) => `${m.path} is a bind mount of ${m.volume}`) : [];
  const type = storageType(config, guest.storage);
  if (!SNAPSHOT_STORAGE_TYPES.has(type ?? "")) out.push(`its root disk is on ${type ?? "undeclared"} storage ${guest.storage}, which cannot snapshot it`);
  return out;
}

/** How Phoenix snapshots a guest before a change: PVE's snapshot, its ZFS datasets on the node, or not at all. */
export interface SnapshotMethod {
  method: "pve" | "zfs" | "none";
  /** Why PVE cannot snapshot it (empty for `pve`). */
  pveObstacles: string[];
}

/**
 * The method, from the stack alone. The ZFS path (providers/guest/zfs-snapshot.ts) covers a
 * container on a zfspool root storage whose mounts are datasets (the schema holds every mount to a
 * declared one), given an SSH connection to its node.
 */
export function snapshotMethod(config: StackConfig, guest: Guest, hasConnection: boolean): SnapshotMethod {
  const pveObstacles = stackObstacles(config, guest);
  if (pveObstacles.length === 0) return { method: "pve", pveObstacles };
  const zfs = guest.kind === "lxc" && hasConnection && storageType(config, guest.storage) === "zfspool";
  return { method: zfs ? "zfs" : "none", pveObstacles };
}

export const guestNode = (config: StackConfig, guest: Guest): string => guest.node ?? config.host.node ?? config.proxmox.nodes[0]!.name;

/** Guests already warned about in this program's evaluation: a guest's policy is built once per component that changes it. */
const warned = new WeakMap<StackConfig, Set<number>>();

export function changeSnapshotPolicy(config: StackConfig, guest: Guest, api: pulumi.Input<ApiAccess>, connection?: pulumi.Input<SshConnection>): ChangeSnapshotPolicy {
  const { method, pveObstacles } = snapshotMethod(config, guest, connection !== undefined);
  const { keep, whenUnsupported } = config.changeSnapshots;
  const node = guestNode(config, guest);
  if (method === "zfs") {
    // Only the datasets this guest mounts (each a declared one, by the schema): another guest's
    // dataset added or removed must not touch this guest's snapshot step. Synth's plan names the method.
    const declared = guest.kind === "lxc" ? [...new Set(guest.mounts.map((m) => m.volume))].sort() : [];
    return { api, node, keep, whenUnsupported, obstacles: [], zfs: pulumi.output(connection!).apply((c) => ({ connection: c, declared })) };
  }
  const obstacles = method === "none" ? pveObstacles : [];
  const seen = warned.get(config) ?? new Set<number>();
  warned.set(config, seen);
  if (obstacles.length > 0 && !seen.has(guest.vmid)) {
    seen.add(guest.vmid);
    const what = whenUnsupported === "proceed" ? "its install and root settings change without one (changeSnapshots.whenUnsupported: proceed)" : "a change of its install or root settings is refused until changeSnapshots.whenUnsupported is proceed";
    void pulumi.log.warn(`${guest.name} (${guest.vmid}) cannot be snapshotted before a change: ${obstacles.join("; ")}; ${what}`);
  }
  return { api, node, keep, whenUnsupported, obstacles };
}
