/**
 * The exporters Phoenix installs outside the ops guest's own services:
 * node_exporter in every container (nginx-prometheus-exporter too on the
 * gateway), each through GuestInstall once its guest is ready (a VM gets the
 * same script through its guest agent: vm-agents.ts);
 * prometheus-pve-exporter on the ops guest with a least-privilege token
 * Phoenix creates through the bridged provider; and the host's exporters
 * (node_exporter with the ZFS and textfile collectors, the textfile timer, the
 * GPU exporter for lxc-shared GPUs) over host preparation's SSH to the node.
 */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import { guestAddress } from "../../stacks/plan";
import type { Guest, StackConfig } from "../../stacks/schema";
import { commandConnection, GuestInstall, scriptHash } from "../guest/install";
import { renderInstallScript } from "../render/install-script";
import { renderGuestExportersFiles, renderGuestExportersScript, renderHostExportersScript, renderPveExporterFiles, renderPveExporterPrepare, EXPORTER_UNITS } from "./exporters.render";
import { unitPath } from "./install.render";
import { observabilityRole } from "./releases";

export interface MetricsExportersArgs {
  config: StackConfig;
  /** The bridged provider, for the metrics user, its token and its ACL. */
  provider: pulumi.ProviderResource;
  /** SSH to the node a guest lives on. */
  connectionOf: (g: Guest) => pulumi.Input<SshConnection>;
  /** A guest's readiness (configured, started), which its exporters wait for. */
  ready: (vmid: number) => pulumi.Resource;
  /**
   * The node Phoenix prepares (host.address, which the scrape configuration names), over host
   * preparation's SSH; what its exporters wait for (the NVIDIA driver the GPU exporter reads).
   * Without it the host's exporters are not installed.
   */
  host?: NodeTarget;
}

/**
 * PVE 9's PVEAuditor: VM.Audit, VM.GuestAgent.Audit, Sys.Audit, Datastore.Audit, SDN.Audit,
 * Pool.Audit, Mapping.Audit (pve-access-control 9.1.1 src/PVE/AccessControl.pm $privgroups
 * `audit` lists; 9.0 dropped VM.Monitor, commit 0706945 "privileges: drop VM.Monitor"). Read-only,
 * and all that prometheus-pve-exporter's collectors read (/cluster/resources, node status,
 * guest configs, replication, /cluster/backup-info/not-backed-up).
 */
export const PVE_METRICS_ROLE = "PVEAuditor";

/** The node Phoenix prepares, over host preparation's SSH, and what a script there waits for. */
export interface NodeTarget {
  connection: pulumi.Input<SshConnection>;
  dependsOn: pulumi.Resource[];
}

/**
 * An install script run on the node itself, as sanoid's is (components/backup/backup.ts): the script on
 * stdin, run again whenever it changes. The host's exporters and the host's Alloy go this way.
 */
export function onNode(name: string, node: NodeTarget, script: string, parent: pulumi.Resource): command.remote.Command {
  return new command.remote.Command(
    name,
    {
      connection: commandConnection(node.connection),
      create: "bash -s",
      stdin: script,
      triggers: [scriptHash(script)],
    },
    { parent, additionalSecretOutputs: ["connection"], dependsOn: node.dependsOn },
  );
}

export class MetricsExporters extends pulumi.ComponentResource {
  /** The host's exporters' install on the node, when there is one: the node's other installs wait for it (one apt at a time). */
  readonly host?: command.remote.Command;

  constructor(name: string, args: MetricsExportersArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:observability:MetricsExporters", name, {}, opts);
    const { config } = args;
    const ops = config.guests.find((g) => g.role?.type === "observability")!;
    const role = observabilityRole(config);
    const child = { parent: this, provider: args.provider };
    // A pve-realm user with no password (it cannot log in), and a token that shares its privileges (privsep off: one ACL, on the user).
    const user = new proxmox.UserLegacy(`${name}-pve-user`, { userId: role.pveExporter.pveUser, comment: "Phoenix metrics (prometheus-pve-exporter), read-only", enabled: true }, child);
    const token = new proxmox.user.TokenLegacy(`${name}-pve-token`, { userId: user.userId, tokenName: "metrics", comment: "Phoenix metrics", privilegesSeparation: false }, child);
    const acl = new proxmox.AclLegacy(`${name}-pve-acl`, { path: "/", roleId: PVE_METRICS_ROLE, userId: user.userId, propagate: true }, child);
    // The token's value is a secret output (additionalSecretOutputs: ["value"]): everything derived from it stays secret in state.
    const value = pulumi.secret(token.value);
    new GuestInstall(
      `${name}-pve-exporter`,
      {
        connection: args.connectionOf(ops),
        vmid: ops.vmid,
        script: value.apply((t) =>
          renderInstallScript({
            name: "phoenix-pve-exporter",
            description: "prometheus-pve-exporter with Phoenix's read-only PVE token",
            prepare: renderPveExporterPrepare(config),
            files: renderPveExporterFiles(config, t),
            validate: `systemd-analyze verify ${unitPath(EXPORTER_UNITS.pve)}`,
            reload: `systemctl daemon-reload\nsystemctl enable --quiet ${EXPORTER_UNITS.pve}\nsystemctl restart ${EXPORTER_UNITS.pve}`,
            verify: `curl -fsS --max-time 3 http://127.0.0.1:${role.pveExporter.port}/metrics >/dev/null`,
            finish: `systemctl enable --now --quiet ${EXPORTER_UNITS.pve}`,
          }),
        ),
        files: value.apply((t) => renderPveExporterFiles(config, t)),
        dependsOn: [args.ready(ops.vmid), acl],
      },
      { parent: this },
    );
    if (args.host) this.host = onNode(`${name}-host`, args.host, renderHostExportersScript(config), this);
    // Every container with an address but the ops guest, whose own install runs its node_exporter.
    for (const g of config.guests.filter((x) => x.kind === "lxc" && x.vmid !== ops.vmid && guestAddress(x) !== undefined)) {
      new GuestInstall(
        `${name}-${g.vmid}`,
        { connection: args.connectionOf(g), vmid: g.vmid, script: renderGuestExportersScript(config, g), files: renderGuestExportersFiles(config, g), dependsOn: [args.ready(g.vmid)] },
        { parent: this },
      );
    }
    this.registerOutputs({});
  }
}
