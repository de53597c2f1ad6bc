/**
 * `npm run rollback -- <stack> <guest> [snapshot] [--force] [--destroy-newer] [--change-shared]`: puts a guest back to a snapshot, by
 * default the newest Phoenix took before a change (`phoenix-*`). It prints what it will do, then
 * stops the guest, rolls back and starts it: the seed's `pct stop; pct rollback; pct start` as one
 * command, through the API.
 *
 * Refused, before anything changes, when the snapshot's root-only settings (devices, bind mounts,
 * features, unprivileged) differ from the current ones, since going back would also undo those
 * (`--force` after reading them), and when newer snapshots sit on ZFS storage, where PVE rolls
 * back only to the most recent one (pve-storage@9.1.0 src/PVE/Storage/ZFSPoolPlugin.pm
 * volume_rollback_is_possible).
 *
 * PVE: POST …/snapshot/{snapname}/rollback takes `start` on both kinds in PVE 9 (pve-container@6.0.18
 * src/PVE/API2/LXC/Snapshot.pm `rollback`: vm_start after snapshot_rollback; qemu-server@9.1.2
 * src/PVE/API2/Qemu.pm `rollback`); the rollback itself stops a running guest
 * (pve-guest-common@6.0.2 AbstractConfig.pm snapshot_rollback → __snapshot_rollback_vm_stop) under
 * the `rollback` lock. Phoenix stops it first so that the stop is its own task, seen in the log.
 * Exit 0 when done, 1 when refused or failed, 2 on a usage error.
 */
import type { PveApi } from "../providers/pve";
import type { StackConfig } from "../stacks/schema";
import { liveObstacles, rootSettingsChanges, SNAPSHOT_PREFIX, type SnapshotEntry } from "../providers/guest/guest-snapshot";
import { keptBy, listZfsSnapshots, newerThan, ownerOf, RENDER_RUNNING_SENDS, rollbackZfs, type NodeRun } from "../providers/guest/zfs-snapshot";
import { runCli } from "./cli";
import { loadStack, openGuestCommand, stackApi, stackNode } from "./stack-guest";

const USAGE = [
  "usage: npm run rollback -- <stack> <guest name or vmid> [snapshot] [--force] [--destroy-newer] [--change-shared]",
  "  --force          roll back across a change of the guest's root settings (devices, bind mounts, features)",
  "  --destroy-newer  destroy the newer snapshots and bookmarks of its ZFS datasets (Phoenix's, sanoid's, anyone's) that `zfs rollback -r` must",
  "  --change-shared  roll back a dataset other guests mount too",
].join("\n");

const FLAGS = ["--force", "--destroy-newer", "--change-shared"] as const;

export interface RollbackArgs {
  stack: string;
  guest: string;
  snapshot?: string;
  /** Across a change of root settings. */
  force: boolean;
  /** Let `zfs rollback -r` destroy the newer snapshots it lists. */
  destroyNewer: boolean;
  /** Roll back a dataset other guests mount too. */
  changeShared: boolean;
}

export function parseArgs(argv: readonly string[]): RollbackArgs | string {
  const positional = argv.filter((a) => !a.startsWith("-"));
  const unknown = argv.find((a) => a.startsWith("-") && !(FLAGS as readonly string[]).includes(a));
  if (unknown) return `unknown option ${unknown}\n${USAGE}`;
  if (positional.length < 2 || positional.length > 3) return USAGE;
  const [stack, guest, snapshot] = positional as [string, string, string | undefined];
  return { stack, guest, ...(snapshot !== undefined ? { snapshot } : {}), force: argv.includes("--force"), destroyNewer: argv.includes("--destroy-newer"), changeShared: argv.includes("--change-shared") };
}

export interface RollbackDeps {
  /** The stack's validated configuration, or why it has none (scripts/stack-guest.ts loadStack). */
  load(stack: string): StackConfig | string;
  api(stack: string, config: StackConfig): Promise<PveApi>;
  /** Commands on the guest's node, for a guest Phoenix snapshots through ZFS (providers/guest/zfs-snapshot.ts). */
  node?(stack: string, config: StackConfig, node: string): Promise<NodeRun>;
  out(line: string): void;
}

const when = (t?: number) => (t ? new Date(t * 1000).toISOString().replace(".000Z", "Z") : "unknown time");

/** How long ago, roughly: `5 min`, `3 h`, `2 d`. */
export function age(t: number | undefined, now: number): string {
  if (t === undefined) return "age unknown";
  const s = Math.max(0, Math.round(now / 1000 - t));
  return `${s < 3600 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`} old`;
}

/** The config keys whose values differ, with the snapshot's and the current value. */
function configChanges(snap: Record<string, unknown>, current: Record<string, unknown>): string[] {
  const skip = new Set(["digest", "snaptime", "description", "parent", "lock", "snapstate"]);
  const keys = [...new Set([...Object.keys(snap), ...Object.keys(current)])].filter((k) => !skip.has(k)).sort();
  return keys.filter((k) => String(snap[k] ?? "") !== String(current[k] ?? "")).map((k) => `${k}: ${current[k] === undefined ? "(none)" : String(current[k])} → ${snap[k] === undefined ? "(none)" : String(snap[k])}`);
}

export async function runRollback(argv: readonly string[], deps: RollbackDeps): Promise<number> {
  const opened = openGuestCommand(argv, parseArgs, deps.load, deps.out);
  if (!opened) return 2;
  const { args, config, target } = opened;
  const { node, kind, label } = target;
  const vmid = target.guest.vmid;
  const api = await deps.api(args.stack, config);
  try {
    const live = await liveObstacles(api, node, kind, vmid, config.host.zfs.datasets.map((d) => `${d.pool}/${d.name}`));
    if (live.obstacles.length > 0 && live.zfs && live.zfs.obstacles.length === 0) {
      if (!deps.node) throw new Error(`${label} is snapshotted through ZFS on its node, and rollback has no connection to the node`);
      return await rollbackViaZfs(args, config, { api, run: await deps.node(args.stack, config, node), node, kind, vmid, label, datasets: live.zfs.datasets }, deps.out);
    }
    const base = `/nodes/${encodeURIComponent(node)}/${kind}/${vmid}`;
    const list = (await api.snapshots(node, kind, vmid)).filter((s) => s.name !== "current") as SnapshotEntry[];
    const byTime = [...list].sort((a, b) => (a.snaptime ?? 0) - (b.snaptime ?? 0));
    const chosen = args.snapshot === undefined ? [...byTime].reverse().find((s) => s.name.startsWith(SNAPSHOT_PREFIX)) : list.find((s) => s.name === args.snapshot);
    if (!chosen) {
      deps.out(`${label}: ${args.snapshot === undefined ? "no snapshot taken by Phoenix" : `no snapshot ${JSON.stringify(args.snapshot)}`}; it has: ${list.map((s) => `${s.name} (${when(s.snaptime)})`).join(", ") || "none"}`);
      return 1;
    }
    const current = (await api.guestConfig(node, kind, vmid)) as Record<string, unknown>;
    const snapConfig = await api.client.get<Record<string, unknown>>(`${base}/snapshot/${encodeURIComponent(chosen.name)}/config`);
    const status = (await api.guestStatus(node, kind, vmid)).status;
    const changes = configChanges(snapConfig, current);
    deps.out(`${label} on ${node} is ${status}. Rolling back to ${chosen.name}, taken ${when(chosen.snaptime)}${chosen.description ? ` (${chosen.description.trim()})` : ""}:`);
    deps.out(`  1. ${status === "running" ? `stop ${label}` : `(${label} is already stopped)`}`);
    deps.out(`  2. roll its volumes and configuration back to ${chosen.name}; what is written since is lost`);
    for (const c of changes) deps.out(`       ${c}`);
    deps.out(`  3. start ${label}`);

    const refusals: string[] = [];
    const newer = byTime.filter((s) => (s.snaptime ?? 0) > (chosen.snaptime ?? 0) || (s.snaptime === chosen.snaptime && byTime.indexOf(s) > byTime.indexOf(chosen)));
    const storages = new Map((await api.storages()).map((s) => [s.storage, s.type]));
    const onZfs = Object.entries(current).some(([k, v]) => /^(rootfs|mp\d+|(scsi|virtio|sata|ide)\d+)$/.test(k) && storages.get(String(v).split(":")[0] ?? "") === "zfspool");
    if (newer.length > 0 && onZfs) {
      refusals.push(`newer snapshots exist (${newer.map((s) => `${s.name}, taken ${when(s.snaptime)}`).join("; ")}) and ZFS rolls back only to the newest: delete them first (${kind === "lxc" ? "pct delsnapshot" : "qm delsnapshot"} ${vmid} <name>)`);
    }
    const root = rootSettingsChanges(current, snapConfig);
    if (root.length > 0 && !args.force) {
      refusals.push(`the snapshot's root settings differ from the current ones, and rolling back undoes them too:\n${root.map((r) => `       ${r}`).join("\n")}\n     read them, then run again with --force to proceed; the next \`pulumi up\` sets the declared ones again`);
    }
    if (refusals.length > 0) {
      for (const r of refusals) deps.out(`refused: ${r}`);
      return 1;
    }
    if (root.length > 0) deps.out(`--force: rolling back across a change of root settings (${root.length})`);
    if (status === "running") await api.setGuestState(node, kind, vmid, "stop");
    await api.runTask("POST", `${base}/snapshot/${encodeURIComponent(chosen.name)}/rollback`, { start: true });
    const after = (await api.guestStatus(node, kind, vmid)).status;
    deps.out(`${label} rolled back to ${chosen.name} and ${after}.`);
    return after === "running" ? 0 : 1;
  } finally {
    api.close();
  }
}

/** The other guests that mount a dataset, or reach it over NFS (host.nfsExports): rolling it back changes their data too. */
function sharers(config: StackConfig, vmid: number, dataset: string): string[] {
  const mounting = config.guests.filter((g) => g.vmid !== vmid && g.kind === "lxc" && g.mounts.some((m) => m.volume === dataset)).map((g) => `${g.name} (${g.vmid})`);
  const nfs = config.host.nfsExports.filter((e) => e.volume === dataset).flatMap((e) => e.clients.filter((c) => c !== vmid).map((c) => `${config.guests.find((g) => g.vmid === c)?.name ?? "guest"} (${c}, NFS)`));
  return [...mounting, ...nfs];
}

/** Why, whatever the flags, these newer snapshots cannot go: held, cloned or being sent (zfs-snapshot.ts keptBy, RENDER_RUNNING_SENDS). */
async function neverDestroyed(t: { run: NodeRun; datasets: string[] }, newer: ReturnType<typeof newerThan>["newer"]): Promise<string[]> {
  if (newer.length === 0) return [];
  const sends = (await t.run(RENDER_RUNNING_SENDS)).stdout.split("\n").filter((l) => t.datasets.some((d) => l.includes(d)));
  return [
    ...newer.filter((s) => keptBy(s).length > 0).map((s) => `${s.full} is kept by ${keptBy(s).join(", ")}: Phoenix does not destroy it (release it with \`zfs release\`, or promote or destroy the clone, yourself), so this rollback cannot happen`),
    ...sends.map((l) => `a zfs send or receive is running on the node (${l.trim()}): wait for it to end`),
  ];
}

/**
 * The ZFS path: stop the guest, `zfs rollback` its volumes and mounted datasets to one Phoenix
 * snapshot, start it. The guest's configuration is not part of a ZFS snapshot: it stays as it is.
 * The plan lists every snapshot and bookmark `zfs rollback -r` would destroy (zfs-2.3.4
 * man/man8/zfs-rollback.8), whoever took it: on a dataset sanoid snapshots there nearly always
 * are some. Refused unless --destroy-newer when there are, unless --change-shared when a mounted
 * dataset is shared with other guests, and always when one of them is held, cloned or being sent
 * (providers/guest/zfs-snapshot.ts keptBy, RENDER_RUNNING_SENDS): nothing is destroyed then.
 * It looks again once the guest is stopped, and stops (starting the guest again) when anything
 * appeared, went or became kept since the plan it printed.
 */
async function rollbackViaZfs(args: RollbackArgs, config: StackConfig, t: { api: PveApi; run: NodeRun; node: string; kind: "lxc" | "qemu"; vmid: number; label: string; datasets: string[] }, out: (l: string) => void): Promise<number> {
  const list = await listZfsSnapshots(t.run, t.datasets);
  const root = t.datasets[0]!;
  const names = (d: string) => (list.get(d) ?? []).filter((s) => !s.bookmark).map((s) => s.name);
  const onAll = names(root).filter((n) => t.datasets.every((d) => names(d).includes(n)));
  const name = args.snapshot ?? [...onAll].reverse().find((n) => n.startsWith(SNAPSHOT_PREFIX));
  if (!name || !onAll.includes(name)) {
    out(`${t.label}: ${name === undefined ? "no ZFS snapshot taken by Phoenix on all of its datasets" : `no ZFS snapshot ${JSON.stringify(name)} on all of its datasets`} (${t.datasets.join(", ")}); ${root} has: ${names(root).join(", ") || "none"}`);
    return 1;
  }
  const { newer } = newerThan(list, t.datasets, name);
  const shared = t.datasets.map((d) => ({ d, others: sharers(config, t.vmid, d) })).filter((x) => x.others.length > 0);
  const never = await neverDestroyed(t, newer);
  const status = (await t.api.guestStatus(t.node, t.kind, t.vmid)).status;
  const now = Date.now();
  out(`${t.label} on ${t.node} is ${status}. Rolling back its ZFS datasets to ${name}:`);
  out(`  1. ${status === "running" ? `stop ${t.label}` : `(${t.label} is already stopped)`}`);
  out(`  2. zfs rollback${newer.length > 0 ? " -r" : ""} ${t.datasets.map((d) => `${d}@${name}`).join(", ")}; what is written since is lost; the guest's configuration is not in a ZFS snapshot and stays as it is`);
  if (newer.length > 0) {
    out(`     it destroys these ${newer.length} newer snapshots and bookmarks:`);
    for (const s of newer) out(`       ${s.full} (${ownerOf(s.name)}'s, ${age(s.creation, now)}, taken ${when(s.creation)})${keptBy(s).length > 0 ? `: kept by ${keptBy(s).join(", ")}` : ""}`);
  }
  out(`  3. start ${t.label}`);
  const refusals = [
    ...(newer.length > 0 && !args.destroyNewer ? [`${newer.length} newer snapshots and bookmarks would be destroyed (listed above): run again with --destroy-newer to destroy them`] : []),
    ...shared.filter(() => !args.changeShared).map((x) => `${x.d} is also mounted by ${x.others.join(", ")}: rolling it back changes their data too; run again with --change-shared to proceed`),
  ];
  if (never.length > 0 || refusals.length > 0) {
    for (const r of [...never, ...refusals]) out(`refused: ${r}`);
    return 1;
  }
  if (newer.length > 0) out(`--destroy-newer: destroying ${newer.length} newer snapshots and bookmarks`);
  for (const x of shared) out(`--change-shared: ${x.d} is also mounted by ${x.others.join(", ")}`);
  if (status === "running") await t.api.setGuestState(t.node, t.kind, t.vmid, "stop");
  // Look again once the guest is stopped (which may take minutes): a snapshot taken since the plan
  // (sanoid's, every few minutes) would be destroyed by -r unlisted, or, without -r, fail the
  // rollback; a hold or send since would fail it part way. Then nothing is rolled back.
  const { newer: again, missing } = newerThan(await listZfsSnapshots(t.run, t.datasets), t.datasets, name);
  const changed = [
    ...missing.map((d) => `${d}@${name} is gone since the plan`),
    ...again.filter((s) => !newer.some((n) => n.full === s.full)).map((s) => `${s.full} appeared since the plan (${ownerOf(s.name)}'s): run again to see the new plan`),
    ...(await neverDestroyed(t, again)),
  ];
  if (changed.length > 0) {
    for (const r of changed) out(`refused: ${r}`);
    if (status === "running") await t.api.setGuestState(t.node, t.kind, t.vmid, "start");
    out(`nothing was rolled back; ${t.label} is ${(await t.api.guestStatus(t.node, t.kind, t.vmid)).status}.`);
    return 1;
  }
  try {
    await rollbackZfs(t.run, t.datasets, name, newer.length > 0);
  } catch (e) {
    // One `set -e` script rolls the datasets back in order (renderZfsRollback), so those before the
    // failing one are already at the snapshot. The guest stays stopped: started, it would run on a
    // mix of old and new data. Running the same command again finishes it (a dataset already at
    // the snapshot has nothing newer left to roll back).
    out(`the rollback stopped part-way: ${(e as Error).message}`);
    out(`  the datasets are rolled back in this order, and those before the one that failed are already at ${name}: ${t.datasets.join(", ")}`);
    out(`  ${t.label} stays stopped so that nothing runs on half-rolled-back data: run the same command again to finish, or start it as it is (${t.kind === "lxc" ? "pct start" : "qm start"} ${t.vmid})`);
    return 1;
  }
  await t.api.setGuestState(t.node, t.kind, t.vmid, "start");
  const after = (await t.api.guestStatus(t.node, t.kind, t.vmid)).status;
  out(`${t.label} rolled back to ${name} and ${after}.`);
  return after === "running" ? 0 : 1;
}

if (require.main === module) {
  const cwd = process.cwd();
  void runCli("rollback", (argv) => runRollback(argv, { load: (stack) => loadStack(cwd, stack), api: (stack, config) => stackApi(cwd, stack, config), node: (stack, config, node) => stackNode(cwd, stack, config, node), out: (l) => console.log(l) }));
}
