/**
 * `npm run move -- <stack> <guest name or vmid> <node> [--yes]`: moves a guest to another node of
 * the cluster with PVE's migrate API, never by destroy and create, then points the Pulumi state at
 * the new node so the next `pulumi preview` changes nothing of the guest once the stack declares it.
 *
 * Why a script: bpg v0.111.1 cannot move a container (node_name is ForceNew, and its read looks on
 * the node in its state: stacks/replacement.ts header), so the destroy guard refuses a container's
 * node change in preview and points here. A VM on shared storage also moves with `pulumi up`
 * (bpg's `migrate`); this works for one all the same.
 *
 * Without --yes it only shows what it would do. Everything PVE would refuse is checked first, with
 * reads only, and all refusals are listed together:
 * - the stack, with the guest declared on the target, validates (scripts' own loadStack rules: its
 *   GPUs, datasets, template and the node's capacity), so that step 3 can declare it there;
 * - the target is a node of the stack (proxmox.nodes) and of the cluster, online (GET
 *   /cluster/status, pve-manager 14a22df3 PVE/API2/Cluster.pm get_status `online`), and so is the
 *   guest's node: pveproxy proxies the call to it (`proxyto => 'node'`);
 * - the guest exists and holds no lock (GET /cluster/resources, Cluster.pm resources: `node`,
 *   `status`, `lock`): pve-container 94f5585 src/PVE/LXC/Migrate.pm prepare check_lock, qemu-server
 *   e6352be6 src/PVE/QemuMigrate.pm the same;
 * - it is not an HA resource (GET /cluster/ha/resources, sid `ct:<vmid>`/`vm:<vmid>`, or guests[].ha),
 *   unless already on the target (the HA manager moved it; then only the state is pointed at it): for one,
 *   migrate_vm hands the move to the HA manager instead (pve-container src/PVE/API2/LXC.pm
 *   migrate_vm and qemu-server src/PVE/API2/Qemu.pm migrate_vm: a `hamigrate` task that only runs
 *   `ha-manager migrate <sid> <target>` and ends before the guest moves; pve-ha-manager b71218f
 *   src/PVE/HA/Resources/PVECT.pm migrate: the CRM stops a container and migrates it offline);
 * - its volumes can go: a bind or device mount point not marked `shared` is refused
 *   (Migrate.pm prepare "cannot migrate local bind mount point"), a storage restricted to other
 *   nodes is refused (storage_check_enabled on the target), and a volume on local storage that
 *   is a linked clone is refused (Migrate.pm phase1 "clone of '<base>'", QemuMigrate.pm the same:
 *   the base is pve-storage 0c56bad parse_volname's 4th value, `<base>/<volume>` in the name,
 *   src/PVE/Storage/ZFSPoolPlugin.pm and Plugin.pm); a local volume that is not a clone is copied.
 *
 * Then, with --yes: POST /nodes/{node}/lxc/{vmid}/migrate with `target` and, for a running
 * container, `restart` (Migrate.pm: shut down, move, start on the target; a stopped one moves
 * offline), or POST /nodes/{node}/qemu/{vmid}/migrate with `online` for a running VM
 * (`with-local-disks` when a disk is local); waits for the task; checks in /cluster/resources that
 * the guest is on the target. A guest already there is not migrated again (a run that stopped
 * after the migration is finished by running it again).
 *
 * The state: `pulumi stack export --stack <s> --file <backup>`, the guest's resources pointed at
 * the target, `pulumi stack import --stack <s> --file <rewritten>` (pulumi v3.248.0
 * pkg/cmd/pulumi/stack/stack_export.go and stack_import.go: `--stack`, `--file`; a deployment is
 * `{version: 3, deployment: {manifest, secrets_providers, resources, pending_operations}}`,
 * sdk/go/common/apitype/core.go DeploymentV3, ResourceV3 with `inputs` and `outputs`). Which
 * resources: every custom resource whose inputs or outputs name the guest's vmid (`vmId` of bpg's
 * VM and firewall resources, `containerId` of a container's firewall, `vmId` of the container
 * itself, `vmid` of Phoenix's GuestDisk, LxcRootConfig, GuestSnapshot and Portainer agent secret:
 * components/guest, components/firewall.ts, components/docker), whose top-level `nodeName` (bridged,
 * camelCase as @muhlba91/pulumi-proxmoxve names it) or `node` (Phoenix's) changes; `clone.nodeName`
 * is the template's node and stays. And the destroy guard's record of the guest (`guests[].node`).
 * Secret values are ciphertext in the export (`{"4dabf18193072939515e22adb298388d":
 * "1b47061264138c4ac30d75fd1eb44270", "ciphertext": …}`, sdk/go/common/resource/sig/sig.go) and
 * are neither read nor printed; the files stay in a private folder. So a node inside a secret stays
 * as it was: the SSH connections of remote commands and of Phoenix's resources that reach the guest
 * through its node (install scripts, LxcRootConfig's transport, the Portainer agent secret) keep the
 * old node's until the next `pulumi up` updates them. `pulumi stack import` overwrites whatever the
 * state became since the export (pulumi v3.248.0 pkg/cmd/pulumi/stack/io.go SaveSnapshot), so the
 * state is exported again after the migration and imported over only when unchanged.
 *
 * Exit 0 when done (or shown, without --yes), 1 when refused or failed, 2 on a usage error.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isDeepStrictEqual, promisify } from "node:util";
import type { GuestKind, PveApi } from "../providers/pve";
import { guardedGuests, restoreProcedure } from "../stacks/replacement";
import { formatIssues, readStackFile, validateStack, type RawStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";
import { isSharedStorage } from "../stacks/shared-storage";
import { describeError, runCli } from "./cli";
import { loadStack, openGuestCommand, stackApi } from "./stack-guest";

const USAGE = "usage: npm run move -- <stack> <guest name or vmid> <node> [--yes]";

export interface MoveArgs {
  stack: string;
  guest: string;
  node: string;
  yes: boolean;
}

export function parseArgs(argv: readonly string[]): MoveArgs | string {
  const unknown = argv.find((a) => a.startsWith("-") && a !== "--yes");
  if (unknown) return `unknown option ${unknown}\n${USAGE}`;
  const positional = argv.filter((a) => !a.startsWith("-"));
  if (positional.length !== 3) return USAGE;
  const [stack, guest, node] = positional as [string, string, string];
  return { stack, guest, node, yes: argv.includes("--yes") };
}

/** A guest, by vmid, declared on another node. */
export interface Moved {
  vmid: number;
  node: string;
}

/** The stack file's values with guest `vmid` declared on `node`, as step 3 asks the user to write it. */
export function withGuestOn(raw: RawStack, moved: Moved): RawStack {
  const guests = raw.values.guests;
  if (!Array.isArray(guests)) return raw;
  const on = (g: unknown) => (g !== null && typeof g === "object" && (g as Record<string, unknown>).vmid === moved.vmid ? { ...g, node: moved.node } : g);
  return { ...raw, values: { ...raw.values, guests: guests.map(on) } };
}

export interface MoveDeps {
  /**
   * The stack's validated configuration, or why it has none (scripts/stack-guest.ts loadStack);
   * with `moved`, the stack as it reads once it declares that guest's `node` (step 3 of a move).
   */
  load(stack: string, moved?: Moved): StackConfig | string;
  api(stack: string, config: StackConfig): Promise<PveApi>;
  /** Runs the pulumi CLI with these arguments in the project folder; rejects when it fails. */
  pulumi(args: readonly string[]): Promise<void>;
  /** A new private folder for the export and its rewritten copy. */
  workDir(): string;
  out(line: string): void;
}

// ---------------------------------------------------------------------------------------------
// The state: a deployment as `pulumi stack export` writes it.

/** pulumi sdk/go/common/resource/sig/sig.go: the key and value that mark a secret. */
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SIG_SECRET = "1b47061264138c4ac30d75fd1eb44270";

interface ResourceV3 {
  urn: string;
  custom: boolean;
  type: string;
  id?: string;
  inputs?: Record<string, unknown>;
  outputs?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface UntypedDeployment {
  version: number;
  deployment: { resources?: ResourceV3[]; pending_operations?: unknown[]; [k: string]: unknown };
}

/** One rewritten value: where, and what it was. */
export interface StateChange {
  urn: string;
  field: string;
  from: string;
}

const DESTROY_GUARD_TYPE = "pulumi-nodejs:dynamic/phoenix/guest:DestroyGuard";
/** The keys by which a resource names its guest (bridged: camelCase as the SDK names them; Phoenix's dynamic resources: `vmid`). */
const VMID_KEYS = ["vmId", "containerId", "vmid"] as const;
const NODE_KEYS = ["nodeName", "node"] as const;
const BRIDGED_GUEST_TYPES: Record<GuestKind, string> = { lxc: "proxmoxve:index/containerLegacy:ContainerLegacy", qemu: "proxmoxve:index/vmLegacy:VmLegacy" };

const isSecret = (v: unknown): boolean => v !== null && typeof v === "object" && (v as Record<string, unknown>)[SIG_KEY] === SIG_SECRET;
const namesGuest = (props: Record<string, unknown> | undefined, vmid: number) => props !== undefined && VMID_KEYS.some((k) => props[k] === vmid || props[k] === String(vmid));

/**
 * The deployment with the guest's resources pointed at node `to` (see the header), and what
 * changed. Pure: the input is not modified. A node held as a secret is left as it is.
 */
export function rewriteGuestNode(deployment: UntypedDeployment, vmid: number, to: string): { deployment: UntypedDeployment; changes: StateChange[] } {
  const copy = structuredClone(deployment);
  const changes: StateChange[] = [];
  const set = (urn: string, field: string, holder: Record<string, unknown>, key: string) => {
    const was = holder[key];
    if (typeof was !== "string" || was === to) return;
    holder[key] = to;
    changes.push({ urn, field, from: was });
  };
  for (const r of copy.deployment.resources ?? []) {
    if (!r.custom) continue;
    for (const side of ["inputs", "outputs"] as const) {
      const props = r[side];
      if (!props || isSecret(props)) continue;
      if (r.type === DESTROY_GUARD_TYPE) {
        const guests = props.guests;
        if (!Array.isArray(guests)) continue;
        guests.forEach((g: unknown, i) => {
          if (g !== null && typeof g === "object" && !isSecret(g) && (g as Record<string, unknown>).vmid === vmid) set(r.urn, `${side}.guests[${i}].node`, g as Record<string, unknown>, "node");
        });
        continue;
      }
      if (!namesGuest(r.inputs, vmid) && !namesGuest(r.outputs, vmid)) continue;
      for (const key of NODE_KEYS) set(r.urn, `${side}.${key}`, props, key);
    }
  }
  return { deployment: copy, changes };
}

// ---------------------------------------------------------------------------------------------
// What PVE would refuse.

interface ClusterGuest {
  vmid: number;
  type: string;
  node: string;
  status: string;
  lock?: string;
}

/** The volumes of a guest's config: `[key, volid]`, and bind/device mount points as `[key, path, shared]`. */
function volumesOf(kind: GuestKind, config: Record<string, string | number>): { volumes: Array<[string, string]>; binds: Array<[string, string]> } {
  const volumes: Array<[string, string]> = [];
  const binds: Array<[string, string]> = [];
  const diskKey = kind === "lxc" ? /^(rootfs|mp\d+|unused\d+)$/ : /^((scsi|virtio|sata|ide)\d+|efidisk0|tpmstate0|unused\d+)$/;
  for (const [key, raw] of Object.entries(config)) {
    if (!diskKey.test(key)) continue;
    const parts = String(raw).split(",");
    const volume = (parts.find((p) => p.startsWith("volume=") || p.startsWith("file=")) ?? parts[0] ?? "").replace(/^(volume|file)=/, "");
    if (volume === "" || volume === "none") continue;
    // pve-container src/PVE/LXC/Config.pm classify_mountpoint: a path is a bind mount, /dev/… a device.
    if (kind === "lxc" && volume.startsWith("/")) {
      if (!parts.includes("shared=1")) binds.push([key, volume]);
      continue;
    }
    if (volume.includes(":")) volumes.push([key, volume]);
  }
  return { volumes, binds };
}

/** pve-storage parse_volname's base (4th value): a linked clone is named `<base>/<volume>`, the base being `base-<vmid>-…` or `basevol-<vmid>-…` (dir: `<vmid>/base-…/<vmid>/…`). */
const cloneBase = (volid: string): string | undefined => /(?:^|\/)((?:base|basevol)-\d+-[^/]+)\/./.exec(volid.slice(volid.indexOf(":") + 1))?.[1];

interface Check {
  refusals: string[];
  /** Where the guest is now, when it exists. */
  now?: ClusterGuest;
  localVolumes: string[];
}

/** `declaredHa`: the stack makes it an HA resource (guests[].ha), which the last apply may not have made yet. */
async function checkLive(api: PveApi, kind: GuestKind, vmid: number, to: string, at: string, label: string, declaredHa: boolean): Promise<Check> {
  const refusals: string[] = [];
  const status = await api.client.get<Array<{ type: string; name: string; online?: number }>>("/cluster/status");
  const online = new Map(status.filter((s) => s.type === "node").map((s) => [s.name, s.online === 1]));
  if (!online.has(to)) refusals.push(`phoenix:proxmox.nodes: ${to} is not a node of the cluster (GET /cluster/status lists ${[...online.keys()].join(", ")})`);
  else if (!online.get(to)) refusals.push(`phoenix:proxmox.nodes: node ${to} is offline (GET /cluster/status): PVE cannot reach it to migrate ${label}; bring it back first`);
  const resources = await api.client.get<ClusterGuest[]>("/cluster/resources", { type: "vm" });
  const now = resources.find((r) => Number(r.vmid) === vmid);
  if (!now) return { refusals: [...refusals, `phoenix:${at}: ${label} does not exist in the cluster (GET /cluster/resources)`], localVolumes: [] };
  if (now.type !== kind) return { refusals: [...refusals, `phoenix:${at}.kind: vmid ${vmid} is a ${now.type === "lxc" ? "container" : "VM"} in the cluster, not a ${kind === "lxc" ? "container" : "VM"}`], localVolumes: [] };
  if (now.node === to) return { refusals, now, localVolumes: [] };
  if (online.get(now.node) === false) refusals.push(`phoenix:${at}: ${label}'s node ${now.node} is offline (GET /cluster/status): PVE cannot migrate it from there`);
  if (now.lock) refusals.push(`phoenix:${at}: ${label} is locked (${now.lock}): PVE refuses to migrate it (check_lock); wait for the task that holds it, or \`${kind === "lxc" ? "pct" : "qm"} unlock ${vmid}\` on ${now.node} once none runs`);
  const sid = `${kind === "lxc" ? "ct" : "vm"}:${vmid}`;
  const ha = await api.client.get<Array<{ sid: string }>>("/cluster/ha/resources");
  // Only for a guest still to move: one the HA manager already moved to the target gets its state pointed there (below).
  if (declaredHa || ha.some((r) => r.sid === sid)) {
    refusals.push(
      `phoenix:${at}.ha: ${label} is an HA resource (${sid}): PVE hands its migration to the HA manager, which moves it when its rules allow (for a container: stop, migrate, start). ` +
        `Move it through HA: let its node-affinity rule allow ${to} (guests[].ha.nodes), then \`ha-manager migrate ${sid} ${to}\` (POST /cluster/ha/resources/${sid}/migrate); once it runs on ${to}, run this again to point the state at it`,
    );
  }
  if (online.get(now.node) === false) return { refusals, now, localVolumes: [] };
  const config = (await api.guestConfig(now.node, kind, vmid)) as Record<string, string | number>;
  const { volumes, binds } = volumesOf(kind, config);
  for (const [key, p] of binds) {
    refusals.push(`phoenix:${at}.mounts: ${label}'s ${key} is ${p.startsWith("/dev/") ? "the device" : "a bind mount of"} ${p} on ${now.node}, which PVE does not migrate ("cannot migrate local ${p.startsWith("/dev/") ? "device" : "bind"} mount point '${key}'"): its data stays on ${now.node}. Move that data to ${to} and declare it there, or remove the mount, first`);
  }
  const storages = new Map((await api.storages()).map((s) => [s.storage, s]));
  const localVolumes: string[] = [];
  for (const [key, volid] of volumes) {
    const sid = volid.split(":")[0]!;
    const s = storages.get(sid);
    const on = String(s?.nodes ?? "").split(",").filter((n) => n !== "");
    if (!s || (on.length > 0 && !on.includes(to))) {
      refusals.push(`phoenix:${at}.storage: ${label}'s ${key} (${volid}) is on storage ${sid}, which node ${to} does not have`);
      continue;
    }
    if (isSharedStorage(s.type, s.shared)) continue;
    const base = cloneBase(volid);
    if (base) refusals.push(`phoenix:${at}.storage: ${label}: ${restoreProcedure({ kind: kind === "lxc" ? "lxc" : "vm", vmid, storage: sid }, now.node, to)} (${key} ${volid} is a clone of ${base})`);
    else localVolumes.push(volid);
  }
  return { refusals, now, localVolumes };
}

// ---------------------------------------------------------------------------------------------

export async function runMove(argv: readonly string[], deps: MoveDeps): Promise<number> {
  const opened = openGuestCommand(argv, parseArgs, (stack) => deps.load(stack), deps.out);
  if (!opened) return 2;
  const { args, config, target } = opened;
  const { kind, label } = target;
  const vmid = target.guest.vmid;
  const index = config.guests.indexOf(target.guest);
  const at = `guests[${index}]`;
  const to = args.node;
  const file = `Pulumi.${args.stack}.yaml`;

  // From the stack alone, before any call.
  const refused: string[] = [];
  const known = config.proxmox.nodes.some((n) => n.name === to);
  if (!known) refused.push(`phoenix:proxmox.nodes: no node ${JSON.stringify(to)} in the stack; it has ${config.proxmox.nodes.map((n) => n.name).join(", ")}`);
  const guarded = guardedGuests(config)[index]!;
  if (guarded.localStorage && target.node !== to) refused.push(`phoenix:${at}.storage: ${label}: ${restoreProcedure(guarded, target.node, to)}`);
  // The stack must accept the guest on the target (its GPUs, storages, template, capacity, HA rules), or step 3 could not declare it there.
  if (known && target.node !== to) {
    const as = deps.load(args.stack, { vmid, node: to });
    if (typeof as === "string") refused.push(`phoenix:${at}.node: with \`node: ${to}\` on ${at} the stack does not validate, so it could not declare ${label} there after the move; fix the stack for ${to} first:\n${as}`);
  }
  if (refused.length > 0) return refuse(deps, label, to, refused);

  const api = await deps.api(args.stack, config);
  try {
    const live = await checkLive(api, kind, vmid, to, at, label, target.guest.ha !== undefined);
    if (live.refusals.length > 0) return refuse(deps, label, to, live.refusals);
    const now = live.now!;
    const from = now.node;
    const moved = from === to;

    // The state, read-only: a backup, and what changes in it.
    const dir = deps.workDir();
    const backup = path.join(dir, `${args.stack}-state-before-move.json`);
    const rewritten = path.join(dir, `${args.stack}-state-moved.json`);
    await deps.pulumi(["stack", "export", "--stack", args.stack, "--file", backup]);
    fs.chmodSync(backup, 0o600);
    const before = JSON.parse(fs.readFileSync(backup, "utf8")) as UntypedDeployment;
    const stateRefusals: string[] = [];
    // pulumi v3.248.0 sdk/go/common/apitype/core.go: DeploymentSchemaVersionCurrent is 3, the format read and written here.
    if (before.version !== 3 || !Array.isArray(before.deployment?.resources)) stateRefusals.push(`\`pulumi stack export\` wrote a deployment of version ${JSON.stringify(before.version)}, not 3 with a resources list: this pulumi is not one Phoenix knows (v3.248.0); point the state at ${to} by hand`);
    else if ((before.deployment.pending_operations ?? []).length > 0) {
      stateRefusals.push(`the state records operations an interrupted run left pending: settle them first (\`pulumi refresh --stack ${args.stack}\`${moved ? "" : ", before the move"})`);
    }
    const { deployment, changes } = rewriteGuestNode(before, vmid, to);
    const own = BRIDGED_GUEST_TYPES[kind];
    if (!(before.deployment.resources ?? []).some((r) => r.type === own && namesGuest(r.inputs, vmid))) stateRefusals.push(`the state of stack ${args.stack} has no ${own.split(":").pop()} of vmid ${vmid}: apply the stack first`);
    if (stateRefusals.length > 0) return refuse(deps, label, to, stateRefusals);

    const mode = kind === "lxc" ? (now.status === "running" ? { restart: 1 } : {}) : { ...(now.status === "running" ? { online: 1 } : {}), ...(live.localVolumes.length > 0 ? { "with-local-disks": 1 } : {}) };
    const call = `POST /nodes/${from}/${kind}/${vmid}/migrate target=${to}${Object.entries(mode).map(([k, v]) => ` ${k}=${v}`).join("")}`;
    deps.out(`${label} is ${now.status} on ${from}. Moving it to ${to}:`);
    if (moved) deps.out(`  1. (already on ${to}: no migration)`);
    else {
      const how = kind === "lxc" ? (now.status === "running" ? "restart mode: it shuts down, moves, and starts on the target" : "offline") : now.status === "running" ? "online: it keeps running" : "offline";
      deps.out(`  1. ${call} (${how}), wait for the task, and check it is on ${to}`);
      for (const v of live.localVolumes) deps.out(`       ${v} is on local storage: PVE copies it to ${to}`);
    }
    deps.out(`  2. point the state at ${to} (\`pulumi stack import --stack ${args.stack} --file ${rewritten}\`), ${changes.length} value(s):`);
    for (const c of changes) deps.out(`       ${c.urn.split("::").pop()} ${c.field}: ${c.from} → ${to}`);
    deps.out(`     backup of the state as it is: ${backup} (\`pulumi stack import --stack ${args.stack} --file ${backup}\` puts it back)`);
    const declared = target.node === to;
    deps.out(
      `  3. ${declared ? `${file} already declares node ${to} for ${at}` : `then declare \`node: ${to}\` on ${at} (${target.guest.name}) in ${file}`}: \`pulumi preview\` then neither replaces nor moves ${label}; ` +
        `what reaches it through its node's SSH (install scripts, checks, the Portainer agent secret) shows one update, run through ${to}: that connection is secret in the state, which this leaves sealed`,
    );
    if (!args.yes) {
      deps.out("Nothing done: run again with --yes to carry it out.");
      return 0;
    }

    if (!moved) {
      const failed = await api.runTask("POST", `/nodes/${encodeURIComponent(from)}/${kind}/${vmid}/migrate`, { target: to, ...mode }).then(
        () => undefined,
        (e: unknown) => describeError(e),
      );
      const after = (await api.client.get<ClusterGuest[]>("/cluster/resources", { type: "vm" })).find((r) => Number(r.vmid) === vmid);
      const where = `${label} is ${after ? `${after.status} on ${after.node}` : "on no node"} (GET /cluster/resources); the state is unchanged`;
      if (failed !== undefined || after?.node !== to) {
        deps.out(`PVE's migration of ${label} to ${to} ${failed === undefined ? "ended" : `failed: ${failed}`}. ${where}.`);
        deps.out(after?.node === to ? `  It did move: run this again to point the state at ${to}.` : `  Fix what PVE says (its task log: the task named above), then run this again.`);
        return 1;
      }
      deps.out(`${label} migrated to ${to} and is ${after.status}.`);
    }
    // pulumi stack import overwrites the state whatever it became since the export (pulumi v3.248.0 pkg/cmd/pulumi/stack/io.go
    // SaveSnapshot checks only the URNs' stack and the snapshot's integrity): a \`pulumi up\` or \`refresh\` run during the
    // migration would be undone. Export again and go on only when nothing changed.
    const recheck = path.join(dir, `${args.stack}-state-before-import.json`);
    await deps.pulumi(["stack", "export", "--stack", args.stack, "--file", recheck]);
    fs.chmodSync(recheck, 0o600);
    if (!isDeepStrictEqual(JSON.parse(fs.readFileSync(recheck, "utf8")), before)) {
      deps.out(`${label} is on ${to}, but the state of stack ${args.stack} changed while it moved (another \`pulumi\` command ran): it was not imported over. Run this again once that command has ended: it rewrites the state as it is then.`);
      return 1;
    }
    fs.writeFileSync(rewritten, JSON.stringify(deployment), { mode: 0o600 });
    try {
      await deps.pulumi(["stack", "import", "--stack", args.stack, "--file", rewritten]);
    } catch (e) {
      deps.out(`${label} is on ${to}, but the state could not be updated: import ${rewritten} with \`pulumi stack import --stack ${args.stack} --file ${rewritten}\` before any \`pulumi refresh\` or \`up\` (or run this again)`);
      throw e;
    }
    deps.out(`The state points at ${to}.${declared ? "" : ` Now declare \`node: ${to}\` on ${at} (${target.guest.name}) in ${file}; until then \`pulumi preview\` refuses it (the stack still says ${target.node}).`}`);
    return 0;
  } finally {
    api.close();
  }
}

function refuse(deps: MoveDeps, label: string, to: string, reasons: string[]): number {
  deps.out(`${label} cannot move to ${to}; nothing was changed:`);
  for (const r of reasons) deps.out(`  refused: ${r}`);
  return 1;
}

const run = promisify(execFile);

/** The CLI's dependencies: the stack file and `pulumi` in `cwd`, the export in a private temporary folder. */
export function cliDeps(cwd: string): MoveDeps {
  return {
    load: (stack, moved) => {
      const config = loadStack(cwd, stack);
      if (typeof config === "string" || !moved) return config;
      const name = `Pulumi.${stack}.yaml`;
      const checked = validateStack(withGuestOn(readStackFile(path.join(cwd, name), name), moved), { requireSecrets: false, projectRoot: cwd });
      return checked.ok === true ? checked.config : checked.ok === false ? `${name}: ${formatIssues(checked.issues)}` : `${name}: values not known: ${checked.unknownPaths.join(", ")}`;
    },
    api: (stack, config) => stackApi(cwd, stack, config),
    pulumi: async (args) => void (await run("pulumi", [...args], { cwd, maxBuffer: 64 * 1024 * 1024 })),
    // mkdtemp makes it 0700 (POSIX mkdtemp(3)): only this user reads the export's ciphertext.
    workDir: () => fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-move-")),
    out: (line) => console.log(line),
  };
}

if (require.main === module) void runCli("move", (argv) => runMove(argv, cliDeps(process.cwd())));
