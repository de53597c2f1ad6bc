/**
 * The templates every guest is a linked clone of: the machine's build
 * artifacts. LXC templates are built layer on layer (base → cuda → vllm) by
 * LxcTemplate; the VM template is the cloud image imported into a VM with a
 * cloud-init drive, through the bridged provider. Build order is the graph's:
 * a derived template takes its source's build hash as an input, and the CUDA
 * template takes the host driver's installed version as its user-space version.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { ApiAccess } from "../providers/hardware/gpu-functions";
import { defaultRunfileUrl, type NvidiaDriver } from "../providers/host/nvidia-driver";
import type { SshConnection } from "../providers/ssh";
import { importFileName } from "../providers/template/image";
import { ImageChecksum } from "../providers/template/image-checksum";
import type { LayerSpec } from "../providers/template/layers";
import { LxcTemplate, type KeepBuilds, type TemplateSource } from "../providers/template/lxc-template";
import type { Host, StackConfig, Template } from "../stacks/schema";
import { guestResourceName } from "./guest/common";

type LxcTemplateConfig = Extract<Template, { kind: "lxc" }>;
type VmTemplateConfig = Extract<Template, { kind: "vm" }>;

/** The locale of every template; guests' users inherit it. */
export const TEMPLATE_LOCALE = "en_US.UTF-8";

export interface TemplatesArgs {
  /** The validated templates. */
  templates: Template[];
  /** The validated host: node defaults, timezone, bridge, DNS, driver pin. */
  host: Host;
  /** Node templates live on when they name none. */
  node: string;
  /** The API with the stack's token, for LXC template builds. */
  api: pulumi.Input<ApiAccess>;
  /** SSH to each node that holds an LXC template, for `pct exec`. */
  connections: Record<string, pulumi.Input<SshConnection> | undefined>;
  /** The bridged provider, for the cloud image and the VM template. */
  provider: proxmox.Provider;
  /** The host driver; required when a cuda template is declared. */
  nvidia?: NvidiaDriver;
  /** Storages by id (HostPrep.storages), so a template waits for the storage it uses. */
  storages?: Record<string, pulumi.Resource>;
  /** The internal root CA, for the base layer to trust; adding it rebuilds base (see LxcTemplate's policy). */
  caPem?: string;
  /** Each node's host preparation, for a template built on another node than `node` (a per-node copy): its driver and storages. */
  preps?: Record<string, { nvidia?: NvidiaDriver; storages: Record<string, pulumi.Resource> }>;
  /** Templates kept as built whatever their declaration says, until no guest clones them. */
  frozen?: number[];
  /** Where each LXC template's build is archived before a rebuild destroys it (templateArchive). */
  keepBuilds?: KeepBuilds;
}

/**
 * Where a template's build goes before a rebuild destroys it (PVE cannot snapshot a template:
 * providers/template/lxc-template.ts): the stack's first enabled backup job's storage, else the
 * installer's `local` (a dir storage with backup content); the last `changeSnapshots.keep` kept.
 */
export function templateArchive(config: StackConfig): KeepBuilds {
  const jobs = config.backup?.jobs ?? [];
  return { storage: (jobs.find((j) => j.enabled) ?? jobs[0])?.storage ?? "local", keep: config.changeSnapshots.keep };
}

export class Templates extends pulumi.ComponentResource {
  /** Each template's resource by vmid, for guests to depend on. */
  readonly byVmid: Record<number, pulumi.Resource> = {};
  private readonly lxc = new Map<number, LxcTemplate>();

  constructor(name: string, private readonly args: TemplatesArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:template:Templates", name, {}, opts);
    for (const t of args.templates) this.byVmid[t.vmid] = t.kind === "lxc" ? this.buildLxc(t) : this.buildVm(t);
    this.registerOutputs({ vmids: args.templates.map((t) => t.vmid) });
  }

  /** A storage on several nodes is registered by one node's preparation and made (its dataset) by each: a template waits for all of them. */
  private storageDeps(...ids: string[]): pulumi.Resource[] {
    const all = [this.args.storages ?? {}, ...Object.values(this.args.preps ?? {}).map((p) => p.storages)];
    return [...new Set(ids.flatMap((id) => all.map((s) => s[id])))].filter((r): r is pulumi.Resource => r !== undefined);
  }

  /** The NVIDIA driver of the node a template is built on. */
  private driverOn(node: string): NvidiaDriver | undefined {
    return node === this.args.node ? this.args.nvidia : this.args.preps?.[node]?.nvidia;
  }

  private layerOf(t: LxcTemplateConfig): pulumi.Input<LayerSpec> {
    switch (t.layer) {
      case "base":
        return { layer: "base", timezone: this.args.host.timezone, locale: TEMPLATE_LOCALE, packages: [], ...(this.args.caPem ? { caPem: this.args.caPem } : {}) };
      case "cuda": {
        const driver = this.driverOn(t.node ?? this.args.node);
        if (!driver) throw new Error(`template ${t.vmid}: the cuda layer needs the host NVIDIA driver (host.nvidiaDriver and an lxc-shared GPU)`);
        const cuda = t.versions.cuda!;
        return driver.installedVersion.apply((v): LayerSpec => {
          if (!v) throw new Error(`template ${t.vmid}: the host NVIDIA driver reports no installed version; the cuda layer installs exactly that version's user-space`);
          return { layer: "cuda", driverVersion: v, runfileUrl: defaultRunfileUrl(v), cuda };
        });
      }
      case "vllm":
        return { layer: "vllm", vllm: t.versions.vllm! };
    }
  }

  private buildLxc(t: LxcTemplateConfig): LxcTemplate {
    const done = this.lxc.get(t.vmid);
    if (done) return done;
    const node = t.node ?? this.args.node;
    const connection = this.args.connections[node];
    if (!connection) throw new Error(`template ${t.vmid}: building an LXC template runs its setup through SSH to node ${node}: declare proxmox.nodes[].ssh for it`);
    let parent: LxcTemplate | undefined;
    let source: pulumi.Input<TemplateSource>;
    if ("clone" in t.source) {
      const cloneOf = t.source.clone;
      const from = this.args.templates.find((s) => s.vmid === cloneOf);
      if (from?.kind !== "lxc") throw new Error(`template ${t.vmid}: source ${cloneOf} is not a declared LXC template`);
      parent = this.buildLxc(from);
      source = parent.buildHash.apply((build) => ({ clone: cloneOf, build }));
    } else source = t.source;
    const built = new LxcTemplate(
      guestResourceName(t),
      {
        api: this.args.api,
        connection,
        node,
        vmid: t.vmid,
        name: t.name,
        source,
        storage: t.storage,
        cores: t.cores,
        memoryMiB: t.memoryMiB,
        swapMiB: t.swapMiB,
        diskGiB: t.diskGiB,
        unprivileged: t.unprivileged,
        features: t.features,
        tags: [...new Set(["phoenix", "template", t.layer, ...t.tags])].sort(),
        bridge: this.args.host.managementBridge,
        nameserver: this.args.host.dnsServers[0],
        layer: this.layerOf(t),
        frozen: this.args.frozen?.includes(t.vmid) ?? false,
        ...(this.args.keepBuilds ? { keepBuilds: this.args.keepBuilds } : {}),
      },
      { parent: this, dependsOn: [...(parent ? [parent] : []), ...this.storageDeps(t.storage, ...("catalogue" in t.source ? [t.source.storage] : []))] },
    );
    this.lxc.set(t.vmid, built);
    return built;
  }

  private buildVm(t: VmTemplateConfig): proxmox.VmLegacy {
    const label = guestResourceName(t);
    const node = t.node ?? this.args.node;
    const child = { parent: this, provider: this.args.provider };
    const checksum = new ImageChecksum(`${label}-checksum`, { url: t.source.url, sha256: t.source.sha256, sha256SumsUrl: t.source.sha256SumsUrl }, { parent: this }).sha256;
    const image = new proxmox.download.File(
      `${label}-image`,
      {
        nodeName: node,
        datastoreId: t.source.storage,
        contentType: "import",
        url: t.source.url,
        fileName: importFileName(t.source.url),
        checksum,
        checksumAlgorithm: "sha256",
        // Present and managed: never fetched again, whatever the server's Content-Length says later.
        overwrite: false,
      },
      { ...child, dependsOn: this.storageDeps(t.source.storage) },
    );
    return new proxmox.VmLegacy(
      label,
      {
        nodeName: node,
        vmId: t.vmid,
        name: t.name,
        description: t.description ?? `Phoenix VM template ${t.name} from ${t.source.url}; clones of it are linked: do not destroy or modify it by hand.`,
        tags: [...new Set(["phoenix", "template", ...t.tags])].sort(),
        template: true,
        started: false,
        onBoot: false,
        // bpg's default is qemu64 (stacks/schema.ts vmCpuTypes).
        cpu: { cores: t.cores, type: t.cpuType },
        memory: { dedicated: t.memoryMiB },
        agent: { enabled: true },
        scsiHardware: "virtio-scsi-pci",
        operatingSystem: { type: "l26" },
        disks: [{ interface: "scsi0", datastoreId: t.storage, importFrom: image.id, size: t.diskGiB, discard: "on" }],
        bootOrders: ["scsi0"],
        serialDevices: [{ device: "socket" }],
        vga: { type: "serial0" },
        networkDevices: [{ bridge: this.args.host.managementBridge, model: "virtio" }],
        initialization: { datastoreId: t.storage, interface: "ide2", ipConfigs: [{ ipv4: { address: "dhcp" } }] },
      },
      { ...child, dependsOn: [image, ...this.storageDeps(t.storage)] },
    );
  }
}
