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
import { GuestSnapshot } from "../../providers/guest/guest-snapshot";
import type { SshConnection } from "../../providers/ssh";
import type { RenderedFile } from "../render/files";
import type { ChangeSnapshotPolicy } from "./snapshot";

export interface GuestInstallArgs {
  /** SSH to the node the container lives on. */
  connection: pulumi.Input<SshConnection>;
  /** The container. */
  vmid: number;
  /** The rendered install script. */
  script: pulumi.Input<string>;
  /** The files the script installs, for review (synth). */
  files: pulumi.Input<RenderedFile[]>;
  /** A health check run after every install; it must pass before anything that depends on this proceeds. */
  check?: pulumi.Input<string>;
  /** What must be in place first: the guest's root settings, the services it talks to. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
  /** With it, every re-run of the install (not the first run) comes after a snapshot of the guest (components/guest/snapshot.ts). */
  snapshot?: ChangeSnapshotPolicy;
}

export function scriptHash(script: string): string {
  return crypto.createHash("sha256").update(script).digest("hex");
}

/** The sha256 of a script: its hash as a trigger, computed at once when the script is already text. */
function hashOf(script: pulumi.Input<string>): pulumi.Input<string> {
  return typeof script === "string" ? scriptHash(script) : pulumi.output(script).apply(scriptHash);
}

const commandConnections = new WeakMap<object, pulumi.Output<command.types.input.remote.ConnectionArgs>>();

/**
 * The Command provider's connection for an SSH connection. One Output per connection, shared by
 * every command over it: a stack has a connection per node and a command or two per guest, and each
 * Output is a chain of promises the SDK keeps until the program ends.
 */
export function commandConnection(connection: pulumi.Input<SshConnection>): pulumi.Output<command.types.input.remote.ConnectionArgs> {
  let shared = commandConnections.get(connection);
  if (!shared) {
    shared = pulumi.output(connection).apply((c) => ({ host: c.host, port: c.port ?? 22, user: c.username, privateKey: c.privateKey, hostKey: c.hostKey }));
    commandConnections.set(connection, shared);
  }
  return shared;
}

/** Runs a script inside a container through the node, again whenever its text changes. */
function pctScript(name: string, connection: pulumi.Input<SshConnection>, vmid: number, script: pulumi.Input<string>, triggers: pulumi.Input<string>[], opts: pulumi.CustomResourceOptions): command.remote.Command {
  return new command.remote.Command(
    name,
    {
      connection: commandConnection(connection),
      create: `pct exec ${vmid} -- bash -s`,
      stdin: script,
      triggers,
    },
    { ...opts, additionalSecretOutputs: ["connection"] },
  );
}

export class GuestInstall extends pulumi.ComponentResource {
  /** What the install script printed on its last run (e.g. a CA's root certificate). */
  readonly stdout: pulumi.Output<string>;
  /** The last step: the health check when there is one, else the install. */
  readonly ready: pulumi.Resource;

  constructor(name: string, args: GuestInstallArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:guest:GuestInstall", name, { vmid: args.vmid, files: args.files }, opts);
    const installHash = hashOf(args.script);
    const snapshot = args.snapshot && new GuestSnapshot(`${name}-snapshot`, { ...args.snapshot, kind: "lxc", vmid: args.vmid, change: "install", trigger: installHash }, { parent: this, dependsOn: args.dependsOn });
    const run = pctScript(`${name}-run`, args.connection, args.vmid, args.script, [installHash], { parent: this, dependsOn: [...(args.dependsOn ?? []), ...(snapshot ? [snapshot] : [])] });
    this.stdout = run.stdout;
    this.ready = args.check === undefined ? run : pctScript(`${name}-check`, args.connection, args.vmid, args.check, [installHash, hashOf(args.check)], { parent: this, dependsOn: [run] });
    this.registerOutputs({ stdout: this.stdout });
  }
}
