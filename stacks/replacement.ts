/**
 * Which edits of a guest would make the bridged Proxmox provider destroy it, and Phoenix's
 * answer to each. Pure: the destroy guard (providers/guest/destroy-guard.ts) runs it in its
 * check, against the guests it recorded on the last apply, so a destructive plan fails in
 * `pulumi preview` before any call; synth can list the same findings.
 *
 * Inputs that force a new resource in bpg/terraform-provider-proxmox v0.111.1, the version the
 * bundled @muhlba91/pulumi-proxmoxve pins (pulumi-proxmoxve provider/go.mod: the v8.6.0 tag is
 * not in the stored snapshot; its newest commit 53937ed1 and release 8.3.0 both pin v0.111.1).
 *
 * Container, proxmoxtf/resource/container/container.go:
 *   clone.datastore_id :239, clone.node_name :246, clone.full :255, clone.vm_id :268
 *     → `clone`: allowReplace only (Phoenix sets full=false and no clone datastore/node).
 *   disk.datastore_id :412 → `storage`: allowReplace only (validation also ties it to the template's).
 *   disk.size shrink, CustomizeDiff ForceNewIf :1183-1227 → refused (a disk never shrinks,
 *     pve-container src/PVE/API2/LXC.pm:2402 "unable to shrink disk size"). bpg never resizes a
 *     clone at create (containerCreateClone :1260-1731 has no disk step) and reads the template's
 *     size back (containerRead :2814), so Phoenix hands bpg the template's size and grows the disk
 *     itself (GuestDisk, providers/guest/guest-disk.ts): bpg's state and input always agree.
 *   initialization.user_account (+keys, +password) :646/:656/:666 → not set by Phoenix.
 *   mount_point (+size, +volume) :750/:810/:817 → not set through bpg (LxcRootConfig owns mpN).
 *   node_name :991 → refused, with the procedure (nodeMove). bpg has no migration for a
 *     container, and hiding the change from it (ignoreChanges) does not work: containerRead
 *     (:2660-2687) reads the container on the node in its state, so after a migration a refresh
 *     finds nothing there and drops it from the state (ErrResourceDoesNotExist → SetId("");
 *     proxmox/api/client.go:366-373 counts a 500 "does not exist"; pulumi 1b59498 pkg/resource/
 *     deploy/step.go RefreshStep isDeleted), and the next `up` clones it anew onto its own vmid.
 *     The move is scripts/move.ts (`npm run move`): PVE's migrate API in restart mode, then the
 *     state learns where the container is (`pulumi stack export`, edit, `pulumi stack import`:
 *     pulumi v3.248.0 pkg/cmd/pulumi/stack/stack_import.go "hand-edited to correct
 *     inconsistencies due to … manual changes"), then the config declares the new node.
 *   operating_system (+template_file_id) :997/:1004 → not set (guests are clones).
 *   pool_id :1023, template :1094 → not set.
 *   unprivileged :1156 → allowReplace only; validation also makes it equal the template's.
 *   vm_id, CustomizeDiff ForceNewIf :1172-1180 → the vmid is the guest's identity (its resource
 *     name is ct-<vmid>): another vmid is another guest, and the old one's removal is guarded.
 * VM, proxmoxtf/resource/vm/vm.go:
 *   amd_sev :458, clone.* :605-:633 (→ `clone`: allowReplace only), initialization
 *   user/vendor/network/meta_data_file_id :999-:1023 (Phoenix's snippet id is fixed per vmid),
 *   initialization.type :1031, vm_id ForceNewIf :1767-1779 (identity, as above), node_name
 *   ForceNewIf unless `migrate` :1781-1790: Phoenix sets `migrate`, so a node change is bpg's
 *   migrateNonHAVM (:7820: POST …/migrate, online, with-local-disks) and vmRead finds the VM
 *   through the cluster (:4306 GetVMNodeName); refused only when the VM's disk is on one of the
 *   stack's own ZFS storages, local to its node: PVE refuses to migrate a linked clone on local
 *   storage (qemu-server e6352be6 src/PVE/QemuMigrate.pm "can't migrate '<volid>' as it's a
 *   clone of '<base>'"; pve-container 94f5585 src/PVE/LXC/Migrate.pm phase1 the same for a
 *   container's volumes). TPM version and EFI disk type
 *   :1814-1928 (not set). disk.file_id (vm/disk/schema.go:140) is not set. A VM's disk is grown
 *   by bpg right after the clone (vm.go:2867 → vm/disk/disk.go:134) and a shrink is an error,
 *   not a replacement (disk.go:83): refused here all the same.
 *
 * Replacement, when allowed, deletes first (deleteBeforeReplace): create-before-delete would
 * clone onto the vmid still in use, PVE answers "CT <vmid> already exists" as an HTTP 500
 * (pve-guest-common src/PVE/AbstractConfig.pm:261 check_vmid_unused), bpg retries it as
 * transient and takes "already exists" on the retry as done (proxmox/nodes/containers/
 * containers.go:31, proxmox/retry/retry.go:144), and Pulumi then deletes the "old" guest,
 * which is the same one.
 */
import type { Guest, StackConfig } from "./schema";
import { replaceableGuestFields } from "./schema";

type Replaceable = (typeof replaceableGuestFields)[number];

/** What the guard records of a guest: the fields whose change destroys it, and what it allows. */
export interface GuardedGuest {
  vmid: number;
  kind: "lxc" | "vm";
  name: string;
  /** Config path of the guest, for messages. */
  path: string;
  node: string;
  clone: number;
  storage: string;
  unprivileged?: boolean;
  diskGiB: number;
  /** The guest's storage is one of the stack's ZFS dataset storages, which exist on one node only. */
  localStorage?: boolean;
  allowDestroy: boolean;
  allowReplace: Replaceable[];
}

export interface DestructiveChange {
  path: string;
  message: string;
}

export function guardedGuests(config: Pick<StackConfig, "guests" | "host" | "proxmox">): GuardedGuest[] {
  const hostNode = config.host.node ?? config.proxmox.nodes[0]?.name ?? "";
  const local = new Set(config.host.zfs.datasets.flatMap((d) => (d.storage ? [d.storage.id] : [])));
  return config.guests.map((g: Guest, i) => ({
    vmid: g.vmid,
    kind: g.kind,
    name: g.name,
    path: `guests[${i}]`,
    node: g.node ?? hostNode,
    clone: g.clone,
    storage: g.storage,
    ...(g.kind === "lxc" ? { unprivileged: g.unprivileged } : {}),
    diskGiB: g.diskGiB,
    localStorage: local.has(g.storage),
    allowDestroy: g.allowDestroy,
    allowReplace: [...g.allowReplace],
  }));
}

const label = (g: { kind: string; vmid: number; name: string }) => `${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} ${g.name}`;

/**
 * How to move a guest whose disk is a linked clone on storage local to its node: PVE refuses to
 * migrate it (pve-container 94f5585 src/PVE/LXC/Migrate.pm phase1 "clone of '<base>'";
 * qemu-server e6352be6 src/PVE/QemuMigrate.pm the same), so it goes through a backup. Also
 * scripts/move.ts's refusal.
 */
export function restoreProcedure(g: { kind: "lxc" | "vm"; vmid: number; storage: string }, from: string, to: string): string {
  return `its disk is on ${g.storage}, local to ${from}, as a linked clone, which PVE refuses to migrate: back it up (vzdump ${g.vmid}) and restore it on ${to} (${g.kind === "vm" ? "qmrestore" : "pct restore"} ${g.vmid} <archive> --storage <a storage of ${to}>), or keep its disk on a shared storage`;
}

/** The command that carries a node change out with PVE's migrate API and points the state at the new node (scripts/move.ts). */
export const moveCommand = (stack: string, vmid: number, to: string): string => `npm run move -- ${stack} ${vmid} ${to}`;

/** Why a guest cannot follow its `node` on its own, and how to move it (see the header: node_name). */
function nodeMove(g: GuardedGuest, from: string): string {
  const to = g.node;
  if (g.localStorage ?? true) return `${label(g)}: cannot move from node ${from} to ${to}: ${restoreProcedure(g, from, to)}. Put node ${from} back until then`;
  return (
    `${label(g)}: the Proxmox provider cannot move a container (a change of its node destroys it with its disk and clones it anew). ` +
    `Run \`${moveCommand("<stack>", g.vmid, to)}\`: it migrates the container with PVE (restart mode) and points the state at ${to}; then this preview changes nothing of CT ${g.vmid}. ` +
    `Until then, do not \`pulumi up\` with node ${to}, and do not \`pulumi refresh\` after moving it by other means (it would look for it on ${from} and drop it from the state)`
  );
}

/**
 * What a move from the guests of the last apply (`olds`) to the declared ones (`news`) would
 * destroy without the configuration allowing it. Empty when nothing would be lost.
 */
export function destructiveChanges(olds: readonly GuardedGuest[], news: readonly GuardedGuest[]): DestructiveChange[] {
  const out: DestructiveChange[] = [];
  const declared = new Map(news.map((g) => [g.vmid, g]));
  for (const old of olds) {
    const now = declared.get(old.vmid);
    if (!now || now.kind !== old.kind) {
      if (old.allowDestroy) continue;
      const successor = news.find((n) => n.name === old.name && n.vmid !== old.vmid);
      const hint = successor
        ? `a vmid is the guest's identity, so ${successor.path} (vmid ${successor.vmid}) is a new guest; put vmid ${old.vmid} back`
        : `to destroy it, set allowDestroy: true on it, apply, then remove it`;
      out.push({ path: now ? `${now.path}.kind` : "guests", message: `${label(old)} was applied before and would be destroyed with its disk: ${hint}` });
      continue;
    }
    if (now.node !== old.node && (now.kind === "lxc" || (now.localStorage ?? true))) out.push({ path: `${now.path}.node`, message: nodeMove(now, old.node) });
    if (now.diskGiB < old.diskGiB) {
      out.push({ path: `${now.path}.diskGiB`, message: `${label(now)}: its disk cannot shrink from ${old.diskGiB} GiB to ${now.diskGiB} GiB (Proxmox refuses, and the provider would destroy the guest instead): keep diskGiB at ${old.diskGiB} or more` });
    }
    for (const field of replaceableGuestFields) {
      const was = old[field];
      const is = now[field];
      if (was === undefined || was === is || now.allowReplace.includes(field)) continue;
      out.push({
        path: `${now.path}.${field}`,
        message: `${label(now)}: changing ${field} from ${String(was)} to ${String(is)} destroys the guest with its disk and clones it anew: to accept that, add allowReplace: [${field}] to it for this apply`,
      });
    }
  }
  return out;
}
