/** The bridged Proxmox provider, authenticated with the stack's API token. */
import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "../stacks/schema";

export interface ProxmoxProviderArgs {
  /** The validated proxmox section of the stack. */
  proxmox: StackConfig["proxmox"];
  /** The token's secret (phoenix:proxmoxTokenSecret). */
  tokenSecret: pulumi.Input<string>;
}

/**
 * The API token does everything the token may do; root-only settings go
 * through LxcRootConfig. The bridged provider verifies TLS against the system
 * trust store (it has no CA option), so a PVE CA must be trusted there; see README.
 */
export function proxmoxProvider(name: string, args: ProxmoxProviderArgs, opts: pulumi.ResourceOptions = {}): proxmox.Provider {
  return new proxmox.Provider(
    name,
    {
      endpoint: args.proxmox.endpoint,
      apiToken: pulumi.secret(pulumi.interpolate`${args.proxmox.tokenId}=${args.tokenSecret}`),
      insecure: args.proxmox.tls.insecure,
      minTls: "1.2",
    },
    opts,
  );
}
