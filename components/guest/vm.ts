/**
 * A VM guest: a linked clone of the cloud-image template, configured through
 * cloud-init (user, SSH keys, address, DNS), with the QEMU guest agent, its NIC
 * behind the PVE firewall.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { VmGuest as VmGuestConfig } from "../../stacks/schema";
import { guestAddress } from "../../stacks/plan";
import { attachGuestFirewall } from "../firewall";
import { CLONE_IGNORED, cloneOf, guestDescription, guestOptions, guestResourceName, guestTags, resolveNetwork, startupOf, type GuestContext } from "./common";

export interface VmGuestArgs {
  /** The guest as declared in the stack configuration. */
  guest: VmGuestConfig;
  /** Host defaults: node, bridge, gateway, DNS. */
  context: GuestContext;
  /** vmid of the template this guest is a linked clone of. */
  template: number;
  /** The template's node, when not the guest's: a template on shared storage (stacks/cluster.ts templateFor). */
  templateNode?: string;
  /** Resources that must exist first: the template, the previous clone of it, security groups. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
  /** Cloud-init user data, as a snippet volume id (storage:snippets/file). */
  userDataFileId?: string;
  /** PCI resource mappings of the host's vm-passthrough GPUs, by GPU id. */
  pciMappings?: Record<number, pulumi.CustomResource & { name: pulumi.Output<string> }>;
}

export class VmGuest extends pulumi.ComponentResource {
  readonly vmid: number;
  readonly vm: proxmox.VmLegacy;
  /** The guest itself, created once its clone task has finished. */
  readonly machine: pulumi.CustomResource;
  /** The resource after which the guest is fully configured. */
  readonly ready: pulumi.Resource;

  constructor(name: string, args: VmGuestArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:guest:VmGuest", name, {}, opts);
    const g = args.guest;
    const label = `vm-${g.vmid}`;
    const mappings = g.gpus.map((id) => {
      const mapping = args.pciMappings?.[id];
      if (!mapping) throw new Error(`${label}: GPU ${id} has no PCI mapping; it must be declared vm-passthrough in host.gpus`);
      return mapping;
    });
    const net = resolveNetwork(g, args.context);
    const { onBoot, startup } = startupOf(g);
    this.vmid = g.vmid;
    this.vm = new proxmox.VmLegacy(
      label,
      {
        nodeName: args.context.node,
        vmId: g.vmid,
        name: g.name,
        description: guestDescription(g),
        tags: guestTags(g),
        clone: cloneOf(args.template, args.templateNode, args.context.node),
        // bpg sends its default, qemu64, at the clone unless told (stacks/schema.ts vmCpuTypes).
        cpu: { cores: g.cores, type: g.cpuType },
        memory: { dedicated: g.memoryMiB, floating: 0 },
        agent: { enabled: true },
        disks: [{ interface: "scsi0", datastoreId: g.storage, size: g.diskGiB }],
        networkDevices: [{ bridge: net.bridge, firewall: true, macAddress: net.mac, vlanId: net.vlan, model: "virtio" }],
        initialization: {
          datastoreId: g.storage,
          ipConfigs: [{ ipv4: { address: net.address, gateway: net.gateway } }],
          dns: { domain: net.searchDomain, servers: net.dnsServers },
          // With user data, the snippet creates the user; PVE refuses both at once.
          ...(args.userDataFileId ? { userDataFileId: args.userDataFileId } : { userAccount: { username: g.cloudInit.user, keys: g.cloudInit.sshKeys } }),
        },
        // bpg grows a VM's disk right after the clone (vm.go:2867 → vm/disk/disk.go:134), so the declared size goes to it.
        // PCIe passthrough needs the q35 machine type (pve-docs qm-pci-passthrough.adoc: pcie=1 only on q35), and a
        // modern GPU's UEFI option ROM wants OVMF, which keeps its variables on an EFI disk (bpg v0.111.1 vm.go
        // vmGetEfiDisk: `<datastore>:1`, format raw, efitype, pre-enrolled-keys). Ballooning stays off: bpg sends
        // balloon = memory.floating, 0 unless set (vm.go dvMemoryFloating), and a passed-through device pins all guest memory for DMA.
        ...(mappings.length > 0
          ? { machine: "q35", bios: "ovmf", efiDisk: { datastoreId: g.storage, fileFormat: "raw", type: "4m", preEnrolledKeys: false }, hostpcis: mappings.map((m, i) => ({ device: `hostpci${i}`, mapping: m.name, pcie: true })) }
          : {}),
        onBoot,
        startup,
        started: true,
        // A node change migrates the VM instead of recreating it: bpg v0.111.1 vm.go:1781-1790
        // (node_name is ForceNew unless migrate) and migrateNonHAVM (online, with local disks).
        migrate: true,
      },
      { ...guestOptions(g), parent: this, dependsOn: [...(args.dependsOn ?? []), ...mappings], ignoreChanges: CLONE_IGNORED },
    );
    attachGuestFirewall(this, label, { node: args.context.node, vmid: g.vmid, kind: "vm", firewall: g.firewall, address: guestAddress(g), derived: args.context.derivedRules }, { dependsOn: [this.vm] }, guestResourceName(g));
    this.machine = this.vm;
    this.ready = this.vm;
    this.registerOutputs({ vmid: this.vmid });
  }
}
