import * as pulumi from "@pulumi/pulumi";
import { runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, connectionReplaces, diffResult, isUnknown, parseProbe } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { BY_ID, parsePoolStatus, renderPoolCreate, renderPoolDestroy, renderPoolProbe, ZFS_NAME, ZFS_PROPERTY } from "./zfs.scripts";

export type VdevType = "single" | "stripe" | "mirror" | "raidz1" | "raidz2" | "raidz3";
const VDEV_TYPES: readonly VdevType[] = ["single", "stripe", "mirror", "raidz1", "raidz2", "raidz3"];

export interface ZfsPoolInputs {
  connection: SshConnection;
  name: string;
  vdevType: VdevType;
  /** Whole disks by stable id (`/dev/disk/by-id/…`), never `/dev/sdX`. */
  disks: string[];
  /** `zpool create -o` options, e.g. `{ ashift: "12", autotrim: "on" }`. */
  poolOptions: Record<string, string>;
  /** `zpool create -O` properties of the root file system, e.g. `{ compression: "lz4" }`. */
  filesystemProperties: Record<string, string>;
  /** Whether Phoenix may wipe non-empty disks to create the pool, and destroy the pool on delete. */
  allowDestroy: boolean;
}

export interface ZfsPoolOutputs extends ZfsPoolInputs {
  /** The actual topology differs from the declared one (refresh sets it; `up` cannot fix it in place). */
  topologyDrift: string;
}

export interface ZfsPoolArgs {
  /** SSH access to the Proxmox node. */
  connection: pulumi.Input<SshConnection>;
  /** Pool name; changing it replaces the pool. */
  name: pulumi.Input<string>;
  /** Data vdev layout: single, stripe, mirror, raidz1-3. */
  vdevType: pulumi.Input<VdevType>;
  /** The member disks as `/dev/disk/by-id/…` paths; they must be empty unless allowDestroy. */
  disks: pulumi.Input<pulumi.Input<string>[]>;
  /** Pool options given to `zpool create -o` (creation only). */
  poolOptions?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Root file system properties given to `zpool create -O` (creation only). */
  filesystemProperties?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Allow wiping non-empty disks on create and destroying the pool on delete. Default false. */
  allowDestroy?: pulumi.Input<boolean>;
}

export const zfsPoolProvider = dynamicProvider<ZfsPoolInputs, ZfsPoolOutputs>("host/zfs-pool");

/** A ZFS pool created only on the declared, empty by-id disks. */
export class ZfsPool extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  declare readonly vdevType: pulumi.Output<VdevType>;
  declare readonly disks: pulumi.Output<string[]>;
  declare readonly topologyDrift: pulumi.Output<string>;

  constructor(name: string, args: ZfsPoolArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      zfsPoolProvider,
      name,
      { topologyDrift: undefined, poolOptions: {}, filesystemProperties: {}, allowDestroy: false, ...args, connection: pulumi.secret(args.connection) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }),
      "phoenix/host",
      "ZfsPool",
    );
  }
}

interface PoolProbe {
  present: boolean;
  topology?: { vdevType: string; disks: string[] };
  disks: Map<string, { present: boolean; contents: string[] }>;
}

async function probe(conn: SshConnection, pool: string, disks: string[]): Promise<PoolProbe> {
  const out = parseProbe((await runScriptChecked(conn, `probe ZFS pool ${pool}`, renderPoolProbe(pool, disks))).stdout);
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
  return { present, topology: present ? parsePoolStatus(out.all("status")) : undefined, disks: diskInfo };
}

function describeTopology(t: { vdevType: string; disks: string[] }): string {
  return `${t.vdevType} of ${[...t.disks].sort().join(", ")}`;
}

function drift(declared: ZfsPoolInputs, actual: { vdevType: string; disks: string[] }): string {
  const want = { vdevType: declared.vdevType, disks: [...declared.disks].sort() };
  return describeTopology(want) === describeTopology(actual) ? "" : `declared ${describeTopology(want)}, found ${describeTopology(actual)}`;
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`ZFS pool ${String(news.name)}`);
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
    return { inputs: { poolOptions: {}, filesystemProperties: {}, allowDestroy: false, ...news }, failures: c.failures };
  },

  async diff(_id: string, olds: ZfsPoolOutputs, news: ZfsPoolInputs) {
    // Topology and creation options cannot change in place; a replacement goes through delete,
    // which refuses unless allowDestroy, so a typo in disks never wipes a pool.
    const replaces = [...changedKeys(olds, news, ["name", "vdevType", "disks", "poolOptions", "filesystemProperties"]), ...connectionReplaces(olds, news)];
    const changed = changedKeys(olds, news, ["connection", "allowDestroy"]);
    if (olds.topologyDrift) changed.push("topologyDrift");
    return diffResult(changed, replaces, true);
  },

  async create(inputs: ZfsPoolInputs) {
    const found = await probe(inputs.connection, inputs.name, inputs.disks);
    if (found.present) {
      const d = drift(inputs, found.topology!);
      if (d) throw new Error(`ZFS pool ${inputs.name} already exists with another layout (${d}); declare the layout it has, or destroy the pool yourself`);
      return { id: inputs.name, outs: { ...inputs, topologyDrift: "" } };
    }
    const missing = inputs.disks.filter((d) => !found.disks.get(d)?.present);
    if (missing.length) throw new Error(`ZFS pool ${inputs.name}: disk(s) ${missing.join(", ")} not found on ${inputs.connection.host}; check the names with ls -l /dev/disk/by-id/`);
    await runScriptChecked(inputs.connection, `create ZFS pool ${inputs.name}`, renderPoolCreate({ ...inputs, pool: inputs.name }));
    const after = await probe(inputs.connection, inputs.name, []);
    if (!after.present) throw new Error(`ZFS pool ${inputs.name}: zpool create succeeded but the pool is not listed; check the node`);
    return { id: inputs.name, outs: { ...inputs, topologyDrift: drift(inputs, after.topology!) } };
  },

  async read(id: string, props: ZfsPoolOutputs) {
    const found = await probe(props.connection, id, []);
    if (!found.present) return { id: "", props: {} };
    const t = found.topology!;
    return { id, props: { ...props, vdevType: t.vdevType as VdevType, disks: sameDisks(props.disks, t.disks) ? props.disks : t.disks, topologyDrift: drift(props, t) } };
  },

  async update(id: string, _olds: ZfsPoolOutputs, news: ZfsPoolInputs) {
    const found = await probe(news.connection, id, []);
    if (!found.present) throw new Error(`ZFS pool ${id} is gone from ${news.connection.host}; run pulumi refresh`);
    return { outs: { ...news, topologyDrift: drift(news, found.topology!) } };
  },

  async delete(id: string, props: ZfsPoolOutputs) {
    if (props.allowDestroy !== true) {
      throw new Error(`refusing to destroy ZFS pool ${id} and every dataset in it. To really destroy it, set allowDestroy: true on this pool, run pulumi up, then remove it`);
    }
    await runScriptChecked(props.connection, `destroy ZFS pool ${id}`, renderPoolDestroy(id));
  },
};

function sameDisks(a: string[], b: string[]): boolean {
  return [...a].sort().join("\n") === [...b].sort().join("\n");
}
