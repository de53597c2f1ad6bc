/**
 * GuestInstall: puts rendered files into a container and applies them, by
 * running the staged install script (components/render/install-script.ts)
 * through the node as `pct exec <vmid> -- bash -s`. The script's hash is the
 * trigger, so a changed file re-runs it and an unchanged one does nothing.
 * The files travel as the component's own inputs too, so synth can show them.
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { RenderedFile } from "../render/files";

export interface GuestInstallArgs {
  /** SSH to the node the container lives on. */
  connection: pulumi.Input<SshConnection>;
  /** The container. */
  vmid: number;
  /** The rendered install script. */
  script: pulumi.Input<string>;
  /** The files the script installs, for review (synth). */
  files: pulumi.Input<RenderedFile[]>;
  /** What must be in place first: the guest's root settings, the services it talks to. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

export function scriptHash(script: string): string {
  return crypto.createHash("sha256").update(script).digest("hex");
}

export class GuestInstall extends pulumi.ComponentResource {
  /** What the script printed on its last run (e.g. a CA's root certificate). */
  readonly stdout: pulumi.Output<string>;

  constructor(name: string, args: GuestInstallArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:guest:GuestInstall", name, { vmid: args.vmid, files: args.files }, opts);
    const run = new command.remote.Command(
      `${name}-run`,
      {
        connection: pulumi.output(args.connection).apply((c) => ({ host: c.host, port: c.port ?? 22, user: c.username, privateKey: c.privateKey, hostKey: c.hostKey })),
        create: `pct exec ${args.vmid} -- bash -s`,
        stdin: args.script,
        triggers: [pulumi.output(args.script).apply(scriptHash)],
      },
      { parent: this, dependsOn: args.dependsOn, additionalSecretOutputs: ["connection"] },
    );
    this.stdout = run.stdout;
    this.registerOutputs({ stdout: this.stdout });
  }
}
