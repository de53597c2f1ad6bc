/**
 * What a stack's backup section means, computed from the configuration alone: which guests each
 * job backs up, which guests hold data and whether anything protects it, and the rules that
 * relate the section to the rest of the stack. components/backup builds from these; validate.ts
 * reports the issues; synth's plan prints the coverage.
 *
 * vzdump archives a container's root disk and its volume mount points only: a bind mount of a
 * host dataset (how Phoenix mounts datasets) is left out, "not a volume" (pve-container@6.1.10
 * src/PVE/LXC/Config.pm mountpoint_backup_enabled). Data on mounted datasets is protected by
 * the datasets' snapshot policies, which the coverage lists beside the jobs.
 */
import { guestAddress } from "./plan";
import type { BackupConfig, BackupJob, Guest, StackConfig } from "./schema";
import type { ConfigIssue } from "./validate";

const label = (g: Guest): string => `${g.kind === "vm" ? "VM" : "CT"} ${g.vmid} ${g.name}`;

/** The guests a job backs up, by vmid. A pool's members are unknown to Phoenix: none are counted. */
export function jobGuests(config: StackConfig, job: BackupJob): number[] {
  const sel = job.guests;
  if ("all" in sel) return config.guests.map((g) => g.vmid).filter((v) => !sel.exclude.includes(v));
  if ("vmids" in sel) return [...sel.vmids];
  if ("tags" in sel) return config.guests.filter((g) => g.tags.some((t) => sel.tags.includes(t))).map((g) => g.vmid);
  return [];
}

/**
 * The datasets whose data a guest works on: a container's mounts, and for a VM the exports it
 * mounts over NFS. Empty for a guest whose only state is its root disk.
 */
export function guestDatasets(config: StackConfig, g: Guest): string[] {
  const mounts = g.kind === "lxc" ? g.mounts.map((m) => m.volume) : [];
  const nfs = config.host.nfsExports.filter((e) => e.clients.includes(g.vmid)).map((e) => e.volume);
  return [...new Set([...mounts, ...nfs])];
}

export interface GuestCoverage {
  guest: Guest;
  /** Datasets it keeps data on (see guestDatasets). */
  datasets: string[];
  /** Ids of the jobs that back it up. */
  jobs: string[];
  /** Why no job backs it up, when the stack says so. */
  notBackedUp?: string;
  /** Its datasets that have a snapshot policy, with the policy's template. */
  snapshotted: Record<string, string>;
}

/** Per guest: the jobs that back it up, its datasets and their snapshot policies. */
export function backupCoverage(config: StackConfig): GuestCoverage[] {
  const backup = config.backup;
  const jobs = backup?.jobs ?? [];
  const covered = new Map(jobs.map((j) => [j.id, new Set(jobGuests(config, j))]));
  const policies = new Map((backup?.snapshots.datasets ?? []).map((d) => [d.dataset, d.template]));
  return config.guests.map((guest) => {
    const datasets = guestDatasets(config, guest);
    const reason = backup?.notBackedUp.find((n) => n.vmid === guest.vmid)?.reason;
    return {
      guest,
      datasets,
      jobs: jobs.filter((j) => covered.get(j.id)!.has(guest.vmid)).map((j) => j.id),
      ...(reason !== undefined ? { notBackedUp: reason } : {}),
      snapshotted: Object.fromEntries(datasets.filter((d) => policies.has(d)).map((d) => [d, policies.get(d)!])),
    };
  });
}

/**
 * A job's retention as vzdump's prune-backups keys (pve-storage@9.1.7 src/PVE/Storage/Plugin.pm
 * $prune_backups_format: keep-last, keep-hourly, … keep-yearly), as bpg's prune_backups map.
 */
export function pruneBackups(retention: BackupJob["retention"]): Record<string, string> {
  return Object.fromEntries(Object.entries(retention).flatMap(([k, v]) => (v === undefined ? [] : [[`keep-${k}`, String(v)]])));
}

/** The storages a backup may target, with their content: datasets' storages, existing ones, PBS ones. */
function storageContents(config: StackConfig, backup: BackupConfig): Map<string, readonly string[]> {
  const out = new Map<string, readonly string[]>();
  for (const s of config.host.existingStorages) out.set(s.id, s.content);
  for (const d of config.host.zfs.datasets) if (d.storage) out.set(d.storage.id, d.storage.content);
  // PBSPlugin.pm plugindata: content backup only.
  for (const p of backup.pbs) out.set(p.id, ["backup"]);
  return out;
}

function duplicates<T>(items: readonly T[], key: (t: T) => string, report: (i: number, k: string) => void): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const k = key(item);
    if (seen.has(k)) report(i, k);
    seen.add(k);
  });
}

/** Every problem of the backup section, each with its config path. */
export function backupIssues(config: StackConfig): ConfigIssue[] {
  const backup = config.backup;
  if (!backup) return [];
  const issues: ConfigIssue[] = [];
  const report = (path: string, message: string) => issues.push({ path: `backup.${path}`, message });
  const guests = new Map(config.guests.map((g) => [g.vmid, g]));
  const unknownGuest = (path: string, vmid: number) => {
    if (!guests.has(vmid)) report(path, `guest ${vmid} is not declared in guests`);
  };

  const declaredElsewhere = new Set([...config.host.existingStorages.map((s) => s.id), ...config.host.zfs.datasets.flatMap((d) => (d.storage ? [d.storage.id] : []))]);
  backup.pbs.forEach((p, i) => {
    if (declaredElsewhere.has(p.id)) report(`pbs[${i}].id`, `storage '${p.id}' is already declared on the host: give the PBS storage its own id`);
  });
  duplicates(backup.pbs, (p) => p.id, (i, k) => report(`pbs[${i}].id`, `PBS storage '${k}' is declared twice`));
  backup.pbs.forEach((p, i) => {
    if (p.encryptionKeySecretKey === p.passwordSecretKey) report(`pbs[${i}].encryptionKeySecretKey`, `phoenix:${p.passwordSecretKey} is already the password's key: the encryption key needs a key of its own (e.g. pbsEncryptionKey)`);
  });

  const contents = storageContents(config, backup);
  duplicates(backup.jobs, (j) => j.id.toLowerCase(), (i, k) => report(`jobs[${i}].id`, `job id '${k}' is used twice (PVE job ids are unique whatever the case)`));
  backup.jobs.forEach((job, i) => {
    const has = contents.get(job.storage);
    if (!has) report(`jobs[${i}].storage`, `storage '${job.storage}' is not declared: a dataset's storage, host.existingStorages or backup.pbs`);
    else if (!has.includes("backup")) report(`jobs[${i}].storage`, `storage '${job.storage}' does not hold backup content (it holds ${has.join(", ")}): add backup to its content, or choose a storage that has it`);
    const sel = job.guests;
    if ("all" in sel) sel.exclude.forEach((v, j) => unknownGuest(`jobs[${i}].guests.exclude[${j}]`, v));
    if ("vmids" in sel) sel.vmids.forEach((v, j) => unknownGuest(`jobs[${i}].guests.vmids[${j}]`, v));
    if ("tags" in sel && jobGuests(config, job).length === 0) report(`jobs[${i}].guests.tags`, `no declared guest carries ${sel.tags.join(" or ")}: the job would back up nothing`);
  });

  const coverage = backupCoverage(config);
  backup.notBackedUp.forEach((n, i) => {
    unknownGuest(`notBackedUp[${i}].vmid`, n.vmid);
    const jobs = coverage.find((c) => c.guest.vmid === n.vmid)?.jobs ?? [];
    if (jobs.length > 0) report(`notBackedUp[${i}].vmid`, `guest ${n.vmid} is listed as not backed up, but job ${jobs.join(", ")} backs it up: remove one of the two`);
  });
  duplicates(backup.notBackedUp, (n) => String(n.vmid), (i, k) => report(`notBackedUp[${i}].vmid`, `guest ${k} is listed twice`));
  for (const c of coverage) {
    if (c.datasets.length === 0 || c.jobs.length > 0 || c.notBackedUp !== undefined) continue;
    const i = config.guests.indexOf(c.guest);
    issues.push({
      path: `guests[${i}]`,
      message: `${label(c.guest)} keeps data (${c.datasets.join(", ")}) and no backup job backs it up: add it to a job in backup.jobs, or list it in backup.notBackedUp with the reason`,
    });
  }

  const datasets = new Set(config.host.zfs.datasets.map((d) => `${d.pool}/${d.name}`));
  backup.snapshots.datasets.forEach((d, i) => {
    if (!datasets.has(d.dataset)) report(`snapshots.datasets[${i}].dataset`, `dataset ${d.dataset} is not declared in host.zfs.datasets`);
    if (!Object.hasOwn(backup.snapshots.templates, d.template)) {
      const names = Object.keys(backup.snapshots.templates);
      report(`snapshots.datasets[${i}].template`, `no snapshot template '${d.template}' in backup.snapshots.templates${names.length ? ` (declared: ${names.join(", ")})` : ""}`);
    }
  });
  duplicates(backup.snapshots.datasets, (d) => d.dataset, (i, k) => report(`snapshots.datasets[${i}].dataset`, `dataset ${k} has two snapshot policies: keep one`));
  return issues;
}

/** The secrets the backup section needs: each PBS storage's password, and its encryption key when it names one. */
export function backupSecretNeeds(config: StackConfig): Array<{ key: string; path: string; why: string }> {
  return (config.backup?.pbs ?? []).flatMap((p, i) => [
    { key: p.passwordSecretKey, path: `backup.pbs[${i}].passwordSecretKey`, why: `the password of ${p.username} on the Proxmox Backup Server ${p.server} (storage ${p.id})` },
    ...(p.encryptionKeySecretKey === undefined
      ? []
      : [{ key: p.encryptionKeySecretKey, path: `backup.pbs[${i}].encryptionKeySecretKey`, why: `the encryption key of the backups on ${p.server} (storage ${p.id}): the JSON file \`proxmox-backup-client key create --kdf none <file>\` writes` }]),
  ]);
}

/**
 * Storage types whose data lives off this node: a Proxmox Backup Server, an NFS or CIFS share
 * (pve-storage@9.1.7 NFSPlugin.pm, CIFSPlugin.pm: a mount of a remote server's export). Beside
 * these, a storage the user declares `shared` (host.existingStorages: one storage every node
 * sees, e.g. a NAS mounted on each) is off the node too. A dataset's storage never is. Whether a
 * PBS storage in host.existingStorages encrypts cannot be read offline: it is taken as declared.
 */
const OFF_BOX_TYPES: ReadonlySet<string> = new Set(["pbs", "nfs", "cifs"]);

/**
 * The seed's checklist item "Off-box encrypted backups" (phoenix:firewall.hardening): every guest
 * is backed up by an enabled job whose storage is off the box, or is listed in backup.notBackedUp
 * with the reason (a guest holding nothing worth keeping). A PBS storage must encrypt on the
 * client (encryptionKeySecretKey) and must not be the node or one of its guests. vzdump encrypts
 * for PBS only; an NFS/CIFS/shared target holds plain archives (the seed's alternative, borg to
 * a USB disk or NAS, is outside PVE). Datasets bind-mounted into containers are in no archive
 * (see the top of this file): their snapshot policies stay on the box.
 */
export function offBoxBackupIssues(config: StackConfig): ConfigIssue[] {
  const backup = config.backup;
  const fix = "a backup.pbs storage with encryptionKeySecretKey on a server off this box, or an nfs, cifs or shared storage in host.existingStorages";
  if (!backup) return [{ path: "backup", message: `hardening needs off-box encrypted backups: declare phoenix:backup with a job to ${fix}` }];
  const issues: ConfigIssue[] = [];
  const onBox = new Set([config.host.address.split("/")[0]!, ...config.guests.flatMap((g) => guestAddress(g) ?? [])]);
  const used = new Set(backup.jobs.filter((j) => j.enabled).map((j) => j.storage));
  const offBox = new Set<string>();
  backup.pbs.forEach((p, i) => {
    if (!used.has(p.id)) return;
    if (onBox.has(p.server)) issues.push({ path: `backup.pbs[${i}].server`, message: `hardening: ${p.server} is this box (the node or one of its guests), so storage ${p.id} is not off-box: back up to a Proxmox Backup Server elsewhere` });
    else if (p.encryptionKeySecretKey === undefined) issues.push({ path: `backup.pbs[${i}].encryptionKeySecretKey`, message: `hardening: backups to ${p.id} are not encrypted: create a key with \`proxmox-backup-client key create --kdf none pbs.key\`, keep a copy off the box, set it with \`pulumi config set --secret phoenix:<key> < pbs.key\` (e.g. pbsEncryptionKey) and name that key here` });
    else offBox.add(p.id);
  });
  for (const s of config.host.existingStorages) if (used.has(s.id) && ((s.type !== undefined && OFF_BOX_TYPES.has(s.type)) || s.shared === true)) offBox.add(s.id);
  for (const c of backupCoverage(config)) {
    if (c.notBackedUp !== undefined) continue;
    const off = backup.jobs.filter((j) => j.enabled && offBox.has(j.storage) && c.jobs.includes(j.id));
    if (off.length > 0) continue;
    const onlyOn = c.jobs.length > 0 ? ` (job ${c.jobs.join(", ")} keeps its archives on the box or is disabled)` : "";
    issues.push({ path: `guests[${config.guests.indexOf(c.guest)}]`, message: `hardening: ${label(c.guest)} has no off-box encrypted backup${onlyOn}: add it to an enabled job in backup.jobs whose storage is ${fix}, or list it in backup.notBackedUp with the reason` });
  }
  return issues;
}
