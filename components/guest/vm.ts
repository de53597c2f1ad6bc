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
import { guestDescription, guestOptions, guestResourceName, guestTags, resolveNetwork, startupOf, type GuestContext } from "./common";

export interface VmGuestArgs {
  /** The guest as declared in the stack configuration. */
  guest: VmGuestConfig;
  /** Host defaults: node, bridge, gateway, DNS. */
  context: GuestContext;
  /** vmid of the template this guest is a linked clone of. */
  template: number;
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
        clone: { vmId: args.template, full: false },
        // bpg sends its default, qemu64, at the clone unless told (stacks/schema.ts vmCpuTypes).
        cpu: { cores: g.cores, type: g.cpuType },
        memory: { dedicated: g.memoryMiB },
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
        // PCIe passthrough needs the q35 machine type.
        ...(mappings.length > 0 ? { machine: "q35", hostpcis: mappings.map((m, i) => ({ device: `hostpci${i}`, mapping: m.name, pcie: true })) } : {}),
        onBoot,
        startup,
        started: true,
      },
      { ...guestOptions(g), parent: this, dependsOn: [...(args.dependsOn ?? []), ...mappings] },
    );
    attachGuestFirewall(this, label, { node: args.context.node, vmid: g.vmid, kind: "vm", firewall: g.firewall, address: guestAddress(g) }, { dependsOn: [this.vm] }, guestResourceName(g));
    this.machine = this.vm;
    this.ready = this.vm;
    this.registerOutputs({ vmid: this.vmid });
  }
}
