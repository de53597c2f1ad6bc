import * as pulumi from "@pulumi/pulumi";
import { parseFiles, runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { mergeModprobeOption, readModprobeOption, renderArcApply, renderArcProbe, ZFS_MODPROBE_CONF } from "./zfs.scripts";

/** Below this OpenZFS ignores zfs_arc_max and keeps its default. */
const MIN_ARC_BYTES = 64 * 2 ** 20;

export interface ZfsArcLimitInputs {
  /** The Proxmox node: what identifies this resource. */
  node: string;
  connection: SshConnection;
  /** Upper bound of the ARC in bytes. */
  maxBytes: number;
}

export interface ZfsArcLimitOutputs extends ZfsArcLimitInputs {
  /** What `/etc/modprobe.d/zfs.conf` sets (0 when it sets nothing). */
  persistedBytes: number;
  /** What the running module uses (0 = the module's default). */
  runtimeBytes: number;
}

export interface ZfsArcLimitArgs {
  /** The Proxmox node's name; another node is another resource. */
  node: pulumi.Input<string>;
  /** SSH access to the Proxmox node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** ARC upper bound in bytes (at least 64 MiB), persisted and applied at runtime. */
  maxBytes: pulumi.Input<number>;
}

export const zfsArcLimitProvider = dynamicProvider<ZfsArcLimitInputs, ZfsArcLimitOutputs>("host/zfs-arc");

/** The ZFS ARC size limit: `options zfs zfs_arc_max=` merged into zfs.conf, and applied now. */
export class ZfsArcLimit extends pulumi.dynamic.Resource {
  declare readonly persistedBytes: pulumi.Output<number>;
  declare readonly runtimeBytes: pulumi.Output<number>;

  constructor(name: string, args: ZfsArcLimitArgs, opts?: pulumi.CustomResourceOptions) {
    super(zfsArcLimitProvider, name, { persistedBytes: undefined, runtimeBytes: undefined, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "ZfsArcLimit");
  }
}

interface ArcState {
  conf: string;
  persistedBytes: number;
  runtimeBytes: number;
  zfsRoot: boolean;
}

async function probe(conn: SshConnection): Promise<ArcState> {
  const out = parseProbe((await runScriptChecked(conn, "read the ZFS ARC limit", renderArcProbe())).stdout);
  const conf = parseFiles(out.all("file")).get(ZFS_MODPROBE_CONF) ?? "";
  return {
    conf,
    persistedBytes: Number(readModprobeOption(conf, "zfs", "zfs_arc_max") ?? 0),
    runtimeBytes: Number(out.get("runtime") ?? 0),
    zfsRoot: out.get("zfsroot") === "yes",
  };
}

async function converge(conn: SshConnection, maxBytes: number | undefined): Promise<ArcState> {
  const before = await probe(conn);
  const conf = mergeModprobeOption(before.conf, "zfs", "zfs_arc_max", maxBytes === undefined ? undefined : String(maxBytes));
  const runtime = maxBytes ?? 0;
  if (conf !== before.conf || runtime !== before.runtimeBytes) {
    await runScriptChecked(conn, "set the ZFS ARC limit", renderArcApply(conf, runtime, before.zfsRoot));
  }
  return probe(conn);
}

function changes(olds: ZfsArcLimitOutputs, news: ZfsArcLimitInputs): string[] {
  const changed = changedKeys(olds, news, ["connection", "maxBytes"]);
  // Refresh records what the node really has; either drifting from the declared value means work.
  if (olds.persistedBytes !== news.maxBytes || olds.runtimeBytes !== news.maxBytes) changed.push("persistedBytes");
  return changed;
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker("ZFS ARC limit");
    c.node(news.node);
    c.connection(news.connection);
    if (!isUnknown(news.maxBytes)) {
      c.require("maxBytes", Number.isSafeInteger(news.maxBytes) && (news.maxBytes as number) >= MIN_ARC_BYTES, `maxBytes must be a whole number of bytes of at least ${MIN_ARC_BYTES} (64 MiB), got ${JSON.stringify(news.maxBytes)}`);
    }
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: ZfsArcLimitOutputs, news: ZfsArcLimitInputs) {
    return diffResult(changes(olds, news), nodeReplaces(olds, news));
  },

  async create(inputs: ZfsArcLimitInputs) {
    const s = await converge(inputs.connection, inputs.maxBytes);
    return { id: `zfs-arc-max-${inputs.node}`, outs: { ...inputs, persistedBytes: s.persistedBytes, runtimeBytes: s.runtimeBytes } };
  },

  async read(id: string, props: ZfsArcLimitOutputs) {
    const s = await probe(props.connection);
    return { id, props: { ...props, persistedBytes: s.persistedBytes, runtimeBytes: s.runtimeBytes } };
  },

  async update(_id: string, olds: ZfsArcLimitOutputs, news: ZfsArcLimitInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    const s = await converge(news.connection, news.maxBytes);
    return { outs: { ...news, persistedBytes: s.persistedBytes, runtimeBytes: s.runtimeBytes } };
  },

  async delete(_id: string, props: ZfsArcLimitOutputs) {
    // Back to the module default: the option leaves zfs.conf and 0 tells the module to use its own.
    await converge(props.connection, undefined);
  },
};
