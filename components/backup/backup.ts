/**
 * Data protection on the node: Proxmox Backup Server storages, vzdump backup jobs
 * (/cluster/backup) through the bridged provider, and ZFS snapshot policies run by sanoid.
 * What each job covers is computed in stacks/backup.ts; this only declares.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { NodeFile } from "../../providers/host/node-file";
import { APT_GET } from "../../providers/ssh/apt";
import type { SshConnection } from "../../providers/ssh";
import { jobGuests, pruneBackups } from "../../stacks/backup";
import type { BackupJob, StackConfig } from "../../stacks/schema";
import { renderSanoidConf, SANOID_CONF } from "./sanoid.render";

export interface DataProtectionArgs {
  config: StackConfig;
  /** The node the storages are enabled on and sanoid runs on. */
  node: string;
  /** SSH to that node (host preparation's), for sanoid; without it no snapshot policy is applied. */
  connection?: pulumi.Input<SshConnection>;
  provider: pulumi.ProviderResource;
  /** Storages and datasets host preparation made, by id and pool/name. */
  storages: Record<string, pulumi.Resource>;
  datasets: Record<string, pulumi.Resource>;
  /** Reads a secret the stack names (a PBS password or encryption key). */
  secret: (key: string) => pulumi.Output<string>;
}

/**
 * Installs sanoid from Debian and enables the timer its package ships (sanoid 2.1.0-1.1
 * debian: sanoid.timer, OnCalendar=*:0/15, starting sanoid.service `--take-snapshots` and
 * sanoid-prune.service `--prune-snapshots`, both ConditionFileNotEmpty=/etc/sanoid/sanoid.conf).
 * Idempotent, so a failed run is simply run again.
 */
export const SANOID_INSTALL = [
  "set -eu",
  `dpkg-query -W -f='\${Status}' sanoid 2>/dev/null | grep -q 'install ok installed' || DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y sanoid`,
  "systemctl enable --now sanoid.timer",
  "",
].join("\n");

/**
 * The job as bpg's backup job resource takes it (bpg v0.111.1 fwprovider/cluster/backup/model.go
 * fillCommonFields → POST /cluster/backup, id = resourceId). `excludes` is bpg's `exclude`
 * (commit c398ad8d "added backup selection mode exclude", which the 8.6.0 SDK carries; PVE:
 * `exclude` assumes `all`, pve-manager@9.1.3 PVE/VZDump.pm verify_vzdump_parameters).
 */
export function backupJobArgs(config: StackConfig, job: BackupJob, node: string): proxmox.backup.JobArgs {
  const sel = job.guests;
  const selection: Partial<proxmox.backup.JobArgs> =
    "all" in sel
      ? { all: true, ...(sel.exclude.length > 0 ? { excludes: sel.exclude.map(String) } : {}) }
      : "pool" in sel
        ? { pool: sel.pool }
        : // Tags resolve to the guests carrying them now: vzdump selects by all, vmid or pool only (VZDump.pm get_included_guests).
          { vmids: jobGuests(config, job).map(String) };
  return {
    resourceId: job.id,
    schedule: job.schedule,
    storage: job.storage,
    // Jobs are cluster-wide; Phoenix's guests live on its node.
    node,
    enabled: job.enabled,
    mode: job.mode,
    compress: job.compress,
    pruneBackups: pruneBackups(job.retention),
    mailnotification: job.notify.when,
    ...(job.notify.mailto.length > 0 ? { mailtos: job.notify.mailto } : {}),
    ...selection,
  };
}

export class DataProtection extends pulumi.ComponentResource {
  readonly jobs: Record<string, proxmox.backup.Job> = {};
  readonly pbs: Record<string, proxmox.storage.Pbs> = {};
  /** sanoid's config on the node, when any dataset has a snapshot policy. */
  readonly sanoid?: NodeFile;

  constructor(name: string, args: DataProtectionArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:backup:DataProtection", name, {}, opts);
    const backup = args.config.backup;
    if (!backup) throw new Error(`${name}: the stack declares no phoenix:backup`);
    const api = { parent: this, provider: args.provider };
    for (const p of backup.pbs) {
      // bpg v0.111.1 fwprovider/storage/resource_pbs.go: POST /storage type=pbs; the password is sent, never read back.
      // The encryption key likewise (model_pbs.go toCreateAPIRequest: `encryption-key`, RequiresReplace; PVE keeps it
      // in /etc/pve/priv/storage/<id>.enc, PBSPlugin.pm on_add_hook).
      this.pbs[p.id] = new proxmox.storage.Pbs(
        `${name}-pbs-${p.id}`,
        {
          resourceId: p.id,
          server: p.server,
          datastore: p.datastore,
          username: p.username,
          password: args.secret(p.passwordSecretKey),
          fingerprint: p.fingerprint,
          ...(p.namespace ? { namespace: p.namespace } : {}),
          ...(p.encryptionKeySecretKey ? { encryptionKey: args.secret(p.encryptionKeySecretKey) } : {}),
          contents: ["backup"],
          nodes: [args.node],
        },
        // Every one of those inputs is RequiresReplace in bpg (resource_pbs.go), and PVE refuses a second
        // storage of the same ID (pve-storage@9.1.7 src/PVE/API2/Storage/Config.pm create: "storage ID
        // '$storeid' already defined"): Pulumi's default create-before-delete could never rotate the
        // password. The old definition goes first; the backups on the PBS are not touched by it
        // (PBSPlugin.pm on_delete_hook removes only the node's .pw/.enc files).
        { ...api, additionalSecretOutputs: ["password", "encryptionKey"], deleteBeforeReplace: true },
      );
    }
    for (const job of backup.jobs) {
      const storage = this.pbs[job.storage] ?? args.storages[job.storage];
      this.jobs[job.id] = new proxmox.backup.Job(`${name}-job-${job.id}`, backupJobArgs(args.config, job, args.node), { ...api, ...(storage ? { dependsOn: [storage] } : {}) });
    }
    if (backup.snapshots.datasets.length > 0 && args.connection) {
      const connection = args.connection;
      const install = new command.remote.Command(
        `${name}-sanoid-install`,
        {
          connection: pulumi.output(connection).apply((c) => ({ host: c.host, port: c.port ?? 22, user: c.username, privateKey: c.privateKey, hostKey: c.hostKey })),
          create: "bash -s",
          stdin: SANOID_INSTALL,
          triggers: [SANOID_INSTALL],
        },
        { parent: this, additionalSecretOutputs: ["connection"] },
      );
      const datasets = backup.snapshots.datasets.map((d) => args.datasets[d.dataset]).filter((d): d is pulumi.Resource => d !== undefined);
      this.sanoid = new NodeFile(`${name}-sanoid-conf`, { node: args.node, connection, path: SANOID_CONF, mode: "0644", content: renderSanoidConf(backup.snapshots) }, { parent: this, dependsOn: [install, ...datasets] });
    }
    this.registerOutputs({});
  }
}
