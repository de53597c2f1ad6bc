/**
 * VmAgents: node_exporter, Alloy and (with a GPU passed through) the GPU exporter in every VM
 * Phoenix prepares, one VmInstall per VM (providers/guest/vm-install.ts) through its guest agent,
 * once the VM runs; again when a script changes, and when the VM is replaced (replaceWith: a new
 * VM has none of it; https://www.pulumi.com/docs/iac/concepts/resources/options/replacewith/).
 */
import * as pulumi from "@pulumi/pulumi";
import { VmInstall } from "../../providers/guest/vm-install";
import type { SshConnection } from "../../providers/ssh";
import type { Guest, StackConfig } from "../../stacks/schema";
import { vmAgentScripts } from "./vm-agents.render";

export interface VmAgentsArgs {
  config: StackConfig;
  /** SSH to the node a guest lives on. */
  connectionOf: (g: Guest) => pulumi.Input<SshConnection>;
  /** The VM, once it runs. */
  readyOf: (vmid: number) => pulumi.Resource;
}

export class VmAgents extends pulumi.ComponentResource {
  constructor(name: string, args: VmAgentsArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:observability:VmAgents", name, {}, opts);
    const { config } = args;
    for (const g of config.guests) {
      if (g.kind !== "vm") continue;
      const scripts = vmAgentScripts(config, g);
      if (scripts.length === 0) continue;
      const vm = args.readyOf(g.vmid);
      new VmInstall(
        `${name}-${g.vmid}`,
        { connection: args.connectionOf(g), node: g.node ?? config.host.node ?? config.proxmox.nodes[0]!.name, vmid: g.vmid, scripts },
        { parent: this, dependsOn: [vm], ...(vm instanceof pulumi.CustomResource ? { replaceWith: [vm] } : {}) },
      );
    }
    this.registerOutputs({});
  }
}
