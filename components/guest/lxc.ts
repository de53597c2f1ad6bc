/**
 * An LXC guest: a linked clone of its template, unprivileged by default, its
 * NIC behind the PVE firewall. Settings only root@pam may make (GPU devices,
 * bind mounts, features beyond nesting, id maps) go through LxcRootConfig, so
 * the API token never needs root's rights.
 *
 * Features go through LxcRootConfig whenever a root path exists (SSH to the node, or the
 * root@pam password), and the bridged container neither sets nor diffs them: bpg v0.111.1
 * (proxmoxtf/resource/container/container.go containerGetFeaturesForUpdate, proxmox/nodes/
 * containers/containers_types.go CustomFeatures.EncodeValues) sends all four flags on any change,
 * `fuse=0,keyctl=0,nesting=1,mknod=0`, which pve-container@6.0.18 (963730e) src/PVE/LXC.pm
 * check_ct_modify_config_perm refuses from a token (a key newly present as 0 is a change; any
 * features on a privileged container are root's). With features unset, bpg's clone sends none
 * (containerGetFeatures sends only true flags, the schema default is all false) and its read
 * leaves them out of the state (containerRead: only when the state already has them).
 * With a token only, bpg sets `nesting` at the clone, the one change PVE allows a token; the
 * cases that need more are refused by validation (stacks/validate.ts rootOnlySettings).
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { GuestDisk } from "../../providers/guest/guest-disk";
import { GuestSnapshot } from "../../providers/guest/guest-snapshot";
import { LxcRootConfig, type RootTransport } from "../../providers/guest/lxc-root-config";
import type { ApiAccess } from "../../providers/hardware/gpu-functions";
import { hostIdOf, planIdmap } from "../../stacks/idmap";
import type { Gpu, Host, LxcGuest as LxcGuestConfig } from "../../stacks/schema";
import { rootOnlySettings } from "../../stacks/validate";
import { guestAddress } from "../../stacks/plan";
import { attachGuestFirewall } from "../firewall";
import { CLONE_IGNORED, cloneOf, guestDescription, guestOptions, guestResourceName, guestTags, resolveNetwork, startupOf, type GuestContext } from "./common";
import { expectedGpuView, gpuDevices, type HostGpuInfo } from "./gpu";
import type { ChangeSnapshotPolicy } from "./snapshot";

export interface LxcGuestArgs {
  /** The guest as declared in the stack configuration. */
  guest: LxcGuestConfig;
  /** Host defaults: node, bridge, gateway, DNS. */
  context: GuestContext;
  /** vmid of the template this guest is a linked clone of. */
  template: number;
  /** The template's node, when not the guest's: a template on shared storage (stacks/cluster.ts templateFor). */
  templateNode?: string;
  /** The template's disk size: what a fresh clone has, and what bpg records for it. */
  templateDiskGiB: number;
  /** Whether the template has nesting on, which a clone keeps. */
  templateNesting?: boolean;
  /** Phoenix's own API access, to grow the disk after the clone. */
  api: pulumi.Input<ApiAccess>;
  /** The host's declared GPUs, to find the assigned ones by PCI address. */
  gpus: Gpu[];
  /** What the host driver reports; required when the guest has GPUs. */
  hostGpus?: pulumi.Input<HostGpuInfo>;
  /** The host's ZFS datasets, to resolve mount volumes to host paths. */
  datasets: Host["zfs"]["datasets"];
  /** How root-only settings reach the node; required when the guest needs them. */
  rootTransport?: pulumi.Input<RootTransport>;
  /** With it, a change of the root settings (not their first setting) comes after a snapshot of the guest (components/guest/snapshot.ts). */
  snapshot?: ChangeSnapshotPolicy;
  /** Resources that must exist first: the template, the previous clone of it, host preparation, security groups. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

export class LxcGuest extends pulumi.ComponentResource {
  readonly vmid: number;
  readonly container: proxmox.ContainerLegacy;
  /** The root disk at its declared size, grown after the clone. */
  readonly disk: GuestDisk;
  /** The guest itself, created once its clone task has finished. */
  readonly machine: pulumi.CustomResource;
  /** The resource after which the guest is fully configured (root settings applied). */
  readonly ready: pulumi.Resource;

  constructor(name: string, args: LxcGuestArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:guest:LxcGuest", name, {}, opts);
    const g = args.guest;
    const label = `ct-${g.vmid}`;
    const net = resolveNetwork(g, args.context);
    const { onBoot, startup } = startupOf(g);
    const { api, sshOnly } = rootOnlySettings(g, args.templateNesting);
    const rootOnly = api.length + sshOnly.length > 0;
    if (rootOnly && !args.rootTransport) throw new Error(`${label}: needs root@pam settings (${[...api, ...sshOnly].join(", ")}) but no root transport was given`);
    const byRoot = args.rootTransport !== undefined;
    // Root-only keys are owned by LxcRootConfig; the token-side resource must neither set nor revert them.
    const rootKeys = ["devicePassthroughs", "mountPoints", "idmaps", "features"];

    this.vmid = g.vmid;
    // A node change would make bpg destroy the container (node_name is ForceNew): the destroy guard
    // refuses it in preview with the procedure (stacks/replacement.ts).
    const node = args.context.node;
    this.container = new proxmox.ContainerLegacy(
      label,
      {
        nodeName: node,
        vmId: g.vmid,
        description: guestDescription(g),
        tags: guestTags(g),
        clone: cloneOf(args.template, args.templateNode, node),
        unprivileged: g.unprivileged,
        cpu: { cores: g.cores },
        memory: { dedicated: g.memoryMiB, swap: g.swapMiB },
        // bpg never resizes a clone and records the template's size (stacks/replacement.ts):
        // given that size, its state and this input always agree; GuestDisk grows the disk.
        disk: { datastoreId: g.storage, size: args.templateDiskGiB },
        networkInterfaces: [{ name: "eth0", bridge: net.bridge, firewall: true, macAddress: net.mac, vlanId: net.vlan }],
        initialization: {
          hostname: g.name,
          ipConfigs: [{ ipv4: { address: net.address, gateway: net.gateway } }],
          dns: { domain: net.searchDomain, servers: net.dnsServers },
        },
        features: !byRoot && g.features.nesting ? { nesting: true } : undefined,
        startOnBoot: onBoot,
        startup,
        started: true,
      },
      { ...guestOptions(g), parent: this, dependsOn: args.dependsOn, ignoreChanges: [...(byRoot ? rootKeys : []), ...CLONE_IGNORED] },
    );
    this.disk = new GuestDisk(`${label}-disk`, { api: args.api, node, vmid: g.vmid, disk: "rootfs", sizeGiB: g.diskGiB }, { parent: this, dependsOn: [this.container] });

    attachGuestFirewall(this, label, { node: args.context.node, vmid: g.vmid, kind: "lxc", firewall: g.firewall, address: guestAddress(g), derived: args.context.derivedRules }, { dependsOn: [this.container] }, guestResourceName(g));

    this.machine = this.container;
    this.ready = this.disk;
    if (args.rootTransport) {
      const idmap = planIdmap(g.unprivileged ? g.idPassthrough : { uids: [], gids: [] });
      const mounts = g.mounts.map((m) => {
        const ds = args.datasets.find((d) => `${d.pool}/${d.name}` === m.volume)!;
        return {
          hostPath: `/${m.volume}`,
          path: m.path,
          readOnly: m.readOnly,
          owner: { uid: hostIdOf(m.uid, g.idPassthrough.uids, g.unprivileged), gid: hostIdOf(m.gid, g.idPassthrough.gids, g.unprivileged), mode: ds.owner?.mode ?? "0750" },
        };
      });
      // Read only for a guest with GPUs: a host without lxc-shared GPUs has no driver report.
      const hostReport =
        g.gpus.length === 0
          ? undefined
          : pulumi.output(args.hostGpus).apply((host) => {
              if (!host) throw new Error(`${label}: has GPUs but the host NVIDIA driver's report was not passed in`);
              return host;
            });
      const devices = hostReport ? hostReport.apply((host) => gpuDevices(label, g.gpus, args.gpus, host)) : [];
      const verifyGpus = hostReport?.apply((host) => expectedGpuView(label, g.gpus, args.gpus, host));
      const features = { nesting: g.features.nesting, keyctl: g.features.keyctl, fuse: g.features.fuse };
      // The same text either way; an Output only when the GPU devices wait for the host's report.
      const spec = { devices, mounts, features, idmap: idmap.ranges };
      const rootSpec = hostReport ? pulumi.jsonStringify(spec) : JSON.stringify(spec);
      const snapshot = args.snapshot && new GuestSnapshot(`${label}-root-snapshot`, { ...args.snapshot, kind: "lxc", vmid: g.vmid, change: "root-settings", trigger: rootSpec }, { parent: this, dependsOn: [this.disk] });
      this.ready = new LxcRootConfig(
        `${label}-root`,
        {
          transport: args.rootTransport,
          node,
          vmid: g.vmid,
          devices,
          mounts,
          features,
          idmap: idmap.ranges,
          subuid: idmap.subuid,
          subgid: idmap.subgid,
          verifyGpus,
        },
        { parent: this, dependsOn: [this.disk, ...(snapshot ? [snapshot] : [])], aliases: [{ name: `${guestResourceName(g)}-root` }] },
      );
    }
    this.registerOutputs({ vmid: this.vmid });
  }
}
