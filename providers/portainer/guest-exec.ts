/**
 * Running a command inside a VM from its Proxmox node, through the VM's QEMU guest agent
 * (`qm guest exec`): how Phoenix reaches the Portainer VMs, which it never logs in to.
 *
 * qemu-server@9.2.6 src/PVE/CLI/qm.pm, method `exec`: `qm guest exec <vmid> [--timeout N]
 * [--pass-stdin 1] -- <command> [args]` waits (synchronous, default 30 s, 0 = no limit) for the
 * command and prints, through $print_agent_result, the agent's exec-status as pretty JSON:
 * `exited`, `exitcode`, `out-data`, `err-data` (decoded from base64 by
 * src/PVE/QemuServer/Agent.pm qemu_exec_status). Past the timeout it warns and prints only the
 * pid, so `exited` is missing. `--pass-stdin 1` reads qm's stdin to EOF (at most 1 MiB) and
 * hands it to the agent as `input-data`, the command's stdin: that is how a secret gets into
 * the VM without appearing on any command line, here or in the VM.
 * The qm CLI's own exit status is 0 whatever the command's; the command's is `exitcode`.
 */
import { shellQuote } from "../ssh/script";

export interface GuestExecOptions {
  /** Seconds qm waits for the command (its --timeout). */
  timeoutSeconds: number;
  /** A quoted-heredoc body passed as the command's stdin (--pass-stdin 1); never on a command line. */
  stdin?: string;
}

/** Delimiter of the heredoc that carries stdin; a stdin holding this line is refused. */
const STDIN_EOF = "PHOENIX_GUEST_STDIN";

/** Shell lines (for a node script) running argv in VM `vmid`; qm prints the exec-status JSON. */
export function renderGuestExec(vmid: number, argv: string[], opts: GuestExecOptions): string {
  if (!Number.isInteger(vmid) || vmid < 100) throw new Error(`vmid ${String(vmid)} is not a VM id`);
  // A command given as a shell script is expanded in the VM, not here.
  const cmd = `${argv.some((a) => a.includes("$")) ? "# shellcheck disable=SC2016\n" : ""}qm guest exec ${vmid} --timeout ${Math.trunc(opts.timeoutSeconds)}`;
  if (opts.stdin === undefined) return `${cmd} -- ${argv.map(shellQuote).join(" ")}`;
  if (opts.stdin.split("\n").includes(STDIN_EOF)) throw new Error(`stdin for VM ${vmid} contains the heredoc delimiter line`);
  const body = opts.stdin.endsWith("\n") ? opts.stdin : `${opts.stdin}\n`;
  return `${cmd} --pass-stdin 1 -- ${argv.map(shellQuote).join(" ")} <<'${STDIN_EOF}'\n${body}${STDIN_EOF}`;
}

/**
 * Shell lines waiting until the VM's guest agent answers `guest-ping` (`qm guest cmd <vmid> ping`,
 * qm.pm `guest cmd`): the agent is a package cloud-init installs on first boot
 * (components/docker/cloud-init.ts), so it answers some minutes after the VM starts.
 */
export function renderWaitForGuestAgent(vmid: number, waitSeconds: number): string {
  return [
    `deadline=$((SECONDS + ${Math.trunc(waitSeconds)}))`,
    `until qm guest cmd ${vmid} ping >/dev/null 2>&1; do`,
    `  if [ "$SECONDS" -ge "$deadline" ]; then echo "VM ${vmid}: the QEMU guest agent did not answer within ${Math.trunc(waitSeconds)} s" >&2; exit 1; fi`,
    "  sleep 5",
    "done",
  ].join("\n");
}

export interface GuestExecResult {
  /** Set when the command ended normally: its exit status. */
  exitcode?: number;
  /** Set when a signal ended the command: its number. */
  signal?: number;
  stdout: string;
  stderr: string;
}

/**
 * Reads what qm printed. qm prints the agent's exec-status as it is (qm.pm `exec`, Agent.pm
 * qemu_exec_status): QEMU's qga/qapi-schema.json GuestExecStatus has `exitcode` only when the
 * process "was normally terminated" and `signal` when it "was abnormally terminated"
 * (qga/commands-posix.c: WIFEXITED / WIFSIGNALED). An unfinished command (qm's timeout) has neither.
 */
export function parseGuestExec(stdout: string): GuestExecResult {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    return { stdout: "", stderr: "" };
  }
  const ended = r.exited === 1;
  return {
    ...(ended && typeof r.exitcode === "number" ? { exitcode: r.exitcode } : {}),
    ...(ended && typeof r.signal === "number" ? { signal: r.signal } : {}),
    stdout: typeof r["out-data"] === "string" ? r["out-data"] : "",
    stderr: typeof r["err-data"] === "string" ? r["err-data"] : "",
  };
}

/** How a command that did not exit 0 ended: its exit status, the signal that killed it, or qm's timeout. */
export function guestExecEnd(r: GuestExecResult, timeoutSeconds: number): string {
  if (r.exitcode !== undefined) return `exit ${r.exitcode}`;
  if (r.signal !== undefined) return `killed by signal ${r.signal}`;
  return `did not finish within ${Math.trunc(timeoutSeconds)} s`;
}

/** The error for a command that did not exit 0: what it was for, how it ended and the tail of its stderr. */
export function guestExecError(what: string, r: GuestExecResult, timeoutSeconds: number): Error {
  const tail = r.stderr.trim().split("\n").slice(-15).join("\n");
  return new Error(`${what}: ${guestExecEnd(r, timeoutSeconds)}${tail ? `:\n${tail}` : ""}`);
}
