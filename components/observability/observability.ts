/**
 * The observability tier: the ops guest's Prometheus, Alertmanager and
 * node_exporter, installed through GuestInstall once the guest (and its data
 * mount) is configured. Reached by host name like every service: declare
 * services for its ports and Traefik routes <name>.svc.<domain> to them.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { StackConfig } from "../../stacks/schema";
import { GuestInstall } from "../guest/install";
import { guestOfRole } from "../../stacks/routing";
import { renderObservabilityFiles, renderObservabilityInstallScript } from "./install.render";
import type { ChangeSnapshotPolicy } from "../guest/snapshot";

export interface ObservabilityArgs {
  config: StackConfig;
  /** SSH to the node the ops guest lives on. */
  connection: pulumi.Input<SshConnection>;
  /** The Step-CA root, for the TLS probes. */
  caRootPem: pulumi.Input<string>;
  /** The ops guest, configured with its data mount. */
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /** A snapshot of the guest before each re-run of its install. */
  snapshot?: ChangeSnapshotPolicy;
}

export class Observability extends pulumi.ComponentResource {
  readonly ready: pulumi.Resource;

  constructor(name: string, args: ObservabilityArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:observability:Observability", name, {}, opts);
    const guest = guestOfRole(args.config, "observability");
    const install = new GuestInstall(
      `${name}-install`,
      {
        connection: args.connection,
        vmid: guest.vmid,
        script: pulumi.output(args.caRootPem).apply((caRootPem) => renderObservabilityInstallScript(args.config, { caRootPem })),
        files: pulumi.output(args.caRootPem).apply((caRootPem) => renderObservabilityFiles(args.config, { caRootPem })),
        dependsOn: args.dependsOn,
        snapshot: args.snapshot,
      },
      { parent: this },
    );
    this.ready = install.ready;
    this.registerOutputs({});
  }
}
