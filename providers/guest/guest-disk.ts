/**
 * GuestDisk: the size of a container's root disk, grown right after its clone in the same
 * apply. bpg's provider never resizes a cloned container (bpg v0.111.1 proxmoxtf/resource/
 * container/container.go containerCreateClone :1260-1731 has no disk step) and records the
 * template's size (containerRead :2814), so Phoenix gives bpg the template's size and owns the
 * growth here, through its own API client.
 *
 * PVE: `PUT /nodes/{node}/lxc/{vmid}/resize` refuses a smaller size ("unable to shrink disk
 * size") and fails on the same size ("disk is already at specified size"): pve-container
 * src/PVE/API2/LXC.pm:2402-2404 (commit 94f5585). So this resizes only when the disk is smaller
 * than declared, and refuses to shrink before calling anything.
 */
import * as pulumi from "@pulumi/pulumi";
import { withTokenApi, type ApiAccess } from "../pve";
import { changedKeys, Checker, diffResult, isUnknown } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";

export interface GuestDiskInputs {
  api: ApiAccess;
  node: string;
  vmid: number;
  /** The config key of the disk: rootfs for a container. */
  disk: string;
  sizeGiB: number;
}

export interface GuestDiskOutputs extends GuestDiskInputs {
  /** The size PVE reports after the apply, in GiB. */
  actualGiB: number;
}

export interface GuestDiskArgs {
  api: pulumi.Input<ApiAccess>;
  node: pulumi.Input<string>;
  vmid: pulumi.Input<number>;
  disk: pulumi.Input<string>;
  sizeGiB: pulumi.Input<number>;
}

export const guestDiskProvider = dynamicProvider<GuestDiskInputs, GuestDiskOutputs>("guest/guest-disk");

export class GuestDisk extends DynamicResource {
  declare readonly actualGiB: pulumi.Output<number>;
  constructor(name: string, args: GuestDiskArgs, opts: pulumi.CustomResourceOptions = {}) {
    super(guestDiskProvider, name, { actualGiB: undefined, ...args, api: pulumi.secret(args.api) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api"] }), "phoenix/guest", "GuestDisk");
  }
}

/** `size=` of a PVE volume property string, in GiB (PVE writes K, M, G or T). */
export function volumeSizeGiB(volume: unknown): number {
  const m = /(?:^|,)size=(\d+(?:\.\d+)?)([KMGT])?(?:,|$)/.exec(String(volume ?? ""));
  if (!m) return 0;
  const unit = { K: 1 / 1024 ** 2, M: 1 / 1024, G: 1, T: 1024 }[(m[2] ?? "G") as "K" | "M" | "G" | "T"];
  return Number(m[1]) * unit;
}

async function converge(i: GuestDiskInputs): Promise<GuestDiskOutputs> {
  return withTokenApi(i.api, async (api) => {
    const have = volumeSizeGiB((await api.guestConfig(i.node, "lxc", i.vmid))[i.disk]);
    if (i.sizeGiB < have) throw new Error(`CT ${i.vmid}: ${i.disk} is ${have} GiB and cannot shrink to ${i.sizeGiB} GiB: declare diskGiB ${Math.ceil(have)} or more`);
    if (i.sizeGiB > have) await api.resizeGuestDisk(i.node, "lxc", i.vmid, i.disk, `${i.sizeGiB}G`);
    return { ...i, actualGiB: volumeSizeGiB((await api.guestConfig(i.node, "lxc", i.vmid))[i.disk]) };
  });
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker("guest disk");
    c.node(news.node);
    if (!isUnknown(news.sizeGiB)) c.require("sizeGiB", Number.isSafeInteger(news.sizeGiB) && (news.sizeGiB as number) >= 1, `sizeGiB must be a whole number of GiB, got ${JSON.stringify(news.sizeGiB)}`);
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: GuestDiskOutputs, news: GuestDiskInputs) {
    // The disk belongs to the guest: another node or vmid is another guest's disk.
    return diffResult(changedKeys(olds, news, ["sizeGiB", "api"]), changedKeys(olds, news, ["node", "vmid", "disk"]));
  },
  create: async (inputs: GuestDiskInputs) => ({ id: `${inputs.node}/${inputs.vmid}/${inputs.disk}`, outs: await converge(inputs) }),
  update: async (_id: string, _olds: GuestDiskOutputs, news: GuestDiskInputs) => ({ outs: await converge(news) }),
  async read(id: string, props: GuestDiskOutputs) {
    return { id, props };
  },
  async delete() {
    // The disk goes with its guest; forgetting its size destroys nothing.
  },
};
