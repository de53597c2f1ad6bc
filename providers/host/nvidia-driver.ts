import * as pulumi from "@pulumi/pulumi";
import { parseFiles, runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import {
  deviceNodes,
  NOUVEAU_CONF,
  NOUVEAU_CONTENT,
  NVIDIA_UNIT_CONTENT,
  NVIDIA_UNIT_PATH,
  parseGpuRows,
  renderNvidiaInstall,
  renderNvidiaProbe,
  renderNvidiaUninstall,
  type DeviceNode,
  type NvidiaGpu,
} from "./nvidia.scripts";

export interface NvidiaDriverInputs {
  /** The Proxmox node: what identifies this resource. */
  node: string;
  connection: SshConnection;
  /** Pinned driver version, e.g. `580.76.05`; containers must install the same user-space version. */
  version: string;
  /** Where the `.run` installer is downloaded from; defaults to NVIDIA's download server. */
  runfileUrl: string;
  /** Expected sha256 of the installer; checked when given. */
  runfileSha256?: string;
}

export interface NvidiaDriverOutputs extends NvidiaDriverInputs {
  /** Version DKMS has built for the running kernel ("" when none). */
  installedVersion: string;
  /** Version of the loaded kernel module as nvidia-smi reports it ("" when not loaded). */
  loadedVersion: string;
  gpus: NvidiaGpu[];
  /** `/dev/nvidia*` nodes with their majors; the nvidia-uvm major is whatever this boot assigned. */
  deviceNodes: DeviceNode[];
  inSync: boolean;
  rebootRequired: boolean;
  rebootReason: string;
}

export interface NvidiaDriverArgs {
  /** The Proxmox node's name; another node is another resource. */
  node: pulumi.Input<string>;
  /** SSH access to the Proxmox node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** Pinned driver version; changing it upgrades in place. */
  version: pulumi.Input<string>;
  /** Installer URL; defaults to https://us.download.nvidia.com/XFree86/Linux-x86_64/<version>/… */
  runfileUrl?: pulumi.Input<string>;
  /** Expected sha256 of the installer. */
  runfileSha256?: pulumi.Input<string>;
}

export const nvidiaDriverProvider = dynamicProvider<NvidiaDriverInputs, NvidiaDriverOutputs>("host/nvidia-driver");

/** The NVIDIA driver on the node for GPUs shared with containers, built with DKMS. */
export class NvidiaDriver extends pulumi.dynamic.Resource {
  declare readonly installedVersion: pulumi.Output<string>;
  declare readonly loadedVersion: pulumi.Output<string>;
  declare readonly gpus: pulumi.Output<NvidiaGpu[]>;
  declare readonly deviceNodes: pulumi.Output<DeviceNode[]>;
  declare readonly rebootRequired: pulumi.Output<boolean>;
  declare readonly rebootReason: pulumi.Output<string>;

  constructor(name: string, args: NvidiaDriverArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = { installedVersion: undefined, loadedVersion: undefined, gpus: undefined, deviceNodes: undefined, inSync: undefined, rebootRequired: undefined, rebootReason: undefined };
    super(nvidiaDriverProvider, name, { ...outputs, runfileUrl: undefined, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "NvidiaDriver");
  }
}

export function defaultRunfileUrl(version: string): string {
  return `https://us.download.nvidia.com/XFree86/Linux-x86_64/${version}/NVIDIA-Linux-x86_64-${version}.run`;
}

interface DriverState {
  kernel: string;
  headers: boolean;
  installedVersion: string;
  loadedVersion: string;
  gpus: NvidiaGpu[];
  nodes: DeviceNode[];
  unitEnabled: boolean;
  nouveauLoaded: boolean;
  files: Map<string, string | undefined>;
}

async function probe(conn: SshConnection): Promise<DriverState> {
  const out = parseProbe((await runScriptChecked(conn, "probe the NVIDIA driver", renderNvidiaProbe())).stdout);
  const kernel = out.get("kernel") ?? "";
  const built = out
    .all("dkms")
    .map((l) => /^nvidia\/([0-9.]+), ([^,]+), [^:]+: installed/.exec(l))
    .find((m) => m?.[2] === kernel);
  const { gpus, driverVersion } = parseGpuRows(out.all("gpu"));
  return {
    kernel,
    headers: out.get("headers") === "yes",
    installedVersion: built?.[1] ?? "",
    loadedVersion: driverVersion,
    gpus,
    nodes: deviceNodes(out.all("node"), out.all("dev")),
    unitEnabled: out.get("unit") === "enabled",
    nouveauLoaded: out.get("nouveau") === "loaded",
    files: parseFiles(out.all("file")),
  };
}

function describe(inputs: NvidiaDriverInputs, s: DriverState): NvidiaDriverOutputs {
  const inSync =
    s.headers && s.installedVersion === inputs.version && s.unitEnabled && s.files.get(NVIDIA_UNIT_PATH) === NVIDIA_UNIT_CONTENT && s.files.get(NOUVEAU_CONF) === NOUVEAU_CONTENT;
  const reasons: string[] = [];
  if (s.nouveauLoaded) reasons.push("nouveau is loaded; it is blacklisted and the NVIDIA driver takes over at the next boot");
  else if (s.installedVersion === inputs.version && s.loadedVersion !== inputs.version) {
    reasons.push(s.loadedVersion ? `driver ${s.loadedVersion} is loaded; ${inputs.version} is built and loads at the next boot` : `driver ${inputs.version} is built but not loaded`);
  }
  return {
    ...inputs,
    installedVersion: s.installedVersion,
    loadedVersion: s.loadedVersion,
    gpus: s.gpus,
    deviceNodes: s.nodes,
    inSync,
    rebootRequired: reasons.length > 0,
    rebootReason: reasons.join("; "),
  };
}

async function converge(inputs: NvidiaDriverInputs): Promise<NvidiaDriverOutputs> {
  const before = describe(inputs, await probe(inputs.connection));
  const nodesReady = before.deviceNodes.some((n) => n.path === "/dev/nvidia-uvm");
  if (before.inSync && !before.rebootRequired && nodesReady) return before;
  await runScriptChecked(inputs.connection, `install NVIDIA driver ${inputs.version}`, renderNvidiaInstall(inputs), { timeoutMs: 1_800_000 });
  const state = await probe(inputs.connection);
  const after = describe(inputs, state);
  if (after.installedVersion !== inputs.version) {
    throw new Error(`NVIDIA driver ${inputs.version} on ${inputs.connection.host}: the installer finished but DKMS has no module for kernel ${state.kernel}; see /var/log/nvidia-installer.log`);
  }
  if (!after.loadedVersion && !state.nouveauLoaded) {
    throw new Error(`NVIDIA driver ${inputs.version} on ${inputs.connection.host}: installed, but nvidia-smi reports no GPU; check dmesg for NVRM errors and that the GPUs are not bound to vfio-pci`);
  }
  return after;
}

/** A new version is an upgrade of the same installation, never a replacement. */
function changes(olds: NvidiaDriverOutputs, news: NvidiaDriverInputs): string[] {
  const changed = changedKeys(olds, news, ["connection", "version", "runfileUrl", "runfileSha256"]);
  if (!olds.inSync) changed.push("inSync");
  return changed;
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`NVIDIA driver ${String(news.version)}`);
    c.node(news.node);
    c.connection(news.connection);
    c.string("version", news.version, /^\d+\.\d+(\.\d+)?$/, "a driver version like 580.76.05");
    // The default URL is as unknown as the version it is built from.
    const runfileUrl = news.runfileUrl ?? (isUnknown(news.version) ? news.version : defaultRunfileUrl(String(news.version)));
    c.string("runfileUrl", runfileUrl, /^https:\/\/\S+\.run$/, "an https URL of the .run installer");
    if (news.runfileSha256 !== undefined) c.string("runfileSha256", news.runfileSha256, /^[0-9a-f]{64}$/, "a lower-case hex sha256");
    return { inputs: { ...news, runfileUrl }, failures: c.failures };
  },

  async diff(_id: string, olds: NvidiaDriverOutputs, news: NvidiaDriverInputs) {
    return diffResult(changes(olds, news), nodeReplaces(olds, news));
  },

  async create(inputs: NvidiaDriverInputs) {
    return { id: `nvidia-${inputs.node}`, outs: await converge(inputs) };
  },

  async read(id: string, props: NvidiaDriverOutputs) {
    return { id, props: describe(props, await probe(props.connection)) };
  },

  async update(_id: string, olds: NvidiaDriverOutputs, news: NvidiaDriverInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    return { outs: await converge(news) };
  },

  async delete(_id: string, props: NvidiaDriverOutputs) {
    await runScriptChecked(props.connection, "uninstall the NVIDIA driver", renderNvidiaUninstall());
  },
};
