import * as pulumi from "@pulumi/pulumi";
import { runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, parseProbe } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { BY_ID, parsePoolStatus, renderPoolCreate, renderPoolDestroy, renderPoolProbe, renderPoolSet, reportedProperties, ZFS_NAME, ZFS_PROPERTY, type PoolTopology } from "./zfs.scripts";

export type VdevType = "single" | "stripe" | "mirror" | "raidz1" | "raidz2" | "raidz3";
const VDEV_TYPES: readonly VdevType[] = ["single", "stripe", "mirror", "raidz1", "raidz2", "raidz3"];

export interface ZfsPoolInputs {
  /** The Proxmox node: with the name, what identifies the pool. */
  node: string;
  connection: SshConnection;
  name: string;
  vdevType: VdevType;
  /** Whole disks by stable id (`/dev/disk/by-id/…`), never `/dev/sdX`; a set, in any order. */
  disks: string[];
  /** `zpool create -o` options, e.g. `{ ashift: "12", autotrim: "on" }`; later set with `zpool set` where ZFS allows. */
  poolOptions: Record<string, string>;
  /** `zpool create -O` properties of the root file system, e.g. `{ compression: "lz4" }`; later set with `zfs set`. */
  filesystemProperties: Record<string, string>;
  /** Whether creating the pool may wipe declared disks that hold signatures or partitions. Never used on an edit. */
  wipeDisksOnCreate: boolean;
  /** Whether deleting this resource (removed from the configuration, or `pulumi destroy`) destroys the pool. */
  allowDestroy: boolean;
}

export interface ZfsPoolOutputs extends ZfsPoolInputs {
  /** The actual topology differs from the declared one (refresh sets it; `up` cannot fix it in place). */
  topologyDrift: string;
  /** Each whole-disk /dev/disk/by-id link naming a member or declared disk, to its device: aliases of one disk are equal. */
  devices: Record<string, string>;
}

export interface ZfsPoolArgs {
  /** The Proxmox node's name. */
  node: pulumi.Input<string>;
  /** SSH access to the Proxmox node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** Pool name. */
  name: pulumi.Input<string>;
  /** Data vdev layout: single, stripe, mirror, raidz1-3; a change is refused at preview. */
  vdevType: pulumi.Input<VdevType>;
  /** The member disks as `/dev/disk/by-id/…` paths; order and alias do not matter, another set is refused at preview. */
  disks: pulumi.Input<pulumi.Input<string>[]>;
  /** Pool options given to `zpool create -o`, later applied with `zpool set` (ashift, altroot and readonly cannot change). */
  poolOptions?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Root file system properties given to `zpool create -O`, later applied with `zfs set`. */
  filesystemProperties?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Allow wiping non-empty disks when the pool is created. Default false. */
  wipeDisksOnCreate?: pulumi.Input<boolean>;
  /** Allow destroying the pool when it is deleted. Default false. */
  allowDestroy?: pulumi.Input<boolean>;
}

export const zfsPoolProvider = dynamicProvider<ZfsPoolInputs, ZfsPoolOutputs>("host/zfs-pool");

/** A ZFS pool created only on the declared, empty by-id disks. */
export class ZfsPool extends DynamicResource {
  declare readonly name: pulumi.Output<string>;
  declare readonly vdevType: pulumi.Output<VdevType>;
  declare readonly disks: pulumi.Output<string[]>;
  declare readonly topologyDrift: pulumi.Output<string>;

  constructor(name: string, args: ZfsPoolArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      zfsPoolProvider,
      name,
      { topologyDrift: undefined, devices: undefined, poolOptions: {}, filesystemProperties: {}, wipeDisksOnCreate: false, allowDestroy: false, ...args, connection: pulumi.secret(args.connection) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }),
      "phoenix/host",
      "ZfsPool",
    );
  }
}

/**
 * Pool properties that cannot change in place. zfs-2.3.4 lib/libzfs/libzfs_pool.c
 * (zpool_valid_proplist): altroot "can only be set during pool creation or import", readonly
 * "can only be set at import time". ashift is accepted by `zpool set`, but man/man7/zpoolprops.7
 * says changing it "will not modify any existing vdev": it is only the hint for later add, attach
 * and replace, so a new value would never describe the pool.
 */
const POOL_CREATE_ONLY = ["ashift", "altroot", "readonly"];
/**
 * Root file system properties fixed at creation. zfs-2.3.4 man/man7/zfsprops.7: casesensitivity,
 * normalization and utf8only "cannot be changed after the file system is created"; the encryption
 * suite neither, and keyformat/pbkdf2iters change only through `zfs change-key`.
 */
const FS_CREATE_ONLY = ["casesensitivity", "normalization", "utf8only", "encryption", "keyformat", "pbkdf2iters"];

const settable = (props: Record<string, string>, fixed: string[]) => Object.fromEntries(Object.entries(props).filter(([k]) => !fixed.includes(k)));

interface PoolProbe {
  present: boolean;
  topology?: PoolTopology;
  /** Every whole-disk /dev/disk/by-id link on the node, to the device it names. */
  links: Map<string, string>;
  disks: Map<string, { present: boolean; contents: string[] }>;
  poolProps: Record<string, string>;
  fsProps: Record<string, string>;
}

async function probe(conn: SshConnection, inputs: Pick<ZfsPoolInputs, "name" | "poolOptions" | "filesystemProperties">, disks: string[]): Promise<PoolProbe> {
  const props = { pool: Object.keys(settable(inputs.poolOptions, POOL_CREATE_ONLY)), fs: Object.keys(settable(inputs.filesystemProperties, FS_CREATE_ONLY)) };
  const out = parseProbe((await runScriptChecked(conn, `probe ZFS pool ${inputs.name}`, renderPoolProbe(inputs.name, disks, props))).stdout);
  const present = out.get("pool") === "present";
  const diskInfo = new Map<string, { present: boolean; contents: string[] }>();
  for (const line of out.all("disk")) {
    const [path, state] = line.split(" ");
    diskInfo.set(path!, { present: state === "present", contents: [] });
  }
  for (const key of ["sig", "part"]) {
    for (const line of out.all(key)) {
      const [path, what] = line.split(" ");
      diskInfo.get(path!)?.contents.push(key === "sig" ? `signature ${what}` : `partition ${what}`);
    }
  }
  const pairs = (key: string) => Object.fromEntries(out.all(key).map((l) => [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)]));
  return {
    present,
    topology: present ? parsePoolStatus(out.all("status")) : undefined,
    links: new Map(Object.entries(pairs("link"))),
    disks: diskInfo,
    poolProps: pairs("poolprop"),
    fsProps: pairs("fsprop"),
  };
}

/** The devices behind `paths`, sorted: by-id aliases of one disk resolve to the same device. */
function deviceSet(devices: Record<string, string> | undefined, paths: string[]): string[] {
  return paths.map((p) => devices?.[p] ?? p).sort();
}

function describeTopology(t: { vdevType: string; disks: string[] }): string {
  return `${t.vdevType} of ${[...t.disks].sort().join(", ")}`;
}

function drift(declared: Pick<ZfsPoolInputs, "vdevType" | "disks">, actual: PoolTopology, devices: Record<string, string>): string {
  const same = declared.vdevType === actual.vdevType && deviceSet(devices, declared.disks).join("\n") === deviceSet(devices, actual.disks).join("\n");
  return same ? "" : `declared ${describeTopology(declared)}, found ${describeTopology(actual)}`;
}

/** The pool as the node has it: topology (in the declared spelling when the devices agree) and the declared properties' values. */
function describe(inputs: ZfsPoolInputs, found: PoolProbe): ZfsPoolOutputs {
  const t = found.topology!;
  const wanted = new Set(deviceSet(Object.fromEntries(found.links), [...inputs.disks, ...t.disks]));
  const devices = Object.fromEntries([...found.links].filter(([, dev]) => wanted.has(dev)).sort(([a], [b]) => a.localeCompare(b)));
  const d = drift(inputs, t, devices);
  return {
    ...inputs,
    vdevType: d ? (t.vdevType as VdevType) : inputs.vdevType,
    disks: d ? t.disks : inputs.disks,
    poolOptions: { ...inputs.poolOptions, ...reportedProperties(settable(inputs.poolOptions, POOL_CREATE_ONLY), found.poolProps) },
    filesystemProperties: { ...inputs.filesystemProperties, ...reportedProperties(settable(inputs.filesystemProperties, FS_CREATE_ONLY), found.fsProps) },
    topologyDrift: d,
    devices,
  };
}

const known = (v: unknown) => !isUnknown(v) && !(Array.isArray(v) && v.some(isUnknown));

/**
 * What Phoenix will not do to an existing pool: each entry says what changed and how to do it by
 * hand. Unknown values (preview) are left for `up`, where diff runs again with them known.
 */
function refusals(olds: ZfsPoolOutputs, news: ZfsPoolInputs): string[] {
  const out: string[] = [];
  const pool = olds.name;
  if (known(news.name) && news.name !== olds.name) out.push(`the name changes to ${news.name}: Phoenix never renames a pool; by hand: zpool export ${pool} && zpool import ${pool} ${news.name}`);
  if (olds.node !== undefined && known(news.node) && news.node !== olds.node) out.push(`the node changes from ${olds.node} to ${news.node}: a pool on another node is another pool; declare it as a new pool`);
  if (known(news.vdevType) && known(news.disks)) {
    const same = news.vdevType === olds.vdevType && deviceSet(olds.devices, news.disks).join("\n") === deviceSet(olds.devices, olds.disks).join("\n");
    if (!same) {
      out.push(
        `the configuration declares ${describeTopology(news)} but the pool is ${describeTopology(olds)}. If the pool already is what the file declares (its disks under other /dev/disk/by-id names), run pulumi refresh. ` +
          `Phoenix never recreates a pool; change the layout on the node, then run pulumi refresh ` +
          `(zfs-2.3.4 zpool-attach(8), zpool-replace(8), zpool-add(8)): add a mirror side, or widen a raidz, with \`zpool attach ${pool} <member or raidz vdev> <new disk>\`; ` +
          `swap a disk with \`zpool replace ${pool} <old disk> <new disk>\`; add a vdev with \`zpool add ${pool} <layout> <disks>\`. ` +
          `Another raidz level needs a new pool: move the data off, destroy the pool yourself, and let Phoenix create it (wipeDisksOnCreate: true if the disks are not empty)`,
      );
    }
  }
  const fixed = (what: string, o: Record<string, string>, n: Record<string, string>, keys: string[]) => {
    if (!known(n)) return;
    for (const k of keys) if (known(n[k]) && (o[k] ?? "") !== (n[k] ?? "")) out.push(`${what} ${k} changes from ${o[k] ?? "(unset)"} to ${n[k] ?? "(unset)"}: ZFS fixes it when the pool is created; keep ${o[k] ? `${k}: ${o[k]}` : `${k} unset`}, or move the data to a new pool`);
  };
  fixed("pool option", olds.poolOptions ?? {}, news.poolOptions, POOL_CREATE_ONLY);
  fixed("root file system property", olds.filesystemProperties ?? {}, news.filesystemProperties, FS_CREATE_ONLY);
  return out;
}

function changes(olds: ZfsPoolOutputs, news: ZfsPoolInputs): string[] {
  return changedKeys(olds, news, ["connection", "wipeDisksOnCreate", "allowDestroy", "poolOptions", "filesystemProperties"]);
}

/** Changes that only Phoenix's record holds: how to reach the node, and what it may destroy later. */
const recordedOnly = (changed: string[]) => changed.every((k) => k === "connection" || k === "wipeDisksOnCreate" || k === "allowDestroy");

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`ZFS pool ${String(news.name)}`);
    c.node(news.node);
    c.connection(news.connection);
    c.string("name", news.name, ZFS_NAME, "a pool name");
    if (!isUnknown(news.vdevType)) c.require("vdevType", VDEV_TYPES.includes(news.vdevType as VdevType), `vdevType must be one of ${VDEV_TYPES.join(", ")}`);
    const disks = news.disks;
    if (!isUnknown(disks)) {
      const list = Array.isArray(disks) ? disks : [];
      c.require("disks", list.length > 0, "disks must list at least one /dev/disk/by-id/ path");
      list.forEach((d, i) => c.string(`disks[${i}]`, d, BY_ID, "a /dev/disk/by-id/ path (sdX names change between boots)"));
      c.require("disks", new Set(list).size === list.length, "disks lists a disk twice");
      const min: Partial<Record<VdevType, number>> = { single: 1, mirror: 2, raidz1: 3, raidz2: 4, raidz3: 5 };
      const need = min[news.vdevType as VdevType];
      if (need !== undefined && !isUnknown(news.vdevType)) {
        c.require("disks", news.vdevType === "single" ? list.length === 1 : list.length >= need, `${String(news.vdevType)} needs ${news.vdevType === "single" ? "exactly 1 disk" : `at least ${need} disks`}, got ${list.length}`);
      }
    }
    for (const key of ["poolOptions", "filesystemProperties"]) {
      const v = news[key] ?? {};
      if (isUnknown(v)) continue;
      for (const [k, val] of Object.entries(v as object)) c.require(`${key}.${k}`, ZFS_PROPERTY.test(k) && (isUnknown(val) || (typeof val === "string" && /^[^\s=]+$/.test(val))), `${key}.${k} must be a property name with a value without spaces`);
    }
    for (const key of ["wipeDisksOnCreate", "allowDestroy"]) {
      const v = news[key] ?? false;
      c.require(key, isUnknown(v) || typeof v === "boolean", `${key} must be true or false`);
    }
    return { inputs: { poolOptions: {}, filesystemProperties: {}, wipeDisksOnCreate: false, allowDestroy: false, ...news }, failures: c.failures };
  },

  /**
   * Never a replacement: a replaced pool is a destroyed pool. What ZFS changes in place is an
   * update; layout, disk set and creation-only properties fail the diff, so `preview` and `up`
   * stop before anything runs, with the way to do it by hand.
   */
  async diff(_id: string, olds: ZfsPoolOutputs, news: ZfsPoolInputs) {
    const refused = refusals(olds, news);
    if (refused.length) throw new Error(`ZFS pool ${olds.name}${olds.node ? ` on ${olds.node}` : ""}: refusing to change it:\n- ${refused.join("\n- ")}`);
    return diffResult(changes(olds, news), []);
  },

  async create(inputs: ZfsPoolInputs) {
    const found = await probe(inputs.connection, inputs, inputs.disks);
    if (found.present) {
      const adopted = describe(inputs, found);
      if (adopted.topologyDrift) throw new Error(`ZFS pool ${inputs.name} already exists with another layout (${adopted.topologyDrift}); declare the layout it has, or destroy the pool yourself`);
      return { id: inputs.name, outs: adopted };
    }
    const missing = inputs.disks.filter((d) => !found.disks.get(d)?.present);
    if (missing.length) throw new Error(`ZFS pool ${inputs.name}: disk(s) ${missing.join(", ")} not found on ${inputs.node}; check the names with ls -l /dev/disk/by-id/`);
    await runScriptChecked(inputs.connection, `create ZFS pool ${inputs.name}`, renderPoolCreate({ ...inputs, pool: inputs.name }));
    const after = await probe(inputs.connection, inputs, []);
    if (!after.present) throw new Error(`ZFS pool ${inputs.name}: zpool create succeeded but the pool is not listed; check the node`);
    return { id: inputs.name, outs: describe(inputs, after) };
  },

  async read(id: string, props: ZfsPoolOutputs) {
    const found = await probe(props.connection, props, []);
    if (!found.present) return { id: "", props: {} };
    return { id, props: describe(props, found) };
  },

  async update(id: string, olds: ZfsPoolOutputs, news: ZfsPoolInputs) {
    if (recordedOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    const before = await probe(news.connection, news, []);
    if (!before.present) throw new Error(`ZFS pool ${id} is gone from ${news.node}; run pulumi refresh`);
    const current = describe(news, before);
    const differing = (declared: Record<string, string>, fixed: string[], actual: Record<string, string>) => Object.fromEntries(Object.entries(settable(declared, fixed)).filter(([k, v]) => actual[k] !== v));
    const poolSet = differing(news.poolOptions, POOL_CREATE_ONLY, current.poolOptions);
    const fsSet = differing(news.filesystemProperties, FS_CREATE_ONLY, current.filesystemProperties);
    if (Object.keys(poolSet).length || Object.keys(fsSet).length) await runScriptChecked(news.connection, `set properties of ZFS pool ${id}`, renderPoolSet(id, poolSet, fsSet));
    const after = await probe(news.connection, news, []);
    if (!after.present) throw new Error(`ZFS pool ${id} disappeared from ${news.node} while its properties were being set; run pulumi refresh`);
    return { outs: describe(news, after) };
  },

  async delete(id: string, props: ZfsPoolOutputs) {
    if (props.allowDestroy !== true) {
      throw new Error(`refusing to destroy ZFS pool ${id} and every dataset in it. To really destroy it, set allowDestroy: true on this pool, run pulumi up, then remove it`);
    }
    await runScriptChecked(props.connection, `destroy ZFS pool ${id}`, renderPoolDestroy(id));
  },
};
