/**
 * GpuFunctions: what the node's PCI listing says about the declared GPUs —
 * the vendor:device id of every function in each card's slot (the GPU and its
 * HDMI audio) and its IOMMU group — so vfio binding and PCI mappings use the
 * ids the hardware reports, never ones typed by hand. Read-only: it creates
 * nothing on the node.
 */
import * as pulumi from "@pulumi/pulumi";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { withTokenApi, type ApiAccess, type PciDevice } from "../pve";
import { Checker, isUnknown, same } from "../common";

export type { ApiAccess } from "../pve";

export interface GpuFunction {
  /** Function address, e.g. 0000:01:00.1. */
  path: string;
  /** vendor:device, e.g. 10de:22eb. */
  id: string;
}

export interface GpuCard {
  address: string;
  iommuGroup: number;
  /** The card's own function first, then the others in its slot. */
  functions: GpuFunction[];
}

export interface GpuFunctionsInputs {
  api: ApiAccess;
  node: string;
  addresses: string[];
  /** Those of `addresses` passed through to a VM: each must be alone in its IOMMU group with its own functions. */
  passthrough?: string[];
}

export interface GpuFunctionsOutputs extends GpuFunctionsInputs {
  cards: GpuCard[];
}

export interface GpuFunctionsArgs {
  /** The API, with the stack's token. */
  api: pulumi.Input<ApiAccess>;
  /** Node whose PCI listing is read. */
  node: pulumi.Input<string>;
  /** The GPUs' PCI addresses, as declared in host.gpus. */
  addresses: pulumi.Input<string[]>;
  /** The vm-passthrough ones among them. */
  passthrough?: pulumi.Input<string[]>;
}

const hex = (v: string) => v.replace(/^0x/, "").toLowerCase().padStart(4, "0");

/**
 * vfio hands a VM whole IOMMU groups: every device of the group must be bound to vfio-pci and
 * given to the same VM (kernel Documentation/driver-api/vfio.rst, "Groups, Devices, and IOMMUs";
 * pve-docs qm-pci-passthrough.adoc: devices that share a group cannot go to different guests or
 * stay with the host). So a passed-through card must be alone in its group with its own functions
 * (the GPU and its HDMI audio). PVE's listing leaves out bridges by default
 * (`pci-class-blacklist` 05;06;0b), which vfio does not bind.
 */
export function iommuGroupProblem(node: string, devices: readonly PciDevice[], address: string): string | undefined {
  const card = devices.find((d) => d.id.toLowerCase() === address.toLowerCase());
  if (!card) return undefined;
  const slot = address.toLowerCase().replace(/\.[0-7]$/, "");
  const group = devices.filter((d) => d.iommugroup === card.iommugroup).sort((a, b) => a.id.localeCompare(b.id));
  if (group.every((d) => d.id.toLowerCase().startsWith(`${slot}.`))) return undefined;
  const listed = group.map((d) => `${d.id} ${hex(d.vendor)}:${hex(d.device)}${d.device_name ? ` ${d.device_name}` : ""}`).join("; ");
  return (
    `GPU ${address} cannot be passed through: IOMMU group ${card.iommugroup} on node ${node} also holds devices outside its slot (${listed}), and vfio gives a VM whole groups. ` +
    "Move the card to another slot, enable ACS in the firmware, or keep it lxc-shared"
  );
}

/** Finds each address and the other functions of its slot; fails naming what is missing, or a passthrough card's crowded IOMMU group. */
export function gpuCards(node: string, devices: readonly PciDevice[], addresses: readonly string[], passthrough: readonly string[] = []): GpuCard[] {
  const problems = passthrough.map((a) => iommuGroupProblem(node, devices, a)).filter((p): p is string => p !== undefined);
  if (problems.length > 0) throw new Error(problems.join("\n"));
  return addresses.map((address) => {
    const card = devices.find((d) => d.id.toLowerCase() === address.toLowerCase());
    if (!card) throw new Error(`GPU ${address} is not in node ${node}'s PCI listing; check host.gpus[].pci against \`lspci -D\` on the node`);
    const slot = address.toLowerCase().replace(/\.[0-7]$/, "");
    const functions = devices
      .filter((d) => d.id.toLowerCase().startsWith(`${slot}.`))
      .sort((a, b) => (a.id === card.id ? -1 : b.id === card.id ? 1 : a.id.localeCompare(b.id)))
      .map((d) => ({ path: d.id.toLowerCase(), id: `${hex(d.vendor)}:${hex(d.device)}` }));
    return { address: address.toLowerCase(), iommuGroup: card.iommugroup, functions };
  });
}

export const gpuFunctionsProvider = dynamicProvider<GpuFunctionsInputs, GpuFunctionsOutputs>("hardware/gpu-functions");

export class GpuFunctions extends DynamicResource {
  declare readonly cards: pulumi.Output<GpuCard[]>;

  constructor(name: string, args: GpuFunctionsArgs, opts?: pulumi.CustomResourceOptions) {
    super(gpuFunctionsProvider, name, { cards: undefined, ...args }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api"] }), "phoenix/hardware", "GpuFunctions");
  }
}

async function lookup(i: GpuFunctionsInputs): Promise<GpuFunctionsOutputs> {
  return withTokenApi(i.api, async (api) => ({ ...i, cards: gpuCards(i.node, await api.pciDevices(i.node), i.addresses, i.passthrough ?? []) }));
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker("GPU functions");
    c.string("node", news.node, /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, "a node name");
    const addresses = news.addresses;
    if (!isUnknown(addresses)) {
      c.require("addresses", Array.isArray(addresses), "addresses must be a list");
      (Array.isArray(addresses) ? addresses : []).forEach((a, i) => c.string(`addresses[${i}]`, a, /^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/, "a PCI address such as 0000:01:00.0"));
    }
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: GpuFunctionsOutputs, news: GpuFunctionsInputs) {
    const changed = ["api", "node", "addresses", "passthrough"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]));
    return { changes: changed.length > 0 };
  },
  async create(inputs: GpuFunctionsInputs) {
    return { id: `${inputs.node}/gpus`, outs: await lookup(inputs) };
  },
  async read(id: string, props: GpuFunctionsOutputs) {
    return { id, props: await lookup(props) };
  },
  async update(_id: string, _olds: GpuFunctionsOutputs, news: GpuFunctionsInputs) {
    return { outs: await lookup(news) };
  },
  async delete() {
    // Nothing was created on the node.
  },
};
