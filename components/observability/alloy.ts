/**
 * LogShipping: Grafana Alloy in every container, each through its own
 * GuestInstall once the container is configured, shipping its journal to the
 * ops guest's Loki (alloy.render.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { Guest, StackConfig } from "../../stacks/schema";
import { GuestInstall } from "../guest/install";
import { renderAlloyFiles, renderAlloyInstallScript } from "./alloy.render";

export interface LogShippingArgs {
  config: StackConfig;
  /** SSH to the node a guest lives on. */
  connectionOf: (guest: Guest) => pulumi.Input<SshConnection>;
  /** The guest's last setup step. */
  readyOf: (vmid: number) => pulumi.Resource;
}

/**
 * The guests Alloy is installed on: every container. VMs are left out: Phoenix reaches inside a guest
 * only through `pct exec` (components/guest/install.ts), which VMs do not have.
 */
export function logShippingGuests(config: StackConfig): Guest[] {
  return config.guests.filter((g) => g.kind === "lxc");
}

export class LogShipping extends pulumi.ComponentResource {
  constructor(name: string, args: LogShippingArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:observability:LogShipping", name, {}, opts);
    for (const g of logShippingGuests(args.config)) {
      new GuestInstall(
        `${name}-${g.vmid}`,
        { connection: args.connectionOf(g), vmid: g.vmid, script: renderAlloyInstallScript(args.config, g), files: renderAlloyFiles(args.config, g), dependsOn: [args.readyOf(g.vmid)] },
        { parent: this },
      );
    }
    this.registerOutputs({});
  }
}
