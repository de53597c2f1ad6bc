/**
 * What the guest commands (rollback, move, the doctor's restore drill) share: the stack's configuration,
 * one of its guests by name or vmid, and a token client for the API.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { createPveClient, type GuestKind, type PveApi } from "../providers/pve";
import { runCommand, type SshConnection } from "../providers/ssh";
import type { NodeRun } from "../providers/guest/zfs-snapshot";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { PlacedError } from "../stacks/errors";
import { readProjectFile } from "../stacks/project-files";
import type { Guest, StackConfig } from "../stacks/schema";

/** The validated configuration of Pulumi.<stack>.yaml in `cwd`, or the text of why not. */
export function loadStack(cwd: string, stack: string): StackConfig | string {
  const name = `Pulumi.${stack}.yaml`;
  const file = path.join(cwd, name);
  if (!/^[A-Za-z0-9_.-]+$/.test(stack) || !fs.existsSync(file)) return `no stack file ${name} in ${cwd}`;
  const checked = validateStack(readStackFile(file, name), { requireSecrets: false, projectRoot: cwd });
  if (checked.ok === false) return `${name}: ${formatIssues(checked.issues)}`;
  if (checked.ok === "deferred") return `${name}: values not known: ${checked.unknownPaths.join(", ")}`;
  return checked.config;
}

export interface GuestTarget {
  guest: Guest;
  node: string;
  kind: GuestKind;
  label: string;
}

/** A guest of the stack by its name or vmid. */
export function findGuest(config: StackConfig, which: string): GuestTarget {
  const guest = config.guests.find((g) => g.name === which || String(g.vmid) === which);
  if (!guest) throw new PlacedError(`no guest ${JSON.stringify(which)}; the stack has ${config.guests.map((g) => `${g.name} (${g.vmid})`).join(", ")}`, { configPath: "guests" });
  const kind: GuestKind = guest.kind === "vm" ? "qemu" : "lxc";
  return { guest, node: guest.node ?? config.host.node ?? config.proxmox.nodes[0]!.name, kind, label: `${kind === "lxc" ? "CT" : "VM"} ${guest.vmid} (${guest.name})` };
}

/**
 * The opening of a command about one guest (rollback, move): its arguments parsed, its stack
 * loaded and the guest found; or, for a usage or stack error, the message written and undefined
 * (the command exits 2). An unknown guest throws, placed at `guests`.
 */
export function openGuestCommand<A extends { stack: string; guest: string }>(
  argv: readonly string[],
  parse: (argv: readonly string[]) => A | string,
  load: (stack: string) => StackConfig | string,
  out: (line: string) => void,
): { args: A; config: StackConfig; target: GuestTarget } | undefined {
  const args = parse(argv);
  if (typeof args === "string") {
    out(args);
    return undefined;
  }
  const config = load(args.stack);
  if (typeof config === "string") {
    out(config);
    return undefined;
  }
  return { args, config, target: findGuest(config, args.guest) };
}

const run = promisify(execFile);

/** A token client for the stack's API, its secret from `pulumi config get phoenix:proxmoxTokenSecret`. */
export async function stackApi(cwd: string, stack: string, config: StackConfig): Promise<PveApi> {
  const secret = (await run("pulumi", ["config", "get", "phoenix:proxmoxTokenSecret", "--stack", stack], { cwd })).stdout.trim();
  const caPem = config.proxmox.tls.caPem ?? (config.proxmox.tls.caFile ? readProjectFile(cwd, config.proxmox.tls.caFile, "proxmox.tls.caFile") : undefined);
  return createPveClient({ endpoint: config.proxmox.endpoint, auth: { kind: "token", tokenId: config.proxmox.tokenId, secret }, tls: { caPem, insecure: config.proxmox.tls.insecure } });
}

/**
 * The SSH connection to a node of the stack (proxmox.nodes[].ssh): its host key from the stack,
 * the key from `privateKey` when given, else from `pulumi config get phoenix:sshPrivateKey`.
 * `why` says in the error what needs the node.
 */
export async function stackSshConnection(cwd: string, stack: string, config: StackConfig, node: string, why: string, privateKey?: string): Promise<SshConnection> {
  const i = config.proxmox.nodes.findIndex((n) => n.name === node);
  const ssh = config.proxmox.nodes[i]?.ssh;
  if (!ssh) throw new PlacedError(`node ${node} has no ssh: ${why}`, { configPath: "proxmox.nodes" });
  const hostKey = ssh.hostKey ?? readProjectFile(cwd, ssh.hostKeyFile!, `proxmox.nodes[${i}].ssh.hostKeyFile`);
  const key = privateKey ?? (await run("pulumi", ["config", "get", "phoenix:sshPrivateKey", "--stack", stack], { cwd })).stdout;
  return { host: ssh.host, port: ssh.port, username: ssh.user, hostKey, privateKey: key };
}

/** Commands on a node of the stack over its SSH connection. */
export async function stackNode(cwd: string, stack: string, config: StackConfig, node: string): Promise<NodeRun> {
  const connection = await stackSshConnection(cwd, stack, config, node, "a ZFS rollback runs on the node");
  return (command) => runCommand(connection, command, { timeoutMs: 300_000 });
}
