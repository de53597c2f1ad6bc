import * as pulumi from "@pulumi/pulumi";
import { parseFiles, runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { mokRefusal, mokState, secureBootEnabled, type MokState } from "./secure-boot";
import {
  deviceNodes,
  kernelsWithoutModule,
  moduleTypeOfLicense,
  NOUVEAU_CONF,
  NOUVEAU_CONTENT,
  NVIDIA_UNIT_CONTENT,
  NVIDIA_UNIT_PATH,
  parseGpuRows,
  renderNvidiaInstall,
  renderNvidiaProbe,
  renderNvidiaUninstall,
  type DeviceNode,
  type KernelModuleType,
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
  /** The kernel modules nvidia-installer builds: `--kernel-module-type=open|proprietary`. */
  kernelModuleType: KernelModuleType;
}

export interface NvidiaDriverOutputs extends NvidiaDriverInputs {
  /** Version DKMS has built for the running kernel ("" when none). */
  installedVersion: string;
  /** Version of the loaded kernel module as nvidia-smi reports it ("" when not loaded). */
  loadedVersion: string;
  /** The flavour of the running kernel's nvidia module, from its licence (`modinfo`); "" when none. */
  installedModuleType: KernelModuleType | "";
  /** Installed kernels DKMS has no nvidia module built for: booting one leaves the GPUs without a driver. */
  kernelsWithoutModule: string[];
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
  /** open (Turing and later, required by Blackwell; the default) or proprietary kernel modules. */
  kernelModuleType?: pulumi.Input<KernelModuleType>;
}

export const nvidiaDriverProvider = dynamicProvider<NvidiaDriverInputs, NvidiaDriverOutputs>("host/nvidia-driver");

/** The NVIDIA driver on the node for GPUs shared with containers, built with DKMS. */
export class NvidiaDriver extends DynamicResource {
  declare readonly installedVersion: pulumi.Output<string>;
  declare readonly loadedVersion: pulumi.Output<string>;
  declare readonly gpus: pulumi.Output<NvidiaGpu[]>;
  declare readonly deviceNodes: pulumi.Output<DeviceNode[]>;
  declare readonly rebootRequired: pulumi.Output<boolean>;
  declare readonly rebootReason: pulumi.Output<string>;
  declare readonly kernelsWithoutModule: pulumi.Output<string[]>;

  constructor(name: string, args: NvidiaDriverArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = { installedVersion: undefined, loadedVersion: undefined, installedModuleType: undefined, kernelsWithoutModule: undefined, gpus: undefined, deviceNodes: undefined, inSync: undefined, rebootRequired: undefined, rebootReason: undefined };
    super(nvidiaDriverProvider, name, { ...outputs, runfileUrl: undefined, kernelModuleType: undefined, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "NvidiaDriver");
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
  licence: string;
  secureBoot: boolean;
  mok: MokState;
  moduleType: KernelModuleType | "";
  /** Installed kernels (/boot/vmlinuz-*) and the DKMS status lines, for the kernel-upgrade check. */
  kernels: string[];
  dkms: string[];
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
  const { gpus, driverVersion } = parseGpuRows(out.all("gpu"), out.all("minor"));
  return {
    kernel,
    headers: out.get("headers") === "yes",
    installedVersion: built?.[1] ?? "",
    loadedVersion: driverVersion,
    licence: out.get("license") ?? "",
    secureBoot: secureBootEnabled(out.get("secureboot")),
    mok: mokState(out.get("mok")),
    moduleType: moduleTypeOfLicense(out.get("license")),
    kernels: out.all("bootkernel"),
    dkms: out.all("dkms"),
    gpus,
    nodes: deviceNodes(out.all("node"), out.all("dev")),
    unitEnabled: out.get("unit") === "enabled",
    nouveauLoaded: out.get("nouveau") === "loaded",
    files: parseFiles(out.all("file")),
  };
}

function describe(inputs: NvidiaDriverInputs, s: DriverState): NvidiaDriverOutputs {
  const unbuilt = s.installedVersion ? kernelsWithoutModule(s.kernels, s.dkms, s.installedVersion) : [];
  const inSync =
    s.headers &&
    s.installedVersion === inputs.version &&
    s.moduleType === inputs.kernelModuleType &&
    unbuilt.length === 0 &&
    s.unitEnabled && s.files.get(NVIDIA_UNIT_PATH) === NVIDIA_UNIT_CONTENT && s.files.get(NOUVEAU_CONF) === NOUVEAU_CONTENT;
  const reasons: string[] = [];
  if (s.nouveauLoaded) reasons.push("nouveau is loaded; it is blacklisted and the NVIDIA driver takes over at the next boot");
  else if (s.installedVersion === inputs.version && s.loadedVersion !== inputs.version) {
    reasons.push(s.loadedVersion ? `driver ${s.loadedVersion} is loaded; ${inputs.version} is built and loads at the next boot` : `driver ${inputs.version} is built but not loaded`);
  }
  return {
    ...inputs,
    installedVersion: s.installedVersion,
    loadedVersion: s.loadedVersion,
    installedModuleType: s.moduleType,
    kernelsWithoutModule: unbuilt,
    gpus: s.gpus,
    deviceNodes: s.nodes,
    inSync,
    rebootRequired: reasons.length > 0,
    rebootReason: reasons.join("; "),
  };
}

async function converge(inputs: NvidiaDriverInputs): Promise<NvidiaDriverOutputs> {
  const found = await probe(inputs.connection);
  const before = describe(inputs, found);
  const nodesReady = before.deviceNodes.some((n) => n.path === "/dev/nvidia-uvm");
  if (before.inSync && !before.rebootRequired && nodesReady) return before;
  // DKMS signs what it builds with its own key; under Secure Boot only an enrolled key lets the module load.
  if (found.secureBoot && found.mok !== "enrolled") throw new Error(mokRefusal(inputs.connection.host, `the nvidia module DKMS builds`, found.mok));
  await runScriptChecked(inputs.connection, `install NVIDIA driver ${inputs.version}`, renderNvidiaInstall(inputs), { timeoutMs: 1_800_000 });
  const state = await probe(inputs.connection);
  const after = describe(inputs, state);
  if (after.installedVersion !== inputs.version) {
    throw new Error(`NVIDIA driver ${inputs.version} on ${inputs.connection.host}: the installer finished but DKMS has no module for kernel ${state.kernel}; see /var/log/nvidia-installer.log`);
  }
  if (after.installedModuleType !== inputs.kernelModuleType) {
    throw new Error(
      `NVIDIA driver ${inputs.version} on ${inputs.connection.host}: ${inputs.kernelModuleType} kernel modules were asked for but modinfo nvidia reports ${after.installedModuleType || "no module"} ` +
        `(licence "${state.licence}"); see /var/log/nvidia-installer.log`,
    );
  }
  if (after.kernelsWithoutModule.length > 0) throw new Error(unbuiltMessage(inputs, after.kernelsWithoutModule));
  if (!after.loadedVersion && !state.nouveauLoaded) {
    throw new Error(`NVIDIA driver ${inputs.version} on ${inputs.connection.host}: installed, but nvidia-smi reports no GPU; check dmesg for NVRM errors and that the GPUs are not bound to vfio-pci`);
  }
  return after;
}

/**
 * A kernel installed next to the running one whose nvidia module DKMS did not build: rebooting
 * into it leaves the GPUs without a driver (NVIDIA/open-gpu-kernel-modules#1143: 550/555 do not
 * build on 6.17-pve).
 */
export function unbuiltMessage(inputs: Pick<NvidiaDriverInputs, "version" | "connection">, kernels: string[]): string {
  return (
    `NVIDIA driver ${inputs.version} on ${inputs.connection.host}: DKMS has no nvidia module built for installed kernel(s) ${kernels.join(", ")}; do not reboot into them. ` +
    `Build it with dkms install -m nvidia -v ${inputs.version} -k <kernel> (its log is under /var/lib/dkms/nvidia/${inputs.version}/<kernel>/x86_64/log/), ` +
    "install a driver version that supports that kernel, or pin the running kernel with proxmox-boot-tool kernel pin"
  );
}

/** A new version is an upgrade of the same installation, never a replacement. */
function changes(olds: NvidiaDriverOutputs, news: NvidiaDriverInputs): string[] {
  const changed = changedKeys(olds, news, ["connection", "version", "runfileUrl", "runfileSha256", "kernelModuleType"]);
  if (!olds.inSync) changed.push("inSync");
  // State written before the device minor was read: probe again so guests get /dev/nvidia<minor>.
  if ((olds.gpus ?? []).some((g) => g.minor === undefined)) changed.push("gpus");
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
    const kernelModuleType = news.kernelModuleType ?? "open";
    if (!isUnknown(kernelModuleType)) c.require("kernelModuleType", kernelModuleType === "open" || kernelModuleType === "proprietary", `kernelModuleType must be open or proprietary, got ${JSON.stringify(kernelModuleType)}`);
    return { inputs: { ...news, runfileUrl, kernelModuleType }, failures: c.failures };
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
