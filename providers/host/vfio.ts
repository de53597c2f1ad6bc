import * as pulumi from "@pulumi/pulumi";
import { parseFiles, runScriptChecked, type SshConnection } from "../ssh";
import { changedKeys, Checker, diffResult, isUnknown, nodeReplaces, parseProbe, reachOnly } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import {
  cpuVendorOf,
  grubDefaultArgs,
  missingKernelArgs,
  iommuArgs,
  mergeKernelArgs,
  NVIDIA_HOST_MODULES,
  PCI_ID,
  planVfio,
  readVfioIds,
  renderModulesLoadConf,
  renderVfioModprobeConf,
  setGrubDefaultArgs,
  vfioModules,
  type CpuVendor,
  type GpuDeclaration,
} from "./kernel-cmdline";
import { FILES, renderVfioApply, renderVfioProbe, type BootLoader, type VfioApply } from "./vfio.scripts";
import { secureBootEnabled } from "./secure-boot";

export interface VfioHostInputs {
  /** The Proxmox node: what identifies this resource. */
  node: string;
  connection: SshConnection;
  /** Every GPU of the node with its mode; only vm-passthrough ones are bound to vfio-pci. */
  gpus: GpuDeclaration[];
}

export interface VfioHostOutputs extends VfioHostInputs {
  bootLoader: BootLoader;
  /** UEFI Secure Boot is on: GRUB boots, whatever else is on the ESP. */
  secureBoot: boolean;
  cpuVendor: CpuVendor;
  kernelRelease: string;
  /** The IOMMU arguments Phoenix requires on the kernel command line. */
  kernelArgs: string[];
  /** The command line configured for the next boot. */
  kernelCmdline: string;
  /** Ids vfio-pci is configured to claim. */
  vfioIds: string[];
  /** Modules configured to load at boot. */
  modules: string[];
  /** Whether the configured files are what the declaration asks for (refresh sets it false on drift). */
  inSync: boolean;
  /** The running kernel does not yet have the configuration; Phoenix never reboots by itself. */
  rebootRequired: boolean;
  rebootReason: string;
}

export interface VfioHostArgs {
  /** The Proxmox node's name; another node is another resource. */
  node: pulumi.Input<string>;
  /** SSH access to the Proxmox node; a change is recorded in place. */
  connection: pulumi.Input<SshConnection>;
  /** All GPUs with their mode and PCI ids (GPU and audio function). */
  gpus: pulumi.Input<pulumi.Input<GpuDeclaration>[]>;
}

export const vfioHostProvider = dynamicProvider<VfioHostInputs, VfioHostOutputs>("host/vfio");

/** IOMMU on the kernel command line and vfio-pci for the GPUs declared vm-passthrough. */
export class VfioHost extends DynamicResource {
  declare readonly bootLoader: pulumi.Output<BootLoader>;
  declare readonly kernelCmdline: pulumi.Output<string>;
  declare readonly vfioIds: pulumi.Output<string[]>;
  declare readonly rebootRequired: pulumi.Output<boolean>;
  declare readonly rebootReason: pulumi.Output<string>;

  constructor(name: string, args: VfioHostArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = { bootLoader: undefined, secureBoot: undefined, cpuVendor: undefined, kernelRelease: undefined, kernelArgs: undefined, kernelCmdline: undefined, vfioIds: undefined, modules: undefined, inSync: undefined, rebootRequired: undefined, rebootReason: undefined };
    super(vfioHostProvider, name, { ...outputs, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/host", "VfioHost");
  }
}

interface Facts {
  cpuVendor: CpuVendor;
  kernelRelease: string;
  boot: BootLoader;
  secureBoot: boolean;
  running: string;
  files: Map<string, string | undefined>;
  nvidiaBlacklists: string[];
  pci: Array<{ address: string; id: string; driver: string }>;
}

/**
 * The loader that boots: systemd-boot cannot be Secure Boot signed (pve-docs system-booting.adoc:
 * "Only GRUB is supported as bootloader out of the box"), so with Secure Boot on a host
 * proxmox-boot-tool manages boots GRUB from the ESPs and `proxmox-boot-tool refresh` regenerates it.
 */
export function bootLoaderOf(probed: BootLoader, secureBoot: boolean): BootLoader {
  return secureBoot && probed === "systemd-boot" ? "grub-proxmox-boot-tool" : probed;
}

async function probe(conn: SshConnection): Promise<Facts> {
  const out = parseProbe((await runScriptChecked(conn, "probe IOMMU/vfio state", renderVfioProbe())).stdout);
  return {
    cpuVendor: cpuVendorOf(out.get("cpu") ?? ""),
    kernelRelease: out.get("kernel") ?? "",
    boot: bootLoaderOf(out.get("boot") as BootLoader, secureBootEnabled(out.get("secureboot"))),
    secureBoot: secureBootEnabled(out.get("secureboot")),
    running: out.get("running") ?? "",
    files: parseFiles(out.all("file")),
    nvidiaBlacklists: out.all("blacklist").filter((l) => NVIDIA_HOST_MODULES.includes(l.split(/\s+/).pop() ?? "")),
    pci: out.all("pci").map((l) => {
      const [address, id, driver] = l.split(" ");
      return { address: address!, id: id!, driver: driver! };
    }),
  };
}

/** The command line configured for the next boot, as the boot loader reads it. */
function configuredCmdline(f: Facts): string {
  return f.boot === "systemd-boot" ? (f.files.get(FILES.kernelCmdline) ?? "").trim() : grubDefaultArgs(f.files.get(FILES.grub) ?? "");
}

function kernelArgsFor(f: Facts): string[] {
  return iommuArgs(f.cpuVendor, f.kernelRelease, configuredCmdline(f));
}

/** The managed files as they should be on this host. */
function desiredFiles(gpus: GpuDeclaration[], f: Facts): Record<"cmdline" | "vfio" | "modules", string | undefined> {
  const { vfioIds } = planVfio(gpus);
  const args = kernelArgsFor(f);
  const cmdline =
    f.boot === "systemd-boot" ? mergeKernelArgs(f.files.get(FILES.kernelCmdline) ?? "", args) + "\n" : setGrubDefaultArgs(f.files.get(FILES.grub) ?? "", args);
  return {
    cmdline,
    vfio: vfioIds.length ? renderVfioModprobeConf(vfioIds) : undefined,
    modules: vfioIds.length ? renderModulesLoadConf(vfioModules(f.kernelRelease)) : undefined,
  };
}

function describe(inputs: VfioHostInputs, f: Facts): VfioHostOutputs {
  const want = desiredFiles(inputs.gpus, f);
  const cmdlineFile = f.boot === "systemd-boot" ? FILES.kernelCmdline : FILES.grub;
  const configured = f.files.get(cmdlineFile) ?? "";
  const kernelCmdline = configuredCmdline(f);
  const args = kernelArgsFor(f);
  const vfioIds = readVfioIds(f.files.get(FILES.vfio));
  const modules = (f.files.get(FILES.modules) ?? "").split("\n").filter((l) => l && !l.startsWith("#"));
  const inSync = configured === want.cmdline && f.files.get(FILES.vfio) === want.vfio && f.files.get(FILES.modules) === want.modules;

  const reasons: string[] = [];
  const missing = missingKernelArgs(f.running, args);
  if (missing.length) reasons.push(`the running kernel was booted without ${missing.join(" ")}`);
  const { vfioIds: wanted, sharedIds } = planVfio(inputs.gpus);
  for (const d of f.pci) {
    if (wanted.includes(d.id) && d.driver !== "vfio-pci") reasons.push(`${d.address} (${d.id}) is bound to ${d.driver === "-" ? "no driver" : d.driver}, not vfio-pci`);
    if (sharedIds.includes(d.id) && d.driver === "vfio-pci") reasons.push(`${d.address} (${d.id}) is shared with containers but still bound to vfio-pci`);
  }
  return {
    ...inputs,
    bootLoader: f.boot,
    secureBoot: f.secureBoot,
    cpuVendor: f.cpuVendor,
    kernelRelease: f.kernelRelease,
    kernelArgs: args,
    kernelCmdline,
    vfioIds,
    modules,
    inSync,
    rebootRequired: reasons.length > 0,
    rebootReason: reasons.join("; "),
  };
}

async function converge(inputs: VfioHostInputs): Promise<VfioHostOutputs> {
  const f = await probe(inputs.connection);
  const { vfioIds, sharedIds } = planVfio(inputs.gpus);
  const host = inputs.connection.host;
  if (sharedIds.length && f.nvidiaBlacklists.length) {
    throw new Error(
      `${host}: ${f.nvidiaBlacklists.join(", ")} blacklists the NVIDIA driver, but GPUs are declared lxc-shared and need it. ` +
        "Remove those blacklist lines (left by the old setup scripts), then run pulumi up again",
    );
  }
  const present = new Set(f.pci.map((d) => d.id));
  const absent = [...vfioIds, ...sharedIds].filter((i) => !present.has(i));
  if (absent.length) {
    throw new Error(`${host}: no PCI device with id ${absent.join(", ")} (lspci -Dn lists ${[...present].join(", ") || "none"}); fix the GPU ids in the configuration`);
  }
  const current = f.files.get(FILES.kernelCmdline);
  if (f.boot === "systemd-boot" && !/(^|\s)root=/.test(current ?? "")) {
    throw new Error(
      `${host}: ${FILES.kernelCmdline} is ${current === undefined ? "missing" : "without root="} on a systemd-boot host; refusing to write a command line the host would not boot from. ` +
        "Restore it (e.g. root=ZFS=rpool/ROOT/pve-1 boot=zfs) and run pulumi up again",
    );
  }
  const want = desiredFiles(inputs.gpus, f);
  const cmdlineKey = f.boot === "systemd-boot" ? "kernelCmdline" : "grub";
  const files: VfioApply["files"] = {};
  if (f.files.get(FILES[cmdlineKey]) !== want.cmdline) files[cmdlineKey] = want.cmdline;
  if (f.files.get(FILES.vfio) !== want.vfio) files.vfio = want.vfio;
  if (f.files.get(FILES.modules) !== want.modules) files.modules = want.modules;
  if (Object.keys(files).length === 0) return describe(inputs, f);
  await runScriptChecked(inputs.connection, "configure IOMMU/vfio", renderVfioApply({ boot: f.boot, files }));
  return describe(inputs, await probe(inputs.connection));
}

function changes(olds: VfioHostOutputs, news: VfioHostInputs): string[] {
  const changed = changedKeys(olds, news, ["connection", "gpus"]);
  if (!olds.inSync) changed.push("inSync");
  return changed;
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker("IOMMU/vfio host preparation");
    c.node(news.node);
    c.connection(news.connection);
    const gpus = news.gpus;
    if (!isUnknown(gpus)) {
      if (!Array.isArray(gpus)) c.require("gpus", false, "gpus must be a list of { name, mode, ids }");
      else {
        gpus.forEach((g: Record<string, unknown>, i) => {
          if (isUnknown(g)) return;
          c.string(`gpus[${i}].name`, g.name, /^\S+$/, "a name");
          if (!isUnknown(g.mode)) c.require(`gpus[${i}].mode`, g.mode === "vm-passthrough" || g.mode === "lxc-shared", `gpus[${i}].mode must be vm-passthrough or lxc-shared`);
          if (!isUnknown(g.ids)) {
            const ids = Array.isArray(g.ids) ? g.ids : [];
            c.require(`gpus[${i}].ids`, ids.length > 0, `gpus[${i}].ids must list the vendor:device id of each function (GPU and audio)`);
            ids.forEach((id, j) => c.string(`gpus[${i}].ids[${j}]`, id, PCI_ID, "a lower-case vendor:device id like 10de:2b85 (lspci -nn)"));
          }
        });
        const known = gpus.every((g: Record<string, unknown>) => !isUnknown(g) && !isUnknown(g.mode) && Array.isArray(g.ids) && g.ids.every((i) => typeof i === "string"));
        if (known) {
          try {
            planVfio(gpus as GpuDeclaration[]);
          } catch (err) {
            c.require("gpus", false, (err as Error).message);
          }
        }
      }
    }
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: VfioHostOutputs, news: VfioHostInputs) {
    return diffResult(changes(olds, news), nodeReplaces(olds, news));
  },

  async create(inputs: VfioHostInputs) {
    return { id: `vfio-${inputs.node}`, outs: await converge(inputs) };
  },

  async read(id: string, props: VfioHostOutputs) {
    return { id, props: describe(props, await probe(props.connection)) };
  },

  async update(_id: string, olds: VfioHostOutputs, news: VfioHostInputs) {
    if (reachOnly(changes(olds, news))) return { outs: { ...olds, ...news } };
    return { outs: await converge(news) };
  },

  async delete(_id: string, props: VfioHostOutputs) {
    // The IOMMU arguments stay: they may predate Phoenix and are harmless without vfio bindings.
    const f = await probe(props.connection);
    const files: VfioApply["files"] = {};
    if (f.files.get(FILES.vfio) !== undefined) files.vfio = undefined;
    if (f.files.get(FILES.modules) !== undefined) files.modules = undefined;
    if (Object.keys(files).length) await runScriptChecked(props.connection, "remove vfio configuration", renderVfioApply({ boot: f.boot, files }));
  },
};
