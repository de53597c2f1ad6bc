/**
 * A guest joining the tailnet: the join script (tailscale.render.ts) runs inside the guest through
 * the node, on stdin: `pct exec` for a container (as GuestInstall runs install scripts), the QEMU
 * guest agent for a VM. The pre-auth key is a Pulumi secret: the script holding it is a secret
 * Output, and it never reaches user data or a file on the node.
 *
 * `qm guest exec <vmid> --pass-stdin 1 --timeout <s> -- bash -s` (qemu-server 9.2.6 src/PVE/CLI/qm.pm
 * `exec`: stdin is forwarded as the agent's input-data, at most 1 MiB; it polls the agent's exec status
 * until `exited` or the timeout ("timeout reached, returning pid"), and `$print_agent_result` prints the
 * result with to_json pretty, `"exitcode" : <n>`, while qm itself exits 0 whatever the command returned,
 * so the exit code is read from that JSON; a timeout prints no exitcode and so fails too).
 */
import * as crypto from "node:crypto";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../../providers/ssh";
import type { Guest, StackConfig } from "../../stacks/schema";
import { renderTailscaleJoin } from "./tailscale.render";

/** How long the node waits for a VM's agent, then for the join to finish. */
const VM_TIMEOUT_SECONDS = 900;

/** The node-side command that runs a script read from stdin inside a VM through its guest agent, failing when the script fails. */
export function vmExecCommand(vmid: number): string {
  const id = Math.trunc(vmid);
  return [
    `for _ in $(seq 60); do qm guest exec ${id} --timeout 10 -- true >/dev/null 2>&1 && break; sleep 5; done`,
    `out=$(qm guest exec ${id} --pass-stdin 1 --timeout ${VM_TIMEOUT_SECONDS} -- bash -s)`,
    `printf '%s\\n' "$out" | grep -Eq '"exitcode" *: *0([^0-9]|$)' || { printf '%s\\n' "$out" >&2; exit 1; }`,
  ].join("; ");
}

/** `pct exec` for a container, the guest agent for a VM; the script comes on stdin. */
export function guestExecCommand(g: Pick<Guest, "kind" | "vmid">): string {
  return g.kind === "lxc" ? `pct exec ${Math.trunc(g.vmid)} -- bash -s` : vmExecCommand(g.vmid);
}

export interface TailscaleJoinArgs {
  config: StackConfig;
  guest: Guest;
  /** SSH to the guest's node. */
  connection: pulumi.Input<SshConnection>;
  /** phoenix:tailscaleAuthKey. */
  authKey: pulumi.Input<string>;
  dependsOn: pulumi.Input<pulumi.Resource>[];
}

export class TailscaleJoin extends pulumi.ComponentResource {
  readonly run: command.remote.Command;

  constructor(name: string, args: TailscaleJoinArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:tailscale:TailscaleJoin", name, { vmid: args.guest.vmid }, opts);
    const { guest: g, config } = args;
    const ts = g.tailscale!;
    const join = {
      version: config.tailscale!.version,
      // Containers come from the Debian 12 (bookworm) catalogue template, VMs from the Ubuntu 24.04 (noble) cloud image.
      distro: g.kind === "lxc" ? ("debian" as const) : ("ubuntu" as const),
      codename: g.kind === "lxc" ? "bookworm" : "noble",
      hostname: ts.hostname ?? g.name,
      tags: ts.tags,
      userspace: g.kind === "lxc",
      waitForCloudInit: g.kind === "vm",
    };
    const script = pulumi.secret(pulumi.output(args.authKey).apply((key) => renderTailscaleJoin(join, key)));
    this.run = new command.remote.Command(
      `${name}-join`,
      {
        connection: pulumi.output(args.connection).apply((c) => ({ host: c.host, port: c.port ?? 22, user: c.username, privateKey: c.privateKey, hostKey: c.hostKey })),
        create: guestExecCommand(g),
        stdin: script,
        // Runs again when the join changes (version, hostname, tags or key); the hash of a secret stays secret.
        triggers: [script.apply((s) => crypto.createHash("sha256").update(s).digest("hex"))],
      },
      { parent: this, dependsOn: args.dependsOn, additionalSecretOutputs: ["connection", "stdin"] },
    );
    this.registerOutputs({});
  }
}
