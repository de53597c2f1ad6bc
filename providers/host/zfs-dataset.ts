import * as pulumi from "@pulumi/pulumi";
import { runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { renderDatasetCreate, renderDatasetDestroy, renderDatasetProbe, renderDatasetSet, reportedProperties, ZFS_NAME, ZFS_PROPERTY } from "./zfs.scripts";

export interface ZfsDatasetInputs {
  /** The Proxmox node: with pool and name, what identifies the dataset. */
  node: string;
  connection: SshConnection;
  pool: string;
  /** Path below the pool, e.g. `vm-disks` or `shared/iso`. */
  name: string;
  /** Only these properties are converged; others are left as they are on the host. */
  properties: Record<string, string>;
  /** Whether deleting this resource may destroy the dataset and the data in it. */
  allowDestroy: boolean;
}

export interface ZfsDatasetOutputs extends ZfsDatasetInputs {
  /** `<pool>/<name>`, also the resource id. */
  dataset: string;
}

export interface ZfsDatasetArgs {
  /** The Proxmox node's name; another node is another dataset. */
  node: pulumi.Input<string>;
  /** SSH access to the Proxmox node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** The pool the dataset lives in; changing it replaces the dataset. */
  pool: pulumi.Input<string>;
  /** The dataset path below the pool; changing it replaces the dataset. */
  name: pulumi.Input<string>;
  /** ZFS properties to converge (e.g. `{ recordsize: "128K", quota: "800G" }`); changed in place. */
  properties?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Allow `pulumi destroy` or a replacement to destroy the dataset and its data. Default false. */
  allowDestroy?: pulumi.Input<boolean>;
}

export const zfsDatasetProvider = dynamicProvider<ZfsDatasetInputs, ZfsDatasetOutputs>("host/zfs-dataset");

/** A ZFS file system on the node, converged to the declared properties only. */
export class ZfsDataset extends DynamicResource {
  declare readonly dataset: pulumi.Output<string>;
  declare readonly properties: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: ZfsDatasetArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      zfsDatasetProvider,
      name,
      { dataset: undefined, ...args, properties: args.properties ?? {}, allowDestroy: args.allowDestroy ?? false, connection: pulumi.secret(args.connection) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }),
      "phoenix/host",
      "ZfsDataset",
    );
  }
}

async function probe(conn: SshConnection, dataset: string, properties: string[]): Promise<{ present: boolean; props: Record<string, string> }> {
  const out = parseProbe((await runScriptChecked(conn, `probe ZFS dataset ${dataset}`, renderDatasetProbe(dataset, properties))).stdout);
  const props = Object.fromEntries(out.all("prop").map((l) => [l.slice(0, l.indexOf(" ")), l.slice(l.indexOf(" ") + 1)]));
  return { present: out.get("state") === "present", props };
}

async function outputsFromHost(inputs: ZfsDatasetInputs, dataset: string): Promise<ZfsDatasetOutputs | undefined> {
  const found = await probe(inputs.connection, dataset, Object.keys(inputs.properties));
  if (!found.present) return undefined;
  if (found.props.type !== "filesystem") throw new Error(`ZFS dataset ${dataset} is a ${found.props.type}, not a filesystem; rename it or choose another name`);
  return { ...inputs, dataset, properties: reportedProperties(inputs.properties, found.props) };
}

function differing(declared: Record<string, string>, reported: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(declared).filter(([k, v]) => reported[k] !== v));
}

function changes(olds: ZfsDatasetOutputs, news: ZfsDatasetInputs): string[] {
  return changedKeys(olds, news, ["connection", "properties", "allowDestroy"]);
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`ZFS dataset ${String(news.pool)}/${String(news.name)}`);
    c.node(news.node);
    c.connection(news.connection);
    c.string("pool", news.pool, ZFS_NAME, "a pool name");
    c.string("name", news.name, /^[A-Za-z0-9][A-Za-z0-9_.:-]*(\/[A-Za-z0-9][A-Za-z0-9_.:-]*)*$/, "a dataset path below the pool, without a leading slash");
    const props = news.properties ?? {};
    if (!isUnknown(props)) {
      c.require("properties", typeof props === "object" && props !== null && !Array.isArray(props), "properties must map property names to string values");
      for (const [k, v] of Object.entries(props as object)) {
        c.require(`properties.${k}`, ZFS_PROPERTY.test(k), `"${k}" is not a ZFS property name`);
        c.require(`properties.${k}`, isUnknown(v) || (typeof v === "string" && v !== "" && !/[\s=]/.test(v)), `properties.${k} must be a non-empty value without spaces or "="`);
        c.require(`properties.${k}`, k !== "mountpoint" || isUnknown(v) || (typeof v === "string" && v.startsWith("/")) || v === "none" || v === "legacy", "mountpoint must be an absolute path, none or legacy");
      }
    }
    const allowDestroy = news.allowDestroy ?? false;
    c.require("allowDestroy", isUnknown(allowDestroy) || typeof allowDestroy === "boolean", "allowDestroy must be true or false");
    return { inputs: { ...news, properties: props, allowDestroy }, failures: c.failures };
  },

  async diff(_id: string, olds: ZfsDatasetOutputs, news: ZfsDatasetInputs) {
    const replaces = [...changedKeys(olds, news, ["pool", "name"]), ...nodeReplaces(olds, news)];
    return diffResult(changes(olds, news), replaces);
  },

  async create(inputs: ZfsDatasetInputs) {
    const dataset = `${inputs.pool}/${inputs.name}`;
    const existing = await outputsFromHost(inputs, dataset);
    if (existing) {
      const wrong = differing(inputs.properties, existing.properties);
      if (Object.keys(wrong).length === 0) return { id: dataset, outs: existing };
      const list = Object.entries(wrong).map(([k, v]) => `${k}=${existing.properties[k]} (declared ${v})`).join(", ");
      throw new Error(
        `ZFS dataset ${dataset} already exists with ${list}. Phoenix adopts an existing dataset only when it matches: ` +
          `either declare the values it has, or run \`zfs set ${Object.entries(wrong).map(([k, v]) => `${k}=${v}`).join(" ")} ${dataset}\` on the node and retry`,
      );
    }
    await runScriptChecked(inputs.connection, `create ZFS dataset ${dataset}`, renderDatasetCreate(dataset, inputs.properties));
    const created = await outputsFromHost(inputs, dataset);
    if (!created) throw new Error(`ZFS dataset ${dataset}: zfs create succeeded but the dataset is not listed; check the node`);
    return { id: dataset, outs: created };
  },

  async read(id: string, props: ZfsDatasetOutputs) {
    const current = await outputsFromHost(props, id);
    return current ? { id, props: current } : { id: "", props: {} };
  },

  async update(id: string, olds: ZfsDatasetOutputs, news: ZfsDatasetInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    const before = await outputsFromHost(news, id);
    if (!before) throw new Error(`ZFS dataset ${id} no longer exists on ${news.connection.host}; run \`pulumi refresh\` so Phoenix recreates it`);
    const wrong = differing(news.properties, before.properties);
    if (Object.keys(wrong).length > 0) await runScriptChecked(news.connection, `set properties on ZFS dataset ${id}`, renderDatasetSet(id, wrong));
    const after = await outputsFromHost(news, id);
    if (!after) throw new Error(`ZFS dataset ${id} disappeared from ${news.connection.host} while its properties were being set; run pulumi refresh`);
    return { outs: after };
  },

  async delete(id: string, props: ZfsDatasetOutputs) {
    if (props.allowDestroy !== true) {
      throw new Error(
        `refusing to destroy ZFS dataset ${id}: it may hold data. To really destroy it, set allowDestroy: true on this dataset, run pulumi up, then remove it from the configuration`,
      );
    }
    await runScriptChecked(props.connection, `destroy ZFS dataset ${id}`, renderDatasetDestroy(id));
  },
};
