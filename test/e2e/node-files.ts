/**
 * One /etc/pve for the simulator and the sshd rig, as pmxcfs gives PVE's API and its `pct` on a
 * real node: the simulator's containers are written out as `etc/pve/lxc/<vmid>.conf` and
 * `run/pct/<vmid>.status` in the rig's sandbox after every API call, and what the rig's `pct`
 * changed there (`pct set`, the idmap lines Phoenix writes, start/stop) is read back in before
 * the next one.
 *
 * A container's root file system lives in the sandbox (`ct/<vmid>` and its entry in
 * state.json's `containers`): a linked clone starts with a copy of its template's, a destroyed
 * container's goes with it. What the simulator's snapshot, rollback, backup and restore tasks did
 * to a container's volumes (SimState.volumeEvents) is repeated on those files: a snapshot or a
 * backup is a copy of the root file system under `sim/`, a rollback or a restore copies one back.
 *
 * One sandbox may stand for several nodes of a cluster (world.ts): the containers of all of them
 * are mirrored, as pmxcfs shares /etc/pve cluster-wide, so a container that migrates between
 * them keeps its root file system and files. (On a real node /etc/pve/lxc is the local node's
 * nodes/<node>/lxc only; the rig's `pct` sees all of them.)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Sandbox } from "../rig/sandbox";
import type { Guest, SimState, VolumeEvent } from "../pve-sim/state";

/** Config keys PVE keeps in the file but the API does not list as plain keys. */
const RAW_KEY = /^lxc\./;

export function renderConf(config: Record<string, string>, raw: readonly string[]): string {
  const description = config.description === undefined ? [] : config.description.split("\n").map((l) => `#${l}`);
  const keys = Object.entries(config).filter(([k]) => k !== "description").map(([k, v]) => `${k}: ${v}`);
  return [...description, ...keys, ...raw].join("\n") + "\n";
}

export function parseConf(text: string): { config: Record<string, string>; raw: string[] } {
  const config: Record<string, string> = {};
  const raw: string[] = [];
  const description: string[] = [];
  const lines = text.split("\n");
  const cut = lines.findIndex((l) => l.startsWith("["));
  for (const line of cut < 0 ? lines : lines.slice(0, cut)) {
    if (line.startsWith("#")) description.push(line.slice(1));
    else if (RAW_KEY.test(line)) raw.push(line);
    else {
      const i = line.search(/[:=]/);
      if (i > 0) config[line.slice(0, i)] = line.slice(i + 1).trim();
    }
  }
  if (description.length > 0) config.description = description.join("\n");
  return { config, raw };
}

export interface NodeFiles {
  pull(state: SimState): void;
  push(state: SimState): void;
}

export function nodeFiles(sandbox: Sandbox, nodes: readonly string[]): NodeFiles {
  const confDir = path.join(sandbox.root, "etc/pve/lxc");
  const statusDir = path.join(sandbox.root, "run/pct");
  const conf = (vmid: number) => path.join(confDir, `${vmid}.conf`);
  const status = (vmid: number) => path.join(statusDir, `${vmid}.status`);
  /** What was last written per file: a file that still holds it has not been touched on the node. */
  const written = new Map<string, string>();
  /**
   * The simulator's value behind each file at the last sync (config as JSON, status). `push` writes
   * only what the API changed since: a `pct set` that lands while a request is being handled (after
   * its `pull`) is left for the next `pull`, not overwritten with the state read before it.
   */
  const synced = new Map<string, string>();
  /** The base volume each linked clone's root file system was copied from. */
  const seeded = new Map<number, string>();
  /** Container subvolumes already made datasets of the zfs stand-in. */
  const zfsKnown = new Set<string>();
  const read = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined);
  const write = (file: string, text: string) => {
    if (read(file) !== text) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeAtomically(file, text);
    }
    written.set(file, text);
  };
  const containers = (state: SimState): Guest[] => [...state.guests.values()].filter((g) => g.kind === "lxc" && nodes.includes(g.node));
  const volume = (state: SimState, volid: string | undefined) => (volid === undefined ? undefined : state.storages.get(volid.split(":")[0]!)?.volumes.get(volid));

  return {
    pull(state) {
      for (const g of containers(state)) {
        const text = read(conf(g.vmid));
        if (text !== undefined && text !== written.get(conf(g.vmid))) {
          g.config = parseConf(text).config;
          written.set(conf(g.vmid), text);
          synced.set(conf(g.vmid), JSON.stringify(g.config));
        }
        const st = read(status(g.vmid));
        if (st !== undefined && st !== written.get(status(g.vmid))) {
          g.status = st.trim() === "running" ? "running" : "stopped";
          written.set(status(g.vmid), st);
          synced.set(status(g.vmid), g.status);
        }
      }
    },
    push(state) {
      const live = new Set<number>();
      for (const g of containers(state)) {
        live.add(g.vmid);
        // A linked clone's root file system appears when its clone task has allocated it: it starts as a
        // copy of its template's, and so do the raw lines of its file.
        // (Its own volume, once allocated: templating renames it but keeps the base it came from.)
        const rootfs = volume(state, /^([^,]+)/.exec(g.config.rootfs ?? "")?.[1]);
        let from: number | undefined;
        if (rootfs?.vmid === g.vmid && rootfs.parent !== undefined && seeded.get(g.vmid) !== rootfs.parent) {
          seeded.set(g.vmid, rootfs.parent);
          from = volume(state, rootfs.parent)?.vmid;
        }
        const config = JSON.stringify(g.config);
        if (from !== undefined || synced.get(conf(g.vmid)) !== config) {
          const raw = parseConf(read(conf(from ?? g.vmid)) ?? "").raw;
          write(conf(g.vmid), renderConf(g.config, raw));
          synced.set(conf(g.vmid), config);
        }
        if (synced.get(status(g.vmid)) !== g.status) {
          write(status(g.vmid), `${g.status}\n`);
          synced.set(status(g.vmid), g.status);
        }
        if (from !== undefined) {
          const source = path.join(sandbox.root, "ct", String(from));
          if (fs.existsSync(source)) fs.cpSync(source, path.join(sandbox.root, "ct", String(g.vmid)), { recursive: true });
          sandbox.update((s) => {
            const base = s.containers[String(from)];
            if (base) s.containers[String(g.vmid)] = structuredClone(base);
          });
        }
      }
      // A container's subvolume on a zfspool storage is a dataset of the node's zfs stand-in, mounted at its
      // root file system, so a ZFS snapshot of it (providers/guest/zfs-snapshot.ts) acts on its files.
      const subvols = containers(state).flatMap((g) => {
        const id = /^([^:,]+):(?:(?:base|basevol)-\d+-[^/,]+\/)?((?:subvol|basevol)-\d+-[^/,]+)/.exec(g.config.rootfs ?? "");
        const pool = id && state.storages.get(id[1]!)?.type === "zfspool" ? state.storages.get(id[1]!)!.config.pool : undefined;
        return pool ? [[`${pool}/${id![2]}`, g.vmid] as const] : [];
      });
      if (subvols.some(([ds]) => !zfsKnown.has(ds))) {
        sandbox.update((s) => {
          for (const [ds, vmid] of subvols) s.datasets[ds] ??= { mountpoint: `/ct/${vmid}` };
        });
        for (const [ds] of subvols) zfsKnown.add(ds);
      }
      for (const event of state.volumeEvents.splice(0)) mirrorVolumeEvent(sandbox, state, event);
      for (const file of fs.existsSync(confDir) ? fs.readdirSync(confDir) : []) {
        const vmid = Number(file.replace(/\.conf$/, ""));
        if (live.has(vmid)) continue;
        seeded.delete(vmid);
        for (const f of [conf(vmid), status(vmid)]) {
          fs.rmSync(f, { force: true });
          written.delete(f);
          synced.delete(f);
        }
        fs.rmSync(path.join(sandbox.root, "ct", String(vmid)), { recursive: true, force: true });
        fs.rmSync(path.join(sandbox.root, "sim/snapshots", String(vmid)), { recursive: true, force: true });
        sandbox.update((s) => {
          delete s.containers[String(vmid)];
          for (const [ds, props] of Object.entries(s.datasets)) {
            if (props.mountpoint !== `/ct/${vmid}`) continue;
            delete s.datasets[ds];
            zfsKnown.delete(ds);
          }
        });
      }
    },
  };
}

/** A container's root file system and its stand-in tools' state (state.json), copied to `to` (`<to>/root`, `<to>/state.json`). */
function saveRoot(sandbox: Sandbox, vmid: number, to: string): void {
  const from = path.join(sandbox.root, "ct", String(vmid));
  fs.rmSync(to, { recursive: true, force: true });
  fs.mkdirSync(to, { recursive: true });
  if (fs.existsSync(from)) fs.cpSync(from, path.join(to, "root"), { recursive: true });
  fs.writeFileSync(path.join(to, "state.json"), JSON.stringify(sandbox.state().containers[String(vmid)] ?? null));
}

/** The reverse of saveRoot: the container's root file system and tool state become what was saved. */
function loadRoot(sandbox: Sandbox, vmid: number, from: string): void {
  if (!fs.existsSync(from)) throw new Error(`node-files: nothing saved at ${from} for CT ${vmid}`);
  const to = path.join(sandbox.root, "ct", String(vmid));
  fs.rmSync(to, { recursive: true, force: true });
  if (fs.existsSync(path.join(from, "root"))) fs.cpSync(path.join(from, "root"), to, { recursive: true });
  const saved = JSON.parse(fs.readFileSync(path.join(from, "state.json"), "utf8")) as SandboxContainer | null;
  sandbox.update((s) => {
    if (saved) s.containers[String(vmid)] = saved;
    else delete s.containers[String(vmid)];
  });
}

type SandboxContainer = ReturnType<Sandbox["state"]>["containers"][string];

function mirrorVolumeEvent(sandbox: Sandbox, state: SimState, e: VolumeEvent): void {
  const guest = state.guests.get(e.vmid);
  if (guest && guest.kind !== "lxc") return;
  const snapshotDir = (name: string) => path.join(sandbox.root, "sim/snapshots", String(e.vmid), name);
  const backupDir = (volid: string) => path.join(sandbox.root, "sim/backups", volid.replace(/[^A-Za-z0-9._-]/g, "_"));
  switch (e.kind) {
    case "snapshot":
      return saveRoot(sandbox, e.vmid, snapshotDir(e.snapname));
    case "delsnapshot":
      return fs.rmSync(snapshotDir(e.snapname), { recursive: true, force: true });
    case "rollback":
      return loadRoot(sandbox, e.vmid, snapshotDir(e.snapname));
    case "backup":
      return saveRoot(sandbox, e.vmid, backupDir(e.volid));
    case "restore":
      return loadRoot(sandbox, e.vmid, backupDir(e.volid));
  }
}

/**
 * The node's stand-ins (pct, qm) read these files from other processes while the simulator's
 * state is pushed on every change: a truncate-then-write would let them read an empty file (and
 * answer "VM … is not running" for a running VM). Write only a changed file, by rename.
 */
export function writeAtomically(file: string, content: string): void {
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === content) return;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}
