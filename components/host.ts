/**
 * Host preparation of one node: ZFS pools and datasets with their Proxmox
 * storage registration, the ARC limit, and the NVIDIA driver for GPUs shared
 * with containers. Only what is declared is converged; storages and datasets
 * Phoenix does not name are never touched. A pool or dataset removed from the
 * configuration is forgotten, not destroyed, unless it allows destruction.
 * Every host resource is identified by the node's name: a new SSH address, port, user or key is
 * an in-place update that runs nothing on the node, and a pool is never replaced.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { GpuFunctions, type ApiAccess } from "../providers/hardware/gpu-functions";
import { NodeFile } from "../providers/host/node-file";
import { APT_GET } from "../providers/ssh/apt";
import { NvidiaDriver } from "../providers/host/nvidia-driver";
import { VfioHost } from "../providers/host/vfio";
import { ZfsArcLimit } from "../providers/host/zfs-arc";
import { ZfsDataset } from "../providers/host/zfs-dataset";
import { ZfsPool } from "../providers/host/zfs-pool";
import { DirMountpoint } from "../providers/storage/dir-mountpoint";
import type { SshConnection } from "../providers/ssh";
import type { Host } from "../stacks/schema";
import type { NfsExport } from "../providers/host/exports";
import type { HostGpuInfo } from "./guest/gpu";

export interface HostPrepArgs {
  /** The validated host section as this node sees it (stacks/cluster.ts nodeHost). */
  host: Host;
  /** The node being prepared. */
  node: string;
  /** SSH to the node. */
  connection: pulumi.Input<SshConnection>;
  /** The bridged provider, for storage registration and PCI mappings. */
  provider: pulumi.ProviderResource;
  /** NFS exports of datasets to Docker hosts, with their clients' addresses. */
  exports?: NfsExport[];
  /** The API with the stack's token, to read the node's PCI listing (vm-passthrough GPUs) and mark dir storages as mount points. */
  api?: pulumi.Input<ApiAccess>;
}

const GIB = 1024 ** 3;

/** ZFS property values as `zfs` prints them back, so a re-run compares equal. */
export function zfsValue(v: string | number | boolean): string {
  if (typeof v === "boolean") return v ? "on" : "off";
  return String(v);
}

/** Exported directories get their declared owner: with root_squash, the clients' containers write as that uid. */
function exportOwners(host: Host, exports: NfsExport[]): string {
  return exports
    .flatMap((e) => {
      const d = host.zfs.datasets.find((x) => `/${x.pool}/${x.name}` === e.path);
      return d?.owner ? [`chown ${d.owner.uid}:${d.owner.gid} "$R"${e.path}`, `chmod ${d.owner.mode} "$R"${e.path}`] : [];
    })
    .join("; ");
}

export class HostPrep extends pulumi.ComponentResource {
  /** Datasets by pool/name, for guests that mount them. */
  readonly datasets: Record<string, pulumi.Resource> = {};
  /** Storages by id, for templates and guests allocated on them. */
  readonly storages: Record<string, pulumi.Resource> = {};
  /** The NVIDIA driver, when GPUs are shared with containers. */
  readonly nvidia?: NvidiaDriver;
  /** What the host driver reports, for GPU containers. */
  readonly gpuInfo?: pulumi.Output<HostGpuInfo>;
  /** PCI resource mappings of vm-passthrough GPUs, by GPU id, for VMs' hostpci. */
  readonly pciMappings: Record<number, proxmox.hardware.mapping.PciLegacy> = {};
  /** Phoenix's block of /etc/exports, when datasets are exported. */
  readonly exports?: NodeFile;
  /** vfio binding and IOMMU kernel arguments, when a GPU is passed through. */
  readonly vfio?: VfioHost;

  constructor(name: string, args: HostPrepArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:host:HostPrep", name, {}, opts);
    const child = { parent: this };
    const { host, connection, node } = args;
    const pools: Record<string, ZfsPool> = {};
    for (const p of host.zfs.pools) {
      pools[p.name] = new ZfsPool(
        `${name}-pool-${p.name}`,
        {
          node,
          connection,
          name: p.name,
          vdevType: p.topology,
          disks: p.disks,
          poolOptions: { ashift: String(p.ashift) },
          filesystemProperties: Object.fromEntries(Object.entries(p.properties).map(([k, v]) => [k, zfsValue(v)])),
          wipeDisksOnCreate: p.wipeDisksOnCreate ?? false,
          allowDestroy: p.allowDestroy,
        },
        { ...child, retainOnDelete: !p.allowDestroy },
      );
    }
    for (const d of host.zfs.datasets) {
      const id = `${d.pool}/${d.name}`;
      const dataset = new ZfsDataset(
        `${name}-dataset-${id.replace(/\//g, "-")}`,
        { node, connection, pool: d.pool, name: d.name, properties: Object.fromEntries(Object.entries(d.properties).map(([k, v]) => [k, zfsValue(v)])), allowDestroy: d.allowDestroy },
        { ...child, dependsOn: [pools[d.pool]!], retainOnDelete: !d.allowDestroy },
      );
      this.datasets[id] = dataset;
      if (!d.storage) continue;
      // One storage.cfg entry for every node the dataset is on (`nodes`), registered by the first of them;
      // the others' guests wait for their own dataset.
      const storageNodes = d.nodes ?? [node];
      if (storageNodes[0] !== node) {
        this.storages[d.storage.id] = dataset;
        continue;
      }
      const storageOpts = { ...child, provider: args.provider, dependsOn: [dataset] };
      if (d.storage.type === "zfspool") {
        this.storages[d.storage.id] = new proxmox.storage.ZfspoolLegacy(`${name}-storage-${d.storage.id}`, { resourceId: d.storage.id, zfsPool: id, contents: d.storage.content, nodes: storageNodes }, storageOpts);
        continue;
      }
      const dir = new proxmox.storage.DirectoryLegacy(`${name}-storage-${d.storage.id}`, { resourceId: d.storage.id, path: `/${id}`, contents: d.storage.content, nodes: storageNodes }, storageOpts);
      // The path is a dataset's mountpoint: PVE must not fill the root file system when it is not mounted (providers/storage/dir-mountpoint.ts).
      if (!args.api) throw new Error(`${name}: dir storage ${d.storage.id} needs API access to set is_mountpoint`);
      this.storages[d.storage.id] = new DirMountpoint(`${name}-storage-${d.storage.id}-mountpoint`, { api: args.api, storage: d.storage.id }, { ...child, dependsOn: [dir] });
    }
    // The host section as this node sees it (stacks/cluster.ts nodeHost): one number.
    if (typeof host.zfs.arcMaxGiB === "number") new ZfsArcLimit(`${name}-zfs-arc`, { node, connection, maxBytes: Math.round(host.zfs.arcMaxGiB * GIB) }, child);
    if (host.nvidiaDriver && host.gpus.some((g) => g.mode === "lxc-shared")) {
      const { version, runfileSha256, kernelModules } = host.nvidiaDriver;
      this.nvidia = new NvidiaDriver(`${name}-nvidia`, { node, connection, version, runfileSha256: runfileSha256?.toLowerCase(), kernelModuleType: kernelModules }, child);
      this.gpuInfo = pulumi.all([this.nvidia.gpus, this.nvidia.deviceNodes, this.nvidia.installedVersion]).apply(([gpus, deviceNodes, driverVersion]) => ({ gpus, deviceNodes, driverVersion }));
    }
    if (args.exports && args.exports.length > 0) {
      this.exports = new NodeFile(
        `${name}-nfs-exports`,
        // The NFS server is not part of a stock PVE install; it is added when the first export is.
        { node, connection, path: "/etc/exports", exports: args.exports, reload: [exportOwners(host, args.exports), `if ! command -v exportfs >/dev/null; then ${APT_GET} install -y nfs-kernel-server; fi`, "exportfs -ra"].filter(Boolean).join("; ") },
        { ...child, dependsOn: args.exports.map((e) => this.datasets[e.path.slice(1)]).filter((d): d is pulumi.Resource => d !== undefined) },
      );
    }
    const passthrough = host.gpus.filter((g) => g.mode === "vm-passthrough");
    if (passthrough.length > 0) {
      if (!args.api) throw new Error(`${name}: vm-passthrough GPUs need API access to read the node's PCI listing`);
      const used = host.gpus.filter((g) => g.mode !== "unused");
      const functions = new GpuFunctions(`${name}-gpu-functions`, { api: args.api, node: args.node, addresses: used.map((g) => g.pci), passthrough: passthrough.map((g) => g.pci) }, child);
      const card = (pci: string) => functions.cards.apply((cards) => cards.find((c) => c.address === pci.toLowerCase())!);
      // Every GPU is declared to vfio with its mode, so an lxc-shared card's driver is never blacklisted.
      this.vfio = new VfioHost(
        `${name}-vfio`,
        {
          node,
          connection,
          gpus: functions.cards.apply((cards) =>
            used.map((g) => ({
              name: `gpu-${g.id}`,
              mode: g.mode as "lxc-shared" | "vm-passthrough",
              ids: [...new Set(cards.find((c) => c.address === g.pci.toLowerCase())!.functions.map((f) => f.id))],
            })),
          ),
        },
        child,
      );
      for (const g of passthrough) {
        this.pciMappings[g.id] = new proxmox.hardware.mapping.PciLegacy(
          `${name}-pci-gpu-${g.id}`,
          {
            name: `phoenix-gpu-${g.id}`,
            comment: `${g.model} (${g.pci}), passed through by Phoenix`,
            maps: [card(g.pci).apply((c) => ({ node: args.node, path: c.address, id: c.functions[0]!.id, iommuGroup: c.iommuGroup }))],
          },
          { ...child, provider: args.provider, dependsOn: [this.vfio] },
        );
      }
    }
    this.registerOutputs({});
  }
}
