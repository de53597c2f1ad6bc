/**
 * LogShipping: Grafana Alloy in every container, each through its own
 * GuestInstall once the container is configured, and on the Proxmox node over
 * host preparation's SSH, shipping the journal to the ops guest's Loki
 * (alloy.render.ts). A Docker host VM gets the same install through its
 * guest agent (vm-agents.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { Guest, StackConfig } from "../../stacks/schema";
import { shipsJournal } from "../../stacks/scrape";
import { GuestInstall } from "../guest/install";
import { renderAlloyFiles, renderAlloyInstallScript } from "./alloy.render";
import { onNode, type NodeTarget } from "./exporters";

export interface LogShippingArgs {
  config: StackConfig;
  /** SSH to the node a guest lives on. */
  connectionOf: (guest: Guest) => pulumi.Input<SshConnection>;
  /** The guest's last setup step. */
  readyOf: (vmid: number) => pulumi.Resource;
  /** The node Phoenix prepares (host.address), whose own journal is shipped too; without it, it is not. */
  host?: NodeTarget;
}

/**
 * The guests Alloy is installed on through `pct exec` (components/guest/install.ts): every container
 * that ships its journal (stacks/scrape.ts shipsJournal: not an isolated group's member).
 * VMs have no `pct exec`: the same install reaches them through their guest agent (vm-agents.ts).
 */
export function logShippingGuests(config: StackConfig): Guest[] {
  return config.guests.filter((g) => g.kind === "lxc" && shipsJournal(config, g));
}

export class LogShipping extends pulumi.ComponentResource {
  constructor(name: string, args: LogShippingArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:observability:LogShipping", name, {}, opts);
    if (args.host) onNode(`${name}-host`, args.host, renderAlloyInstallScript(args.config, "host"), this);
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
