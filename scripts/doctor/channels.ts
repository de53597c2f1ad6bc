/**
 * How the doctor runs commands where a check must run: on the node (host → service)
 * and inside guests (the guest layer, and gateway → Traefik from inside the gateway).
 * Injected, so tests run the same checks through a local sshd and stand-ins.
 */
import { runCommand, shellQuote, type SshConnection } from "../../providers/ssh";
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
 * Containers through `pct exec`; VMs through their guest agent (`qm guest exec`):
 * the node can always reach both, while SSH into a VM would need the VM's host key,
 * which the stack does not pin.
 */
export function guestsViaNode(node: NodeExec): GuestExec {
  return {
    async run(guest, command) {
      if (guest.kind === "lxc") return node.run(`pct exec ${guest.vmid} -- sh -c ${shellQuote(command)}`);
      const res = await node.run(`qm guest exec ${guest.vmid} --timeout 60 -- sh -c ${shellQuote(command)}`);
      if (res.code !== 0) return res;
      const report = JSON.parse(res.stdout) as AgentExec;
      return { code: report.exitcode ?? null, stdout: report["out-data"] ?? "", stderr: report["err-data"] ?? "" };
    },
  };
}

/** How a guest's command is written in a hint the operator runs on the node. */
export function inGuest(guest: GuestRef, command: string): string {
  return guest.kind === "lxc" ? `pct exec ${guest.vmid} -- ${command}` : `ssh ${guest.user ?? "root"}@${guest.ip} sudo ${command}`;
}
