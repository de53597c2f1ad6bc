/**
 * DirMountpoint: `is_mountpoint yes` on a dir storage whose path is a ZFS dataset, so that PVE
 * takes the storage offline while the dataset is not mounted instead of writing into the empty
 * directory on the root file system. pve-storage@9.1.0 (6f49432) src/PVE/Storage/DirPlugin.pm:
 * with is_mountpoint, status() reports the storage unavailable and activate_storage dies
 * ("directory is expected to be a mount point but is not mounted") before
 * config_aware_base_mkdir (Plugin.pm) would create the path; without it, activation mkpaths it.
 *
 * Its own resource because the bridged storage cannot say it: bpg v0.111.1's directory storage
 * has no such attribute (fwprovider/storage/model_directory.go: path, preallocation, shared,
 * create-base-path, create-subdirs, backups; @muhlba91/pulumi-proxmoxve 8.6.0
 * storage/directoryLegacy.d.ts likewise), and its update sends only those keys, so it never
 * undoes this one. Set with the stack's token: PUT /storage/{storage} takes is_mountpoint.
 */
import * as pulumi from "@pulumi/pulumi";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { withTokenApi, type ApiAccess } from "../pve";
import { Checker, isUnknown, same } from "../common";

export interface DirMountpointInputs {
  api: ApiAccess;
  /** The dir storage's id. */
  storage: string;
}

export interface DirMountpointOutputs extends DirMountpointInputs {
  /** The storage's is_mountpoint as last read ("" when unset), so refresh shows drift. */
  isMountpoint: string;
}

export interface DirMountpointArgs {
  api: pulumi.Input<ApiAccess>;
  storage: pulumi.Input<string>;
}

export const dirMountpointProvider = dynamicProvider<DirMountpointInputs, DirMountpointOutputs>("storage/dir-mountpoint");

export class DirMountpoint extends DynamicResource {
  declare readonly isMountpoint: pulumi.Output<string>;

  constructor(name: string, args: DirMountpointArgs, opts?: pulumi.CustomResourceOptions) {
    super(dirMountpointProvider, name, { isMountpoint: undefined, ...args }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api"] }), "phoenix/storage", "DirMountpoint");
  }
}

/** What PVE holds: "yes" as Phoenix writes it; a path or another boolean spelling counts as set by someone else. */
const WANT = "yes";


async function converge(i: DirMountpointInputs): Promise<DirMountpointOutputs> {
  return withTokenApi(i.api, async (api) => {
    const s = await api.storage(i.storage);
    if (s.type !== "dir") throw new Error(`storage ${i.storage} is of type ${s.type}, not dir: is_mountpoint is a dir storage's option`);
    if (String(s.is_mountpoint ?? "") !== WANT) await api.updateStorage(i.storage, { is_mountpoint: WANT, digest: s.digest });
    return { ...i, isMountpoint: String((await api.storage(i.storage)).is_mountpoint ?? "") };
  });
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`is_mountpoint of storage ${String(news.storage)}`);
    c.string("storage", news.storage, /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i, "a storage id");
    return { inputs: news, failures: c.failures };
  },
  async diff(_id: string, olds: DirMountpointOutputs, news: DirMountpointInputs) {
    const replaces = isUnknown(news.storage) || olds.storage !== news.storage ? ["storage"] : [];
    const changes = replaces.length > 0 || olds.isMountpoint !== WANT || !same(olds.api, news.api);
    return { changes, replaces, deleteBeforeReplace: false };
  },
  async create(inputs: DirMountpointInputs) {
    return { id: inputs.storage, outs: await converge(inputs) };
  },
  async read(id: string, props: DirMountpointOutputs) {
    const s = await withTokenApi(props.api, (api) => api.storages()).then((all) => all.find((x) => x.storage === props.storage));
    if (!s) return { id: "", props: {} };
    return { id, props: { ...props, isMountpoint: String(s.is_mountpoint ?? "") } };
  },
  async update(_id: string, _olds: DirMountpointOutputs, news: DirMountpointInputs) {
    return { outs: await converge(news) };
  },
  async delete() {
    // The option goes with its storage; a storage Phoenix stops managing keeps it, which only makes it safer.
  },
};
