import * as pulumi from "@pulumi/pulumi";
import { parseFiles, runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { mergeModprobeOption, readModprobeOption, renderArcApply, renderArcProbe, ZFS_MODPROBE_CONF } from "./zfs.scripts";

/** Below this OpenZFS ignores zfs_arc_max and keeps its default (MIN_ARC_MAX = DMU_MAX_ACCESS, 64 MiB). */
const MIN_ARC_BYTES = 64 * 2 ** 20;
/** The floor of arc_c_min: 2 << SPA_MAXBLOCKSHIFT (openzfs zfs-2.3.4 module/zfs/arc.c). */
const ARC_MIN_FLOOR = 2 * 2 ** 24;

/**
 * The zfs_arc_min Phoenix has to set with `maxBytes`, or undefined when none is needed.
 * openzfs zfs-2.3.4 module/zfs/arc.c: arc_set_limits defaults arc_c_min to MAX(allmem / 32,
 * 32 MiB), and arc_tuning_update ignores a zfs_arc_max that is not above arc_c_min (pve-docs
 * local-zfs.adoc: "zfs_arc_max will be ignored unless you also set zfs_arc_min to at most
 * zfs_arc_max - 1"). The value is what arc_init picks when zfs_arc_max is set at module load:
 * MAX(zfs_arc_max / 2, 32 MiB), so the ARC can still shrink under memory pressure.
 * A zfs_arc_min already in zfs.conf is kept when it is below the maximum; `owned` is the value
 * Phoenix set before, dropped again when no longer needed.
 */
export function arcMinFor(maxBytes: number, memBytes: number, confMin: number | undefined, owned: number): number | undefined {
  const min = Math.max(Math.floor(maxBytes / 2), ARC_MIN_FLOOR);
  const existing = confMin !== undefined && confMin !== owned ? confMin : undefined;
  if (existing !== undefined) return existing >= maxBytes ? min : undefined;
  return maxBytes <= Math.max(Math.floor(memBytes / 32), ARC_MIN_FLOOR) ? min : undefined;
}

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
  /** The zfs_arc_min Phoenix set so that the maximum is not ignored (0 when none was needed). */
  minBytes: number;
  /** zfs_arc_min of the running module. */
  runtimeMinBytes: number;
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

/** The ZFS ARC size limit: `options zfs zfs_arc_max=` (and `zfs_arc_min=` when the default minimum would void it) merged into zfs.conf, and applied now. */
export class ZfsArcLimit extends DynamicResource {
  declare readonly persistedBytes: pulumi.Output<number>;
  declare readonly runtimeBytes: pulumi.Output<number>;

  constructor(name: string, args: ZfsArcLimitArgs, opts?: pulumi.CustomResourceOptions) {
    super(zfsArcLimitProvider, name, { persistedBytes: undefined, runtimeBytes: undefined, minBytes: undefined, runtimeMinBytes: undefined, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "ZfsArcLimit");
  }
}

interface ArcState {
  conf: string;
  persistedBytes: number;
  persistedMinBytes: number | undefined;
  runtimeBytes: number;
  runtimeMinBytes: number;
  memBytes: number;
  zfsRoot: boolean;
}

const optionalNumber = (v: string | undefined) => (v === undefined ? undefined : Number(v));

async function probe(conn: SshConnection): Promise<ArcState> {
  const out = parseProbe((await runScriptChecked(conn, "read the ZFS ARC limit", renderArcProbe())).stdout);
  const conf = parseFiles(out.all("file")).get(ZFS_MODPROBE_CONF) ?? "";
  return {
    conf,
    persistedBytes: Number(readModprobeOption(conf, "zfs", "zfs_arc_max") ?? 0),
    persistedMinBytes: optionalNumber(readModprobeOption(conf, "zfs", "zfs_arc_min")),
    runtimeBytes: Number(out.get("runtime") ?? 0),
    runtimeMinBytes: Number(out.get("runtimemin") ?? 0),
    // MemTotal is the kernel's totalram_pages, which is what arc_all_memory counts (openzfs module/os/linux/zfs/arc_os.c).
    memBytes: Number(out.get("memkb") ?? 0) * 1024,
    zfsRoot: out.get("zfsroot") === "yes",
  };
}

async function converge(conn: SshConnection, maxBytes: number | undefined, ownedMin: number): Promise<ArcState & { minBytes: number }> {
  const before = await probe(conn);
  // arc_tuning_update ignores a zfs_arc_max not below all memory (openzfs zfs-2.3.4 module/zfs/arc.c).
  if (maxBytes !== undefined && maxBytes >= before.memBytes) {
    throw new Error(`ZFS ARC limit on ${conn.host}: maxBytes ${maxBytes} is not below the node's memory (${before.memBytes} bytes); ZFS would ignore it`);
  }
  const min = maxBytes === undefined ? undefined : arcMinFor(maxBytes, before.memBytes, before.persistedMinBytes, ownedMin);
  let conf = mergeModprobeOption(before.conf, "zfs", "zfs_arc_max", maxBytes === undefined ? undefined : String(maxBytes));
  // Phoenix's own zfs_arc_min goes when no longer needed; one set by hand below the maximum stays.
  if (min !== undefined) conf = mergeModprobeOption(conf, "zfs", "zfs_arc_min", String(min));
  else if (ownedMin > 0 && before.persistedMinBytes === ownedMin) conf = mergeModprobeOption(conf, "zfs", "zfs_arc_min", undefined);
  const runtime = { maxBytes: maxBytes ?? 0, minBytes: min ?? 0 };
  if (conf !== before.conf || runtime.maxBytes !== before.runtimeBytes || (min !== undefined && min !== before.runtimeMinBytes)) {
    await runScriptChecked(conn, "set the ZFS ARC limit", renderArcApply(conf, runtime, before.zfsRoot));
  }
  return { ...(await probe(conn)), minBytes: min ?? 0 };
}

function recorded(s: ArcState) {
  return { persistedBytes: s.persistedBytes, runtimeBytes: s.runtimeBytes, runtimeMinBytes: s.runtimeMinBytes };
}

function changes(olds: ZfsArcLimitOutputs, news: ZfsArcLimitInputs): string[] {
  const changed = changedKeys(olds, news, ["connection", "maxBytes"]);
  // Refresh records what the node really has; either drifting from the declared value means work.
  if (olds.persistedBytes !== news.maxBytes || olds.runtimeBytes !== news.maxBytes) changed.push("persistedBytes");
  if (olds.minBytes > 0 && olds.runtimeMinBytes !== olds.minBytes) changed.push("runtimeMinBytes");
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
    const s = await converge(inputs.connection, inputs.maxBytes, 0);
    return { id: `zfs-arc-max-${inputs.node}`, outs: { ...inputs, ...recorded(s), minBytes: s.minBytes } };
  },

  async read(id: string, props: ZfsArcLimitOutputs) {
    const s = await probe(props.connection);
    return { id, props: { ...props, ...recorded(s) } };
  },

  async update(_id: string, olds: ZfsArcLimitOutputs, news: ZfsArcLimitInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    const s = await converge(news.connection, news.maxBytes, olds.minBytes ?? 0);
    return { outs: { ...news, ...recorded(s), minBytes: s.minBytes } };
  },

  async delete(_id: string, props: ZfsArcLimitOutputs) {
    // Back to the module default: the option leaves zfs.conf and 0 tells the module to use its own.
    await converge(props.connection, undefined, props.minBytes ?? 0);
  },
};
