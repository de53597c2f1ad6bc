/**
 * LxcTemplate: one LXC template built end to end — created from its source
 * (a catalogue OS image, downloaded once, or a linked clone of another
 * template), started, set up by its layer's script through `pct exec` on the
 * node, stopped and converted to a Proxmox template.
 *
 * Identity: a build hash over the source (for a clone: the source's own build
 * hash), the machine settings and the rendered setup script, so a new version
 * or a changed script is a new build. The hash is kept in the template's
 * description, where `read` finds it.
 *
 * Lifecycle policy, because Proxmox cannot destroy a template that has linked
 * clones and Phoenix never rebuilds a template under running guests:
 * - A changed build replaces the template under the same vmid (delete before
 *   create) only while no guest is a linked clone of it. Derived templates
 *   (templates cloned from it) are not guests: their hash includes this one's,
 *   so they are rebuilt with it.
 * - If guests are linked clones, `pulumi preview` fails naming them: build the
 *   new version as a new template (a new vmid), move guests to it by changing
 *   their `clone`, and keep the old one `frozen` — built as it is, whatever its
 *   declaration says — until no guest clones it; then remove it.
 * - `delete` refuses while any linked clone exists, naming the clones.
 * - Before a build is destroyed (a rebuild, or the template's removal) it is archived, when
 *   `keepBuilds` is set: PVE cannot snapshot a template ("you can't take a snapshot if it's a
 *   template", pve-guest-common@6.0.2 src/PVE/AbstractConfig.pm __snapshot_prepare), so Phoenix
 *   backs it up with vzdump to `keepBuilds.storage`, its notes naming the build
 *   (`phoenix-template <name> build <hash>`), and keeps the last `keepBuilds.keep` of those per
 *   vmid. `pct restore <vmid> <archive>` brings one back.
 */
import * as crypto from "crypto";
import * as pulumi from "@pulumi/pulumi";
import { Checker, isUnknown, same, UNKNOWN } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { withTokenApi, type ApiAccess, type GuestConfig, type PveApi, type StorageVolume } from "../pve";
import { runScriptChecked, type SshConnection } from "../ssh";
import { renderInContainer, renderLayer, renderSeal, type LayerSpec } from "./layers";

/** Where a build is archived before it is destroyed, and how many of a template's archives to keep. */
export interface KeepBuilds {
  /** A storage with `backup` content. */
  storage: string;
  keep: number;
}

export type TemplateSource = { catalogue: string; storage: string } | { clone: number; /** The source template's build hash. */ build: string };

export interface LxcTemplateInputs {
  api: ApiAccess;
  connection: SshConnection;
  node: string;
  vmid: number;
  name: string;
  source: TemplateSource;
  /** Storage of the root disk. */
  storage: string;
  cores: number;
  memoryMiB: number;
  swapMiB: number;
  diskGiB: number;
  unprivileged: boolean;
  features: { nesting: boolean; keyctl: boolean; fuse: boolean };
  tags: string[];
  /** The bridge the container reaches package mirrors through while it is built (DHCP). */
  bridge: string;
  nameserver?: string;
  layer: LayerSpec;
  /** Keep the template as built, ignoring changes to its declaration (see the policy above). */
  frozen: boolean;
  /** Archive each build with vzdump before it is destroyed (see the policy above). */
  keepBuilds?: KeepBuilds;
  /** Computed by check from everything above that shapes the template. */
  buildHash: string;
}

export interface LxcTemplateOutputs extends LxcTemplateInputs {
  /** The template's root volume, which its linked clones are based on. */
  volume: string;
}

export interface LxcTemplateArgs {
  /** The API, with the stack's token (creating and cloning containers needs no root@pam). */
  api: pulumi.Input<ApiAccess>;
  /** SSH to the node, for `pct exec`: the API cannot run commands in a container. */
  connection: pulumi.Input<SshConnection>;
  node: pulumi.Input<string>;
  vmid: pulumi.Input<number>;
  name: pulumi.Input<string>;
  /** A catalogue image, or another template (give its buildHash output as `build`, which also orders the two). */
  source: pulumi.Input<TemplateSource>;
  storage: pulumi.Input<string>;
  cores: pulumi.Input<number>;
  memoryMiB: pulumi.Input<number>;
  swapMiB: pulumi.Input<number>;
  diskGiB: pulumi.Input<number>;
  unprivileged: pulumi.Input<boolean>;
  features: pulumi.Input<LxcTemplateInputs["features"]>;
  tags: pulumi.Input<string[]>;
  /** Bridge of the build-time NIC (DHCP). */
  bridge: pulumi.Input<string>;
  /** DNS server while building. */
  nameserver?: pulumi.Input<string>;
  /** What the setup script installs. */
  layer: pulumi.Input<LayerSpec>;
  /** Keep the existing build even though the declaration changed. Default false. */
  frozen?: pulumi.Input<boolean>;
  /** Archive each build before it is destroyed. */
  keepBuilds?: pulumi.Input<KeepBuilds>;
}

export const lxcTemplateProvider = dynamicProvider<LxcTemplateInputs, LxcTemplateOutputs>("template/lxc-template");

export class LxcTemplate extends DynamicResource {
  declare readonly buildHash: pulumi.Output<string>;
  declare readonly volume: pulumi.Output<string>;
  declare readonly vmid: pulumi.Output<number>;

  constructor(name: string, args: LxcTemplateArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      lxcTemplateProvider,
      name,
      { buildHash: undefined, volume: undefined, ...args, frozen: args.frozen ?? false, api: pulumi.secret(args.api), connection: pulumi.secret(args.connection) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api", "connection"] }),
      "phoenix/template",
      "LxcTemplate",
    );
  }
}

function hasUnknown(v: unknown): boolean {
  if (isUnknown(v)) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (v && typeof v === "object") return Object.values(v).some(hasUnknown);
  return false;
}

const BUILD_KEYS = ["node", "vmid", "name", "source", "storage", "cores", "memoryMiB", "swapMiB", "diskGiB", "unprivileged", "features", "tags", "bridge", "nameserver"] as const;

/** The build's identity: what shapes the template, including the exact script its layer runs. */
export function buildHashOf(inputs: Pick<LxcTemplateInputs, (typeof BUILD_KEYS)[number] | "layer">): string {
  const shape = Object.fromEntries(BUILD_KEYS.map((k) => [k, inputs[k] ?? null]));
  const canonical = JSON.stringify({ shape, script: renderLayer(inputs.layer) }, (_k, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v,
  );
  return crypto.createHash("sha256").update(canonical).digest("hex");
}

const BUILD_MARK = /^phoenix-build: ([0-9a-f]{64})$/m;

function description(i: LxcTemplateInputs): string {
  return `Phoenix ${i.layer.layer} template ${i.name}; clones of it are linked: do not destroy or modify it by hand.\nphoenix-build: ${i.buildHash}`;
}


async function configOf(api: PveApi, node: string, vmid: number): Promise<GuestConfig | undefined> {
  const guests = await api.listGuests(node, "lxc");
  return guests.some((g) => g.vmid === vmid) ? api.guestConfig(node, "lxc", vmid) : undefined;
}

const volumeOf = (config: GuestConfig) => String(config.rootfs ?? "").split(",")[0] ?? "";

/** Containers whose root disk is a linked clone of this template's, with whether each is itself a template. */
export async function linkedClones(api: PveApi, node: string, vmid: number): Promise<Array<{ vmid: number; template: boolean }>> {
  const config = await configOf(api, node, vmid);
  if (!config) return [];
  const volume = volumeOf(config);
  const storage = volume.split(":")[0] ?? "";
  const [volumes, guests] = await Promise.all([api.storageContent(node, storage), api.listGuests(node, "lxc")]);
  const ids = new Set(volumes.filter((v) => v.volid.startsWith(`${volume}/`) && v.vmid !== undefined).map((v) => v.vmid!));
  return [...ids].sort((a, b) => a - b).map((id) => ({ vmid: id, template: guests.find((g) => g.vmid === id)?.template === 1 }));
}

function outputsOf(inputs: LxcTemplateInputs, config: GuestConfig): LxcTemplateOutputs {
  const built = Number(config.template ?? 0) === 1 ? (BUILD_MARK.exec(String(config.description ?? ""))?.[1] ?? "") : "";
  return { ...inputs, buildHash: built, volume: volumeOf(config) };
}

function machineParams(i: LxcTemplateInputs) {
  const features = (["fuse", "keyctl", "nesting"] as const).filter((f) => i.features[f]).map((f) => `${f}=1`);
  return {
    hostname: i.name,
    description: description(i),
    cores: i.cores,
    memory: i.memoryMiB,
    swap: i.swapMiB,
    tags: i.tags.length > 0 ? i.tags.join(";") : undefined,
    net0: `name=eth0,bridge=${i.bridge},ip=dhcp`,
    nameserver: i.nameserver,
    features: features.length > 0 ? features.join(",") : undefined,
  };
}

/** Ensures the catalogue image is on its storage, downloading it (PVE checks the catalogue's sha512) only when absent. */
async function ensureOsImage(api: PveApi, node: string, storage: string, file: string): Promise<string> {
  const volid = `${storage}:vztmpl/${file}`;
  if ((await api.storageContent(node, storage, "vztmpl")).some((v) => v.volid === volid)) return volid;
  const catalogue = await api.aplinfo(node);
  if (!catalogue.some((e) => e.template === file)) {
    const os = file.split("_")[0] ?? file;
    const near = catalogue.filter((e) => e.template.startsWith(os.split("-").slice(0, 2).join("-"))).map((e) => e.template);
    throw new Error(`OS template ${file} is not in node ${node}'s catalogue (pveam available)${near.length > 0 ? `; it has ${near.join(", ")}` : ""}: fix templates[].source.catalogue`);
  }
  await api.downloadTemplate(node, storage, file);
  return volid;
}

async function createFromSource(api: PveApi, i: LxcTemplateInputs): Promise<void> {
  const params = machineParams(i);
  if ("catalogue" in i.source) {
    const ostemplate = await ensureOsImage(api, i.node, i.source.storage, i.source.catalogue);
    await api.createContainer(i.node, { vmid: i.vmid, ostemplate, rootfs: `${i.storage}:${i.diskGiB}`, unprivileged: i.unprivileged, ...params });
    return;
  }
  const src = i.source;
  const source = await configOf(api, i.node, src.clone);
  const sourceBuild = source ? outputsOf(i, source).buildHash : "";
  if (sourceBuild !== src.build) {
    throw new Error(`template ${i.vmid}: its source ${src.clone} is not the expected build (${sourceBuild || "not a Phoenix template"}); build ${src.clone} first`);
  }
  await api.cloneContainer(i.node, src.clone, i.vmid, { hostname: i.name, description: params.description, full: false });
  const { hostname: _h, description: _d, ...rest } = params;
  await api.updateGuestConfig(i.node, "lxc", i.vmid, rest);
  const size = Number(/(?:^|,)size=(\d+)G/.exec(String(source?.rootfs ?? ""))?.[1] ?? 0);
  if (i.diskGiB > size) await api.resizeGuestDisk(i.node, "lxc", i.vmid, "rootfs", `${i.diskGiB}G`);
}

/** Builds the template, or finishes a build an earlier attempt left as a plain container. */
async function build(i: LxcTemplateInputs): Promise<LxcTemplateOutputs> {
  return withTokenApi(i.api, async (api) => {
    let config = await configOf(api, i.node, i.vmid);
    if (config && BUILD_MARK.exec(String(config.description ?? ""))?.[1] !== i.buildHash) {
      throw new Error(
        `CT ${i.vmid} already exists on ${i.node} and is not this build of template ${i.name}: Phoenix does not adopt or overwrite it. ` +
          "Remove it (pct destroy) if it is a leftover, or give the template another vmid",
      );
    }
    if (config && Number(config.template ?? 0) === 1) return outputsOf(i, config);
    if (!config) await createFromSource(api, i);
    if ((await api.guestStatus(i.node, "lxc", i.vmid)).status !== "running") await api.setGuestState(i.node, "lxc", i.vmid, "start");
    await runScriptChecked(i.connection, `set up the ${i.layer.layer} layer of template ${i.vmid}`, renderInContainer(i.vmid, renderLayer(i.layer)), { timeoutMs: 3_600_000 });
    await runScriptChecked(i.connection, `seal template ${i.vmid}`, renderInContainer(i.vmid, renderSeal()));
    await api.setGuestState(i.node, "lxc", i.vmid, "shutdown", { timeout: 120, forceStop: true });
    await api.convertToTemplate(i.node, "lxc", i.vmid);
    config = await api.guestConfig(i.node, "lxc", i.vmid);
    return outputsOf(i, config);
  });
}

/** The notes of a build's archive; the prefix is how Phoenix tells its archives from others' backups of the vmid. */
export const ARCHIVE_NOTES = "phoenix-template";
export const archiveNotes = (i: Pick<LxcTemplateOutputs, "name" | "buildHash">) => `${ARCHIVE_NOTES} ${i.name} build ${i.buildHash.slice(0, 12)}`;

/**
 * Backs the template up before it is destroyed, then deletes Phoenix's archives of this vmid beyond
 * `keep`, oldest first. POST /nodes/{node}/vzdump with the vmid (a template is never running, so
 * vzdump backs it up in `stop` mode: pve-manager@9.2.11 PVE/VZDump.pm exec_backup_task, and
 * pve-container VZDump/LXC.pm mounts its base volumes read-only); `notes-template` becomes the
 * archive's notes (VZDump.pm generate_notes), which GET …/storage/{storage}/content returns
 * (pve-storage@9.1.7 API2/Storage/Content.pm index: `notes`, its first line; `protected`). An
 * archive is removed with DELETE …/content/{volume}.
 *
 * `prune-backups: keep-all=1`: vzdump otherwise prunes the vmid's backups on the storage by the
 * storage's own retention after the backup (`remove` defaults to 1), whoever made them, or, with
 * `remove` off, refuses past that retention's count (VZDump.pm exec_backup_task "max backup
 * limit"; pve-guest-common VZDump/Common.pm `prune-backups` "instead of those from the storage
 * configuration"). Only Phoenix's own archives are pruned, here, and never a protected one (PVE
 * refuses to remove it, and its own pruning keeps it).
 */
export async function archiveBuild(api: PveApi, t: LxcTemplateOutputs, keep: KeepBuilds): Promise<{ archived: string; pruned: string[] }> {
  const content = `/nodes/${encodeURIComponent(t.node)}/storage/${encodeURIComponent(keep.storage)}/content`;
  const phoenixArchives = async () =>
    (await api.client.get<Array<StorageVolume & { notes?: string; protected?: boolean | number }>>(content, { content: "backup", vmid: t.vmid }))
      .filter((v) => v.vmid === t.vmid && (v.notes ?? "").startsWith(`${ARCHIVE_NOTES} `))
      .sort((a, b) => a.ctime - b.ctime || a.volid.localeCompare(b.volid));
  const before = new Set((await phoenixArchives()).map((v) => v.volid));
  await api.runTask("POST", `/nodes/${encodeURIComponent(t.node)}/vzdump`, { vmid: String(t.vmid), storage: keep.storage, mode: "stop", compress: "zstd", "notes-template": archiveNotes(t), "prune-backups": "keep-all=1" });
  const listed = await phoenixArchives();
  // This build's archive is one that was not there before: an older one is no copy of it.
  const archived = listed.filter((v) => !before.has(v.volid) && v.notes === archiveNotes(t)).at(-1)?.volid;
  if (!archived) throw new Error(`template ${t.vmid} (${t.name}): vzdump reported success but no new archive with notes ${archiveNotes(t)} is on ${keep.storage}; the template is left as it is`);
  const prunable = listed.filter((v) => !v.protected);
  const pruned = prunable.slice(0, Math.max(0, prunable.length - keep.keep)).map((v) => v.volid);
  for (const volid of pruned) await api.runTask("DELETE", `${content}/${encodeURIComponent(volid)}`);
  return { archived, pruned };
}

function cloneList(clones: Array<{ vmid: number }>): string {
  return clones.map((c) => c.vmid).join(", ");
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`LXC template ${String(news.vmid)}`);
    c.connection(news.connection);
    c.string("node", news.node, /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, "a node name");
    if (!isUnknown(news.vmid)) c.require("vmid", Number.isInteger(news.vmid) && (news.vmid as number) >= 100, "vmid must be an integer of at least 100");
    c.string("name", news.name, /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/, "a hostname");
    const api = news.api as Partial<ApiAccess> | undefined;
    if (!isUnknown(api)) c.require("api", ["endpoint", "tokenId", "tokenSecret"].every((k) => typeof api?.[k as keyof ApiAccess] === "string"), "api must be { endpoint, tokenId, tokenSecret, caPem?, insecure? }");
    const keepBuilds = news.keepBuilds as Partial<KeepBuilds> | undefined;
    if (keepBuilds !== undefined && !isUnknown(keepBuilds)) {
      c.require("keepBuilds", typeof keepBuilds.storage === "string" && /^[a-zA-Z][a-zA-Z0-9\-_.]*$/.test(keepBuilds.storage), "keepBuilds.storage must be a storage id");
      c.require("keepBuilds", Number.isInteger(keepBuilds.keep) && (keepBuilds.keep as number) >= 1, "keepBuilds.keep must be at least 1");
    }
    const frozen = news.frozen ?? false;
    const inputs = { ...news, frozen };
    // During preview the build is as unknown as anything it is made of; diff then says "replace", as it may be.
    if (hasUnknown(inputs)) return { inputs: { ...inputs, buildHash: UNKNOWN }, failures: c.failures };
    try {
      return { inputs: { ...inputs, buildHash: buildHashOf(inputs as unknown as LxcTemplateInputs) }, failures: c.failures };
    } catch (err) {
      c.require("layer", false, (err as Error).message);
      return { inputs, failures: c.failures };
    }
  },

  async diff(_id: string, olds: LxcTemplateOutputs, news: LxcTemplateInputs) {
    const moved = !same(olds.node, news.node) || !same(olds.vmid, news.vmid);
    const rebuild = !news.frozen && !same(olds.buildHash, news.buildHash);
    const changed = ["api", "connection", "frozen", "keepBuilds"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]));
    if (!moved && !rebuild) return { changes: changed.length > 0 };
    if (rebuild && !moved && !isUnknown(news.buildHash) && !hasUnknown(news.api)) {
      const guests = (await withTokenApi(news.api, (api) => linkedClones(api, olds.node, olds.vmid))).filter((c) => !c.template);
      if (guests.length > 0) {
        throw new Error(
          `template ${olds.vmid} (${olds.name}) changed (source, setup script or versions), but guests ${cloneList(guests)} are linked clones of it. ` +
            "Proxmox cannot destroy a template that has linked clones, and Phoenix never rebuilds a template under its guests. " +
            `Declare the new build as a new template with its own vmid, move guests to it by changing their clone, and keep template ${olds.vmid} frozen until no guest clones it; or destroy those guests first`,
        );
      }
    }
    // Same vmid: the old template must go before the new one can be built in its place.
    return { changes: true, replaces: moved ? ["vmid"] : ["buildHash"], deleteBeforeReplace: !moved };
  },

  async create(inputs: LxcTemplateInputs) {
    return { id: `${inputs.node}/${inputs.vmid}`, outs: await build(inputs) };
  },

  async read(id: string, props: LxcTemplateOutputs) {
    const config = await withTokenApi(props.api, (api) => configOf(api, props.node, props.vmid));
    return config ? { id, props: outputsOf(props, config) } : { id: "", props: {} };
  },

  async update(_id: string, olds: LxcTemplateOutputs, news: LxcTemplateInputs) {
    // Only access or `frozen` changed: the template on the node stays as built.
    const { keepBuilds: _k, ...kept } = olds;
    return { outs: { ...kept, api: news.api, connection: news.connection, frozen: news.frozen, ...(news.keepBuilds ? { keepBuilds: news.keepBuilds } : {}) } };
  },

  async delete(_id: string, props: LxcTemplateOutputs) {
    await withTokenApi(props.api, async (api) => {
      const clones = await linkedClones(api, props.node, props.vmid);
      if (clones.length > 0) {
        throw new Error(
          `refusing to destroy template ${props.vmid} (${props.name}): containers ${cloneList(clones)} are linked clones of it and would lose their base disk (Proxmox refuses too). ` +
            "Destroy or move those first, or keep the template declared (frozen) until they are gone",
        );
      }
      const config = await configOf(api, props.node, props.vmid);
      if (!config) return;
      // A finished build only: a half-built container (not yet a template) holds nothing to go back to.
      if (props.keepBuilds && Number(config.template ?? 0) === 1) await archiveBuild(api, props, props.keepBuilds);
      if ((await api.guestStatus(props.node, "lxc", props.vmid)).status === "running") await api.setGuestState(props.node, "lxc", props.vmid, "stop");
      await api.deleteGuest(props.node, "lxc", props.vmid);
    });
  },
};
