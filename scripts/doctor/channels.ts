/**
 * How the doctor runs commands where a check must run: on the node (host → service)
 * and inside guests (the guest layer, and gateway → Traefik from inside the gateway).
 * Injected, so tests run the same checks through a local sshd and stand-ins.
 */
import { runCommand, shellQuote, type SshConnection } from "../../providers/ssh";
import { hostNodeOf } from "../../stacks/cluster";
import type { StackConfig } from "../../stacks/schema";
import type { GuestRef } from "./plan";

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a shell command on the Proxmox node. */
export interface NodeExec {
  run(command: string): Promise<ExecResult>;
}

/** Runs a shell command inside a guest. */
export interface GuestExec {
  run(guest: GuestRef, command: string): Promise<ExecResult>;
}

export function sshNode(connection: SshConnection): NodeExec {
  // Diagnostics must come back even from a struggling host: short limits, one retry.
  return { run: (command) => runCommand(connection, command, { timeoutMs: 60_000, retries: 1 }) };
}

/** What `qm guest exec` prints: the guest agent's report of the command. */
interface AgentExec {
  exitcode?: number;
  "out-data"?: string;
  "err-data"?: string;
}

/**
 * The node channel of each node by name, each opened on its first command and then kept: a
 * node that no check needs is never connected to, and one that cannot be is a failed probe of
 * the checks that need it, not of the whole run.
 */
function perNode(open: (node: string) => Promise<NodeExec>): (node: string) => NodeExec {
  const opened = new Map<string, Promise<NodeExec>>();
  return (node) => ({
    async run(command) {
      let exec = opened.get(node);
      if (!exec) opened.set(node, (exec = open(node)));
      return (await exec).run(command);
    },
  });
}

/**
 * Containers through `pct exec`; VMs through their guest agent (`qm guest exec`), each on the
 * node holding the guest, since both act only on that node's guests: pct exec loads the config
 * "to test if container exists on this node" (pve-container 963730e src/PVE/CLI/pct.pm:236) and
 * qm guest exec needs the VM running locally (qemu-server e6352be6 src/PVE/QemuServer/Agent.pm:109-112
 * assert_agent_available). The node can always reach both, while SSH into a VM would need the
 * VM's host key, which the stack does not pin.
 */
export function guestsViaNodes(nodeOf: (node: string) => NodeExec): GuestExec {
  return {
    async run(guest, command) {
      const node = nodeOf(guest.node);
      if (guest.kind === "lxc") return node.run(`pct exec ${guest.vmid} -- sh -c ${shellQuote(command)}`);
      const res = await node.run(`qm guest exec ${guest.vmid} --timeout 60 -- sh -c ${shellQuote(command)}`);
      if (res.code !== 0) return res;
      const report = JSON.parse(res.stdout) as AgentExec;
      return { code: report.exitcode ?? null, stdout: report["out-data"] ?? "", stderr: report["err-data"] ?? "" };
    },
  };
}

/**
 * The doctor's channels in a stack of one node or several: host.node's channel for the node's
 * own checks, and each guest's commands through the node holding it; `open` makes a node's
 * channel (its SSH connection), once per node and only for the nodes used.
 */
export function nodeChannels(config: StackConfig, open: (node: string) => Promise<NodeExec>): { node: NodeExec; guest: GuestExec } {
  const nodes = perNode(open);
  return { node: nodes(hostNodeOf(config)), guest: guestsViaNodes(nodes) };
}

/** Every guest through one node's channel: a single-node stack, or a rig that is every node. */
export const guestsViaNode = (node: NodeExec): GuestExec => guestsViaNodes(() => node);

/** How a guest's command is written in a hint the operator runs on the node. */
export function inGuest(guest: GuestRef, command: string): string {
  return guest.kind === "lxc" ? `pct exec ${guest.vmid} -- ${command}` : `ssh ${guest.user ?? "root"}@${guest.ip} sudo ${command}`;
}
