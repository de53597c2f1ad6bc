/**
 * VmInstall: install scripts run inside a VM through its QEMU guest agent, the way GuestInstall
 * runs them in a container through `pct exec`: on create, again whenever a script changes, and
 * again after `pulumi refresh` found one missing or not running. This is how every Phoenix VM gets
 * node_exporter and Alloy (components/observability/vm-agents.ts): a VM created before them gets
 * them on the next apply, which a first-boot-only cloud-init could never do.
 *
 * How: the node runs `qm guest exec <vmid> --pass-stdin 1 -- bash -c <runner>` per script
 * (providers/portainer/guest-exec.ts; qemu-server@9.2.6 src/PVE/CLI/qm.pm `exec`: stdin up to
 * 1 MiB becomes the command's stdin, the exit status comes back in the printed JSON), after
 * `qm guest cmd <vmid> ping` answers: the agent is a package the VM's cloud-init installs at first
 * boot (components/docker/cloud-init.ts). The runner waits for cloud-init to finish (its packages,
 * a compose host's NVIDIA driver, which the GPU exporter reads), saves the script root-only, runs
 * it, and only when it succeeded records the script's SHA-256 beside it. Both the wait and the
 * script are bounded inside qm's, so a failure comes back with its output and leaves nothing
 * running in the VM. The scripts are Phoenix's
 * staged installers (components/render/install-script.ts): a second run changes nothing.
 * They carry no secret.
 *
 * `read` (pulumi refresh) compares those records with the scripts and asks systemd whether each
 * script's units are active; any difference is drift, and the next `up` runs the scripts again.
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { Checker, diffResult, isUnknown, same, changedKeys } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { runScriptChecked, type SshConnection } from "../ssh";
import { shellQuote } from "../ssh/script";
import { guestExecError, parseGuestExec, renderGuestExec, renderWaitForGuestAgent } from "../portainer/guest-exec";

/** One install script and the systemd units it leaves running. */
export interface VmScript {
  /** Short name: the script is saved as /usr/local/sbin/phoenix-<name>-install. */
  name: string;
  /** The script (bash, run as root). */
  script: string;
  /** Units that run once it succeeded; `read` asks systemd about them. */
  units: string[];
}

export interface VmInstallInputs {
  /** SSH to the Proxmox node the VM runs on. */
  connection: SshConnection;
  /** That node's name. */
  node: string;
  vmid: number;
  /** Run in this order, each only after the one before succeeded. */
  scripts: VmScript[];
}

export interface VmInstallOutputs extends VmInstallInputs {
  /** Whether the VM held every script's record and ran its units when last looked at (`pulumi refresh`); false runs them again. */
  inSync: boolean;
}

export interface VmInstallArgs {
  connection: pulumi.Input<SshConnection>;
  node: pulumi.Input<string>;
  vmid: pulumi.Input<number>;
  scripts: pulumi.Input<VmScript[]>;
}

export const vmInstallProvider = dynamicProvider<VmInstallInputs, VmInstallOutputs>("guest/vm-install");

export class VmInstall extends DynamicResource {
  declare readonly inSync: pulumi.Output<boolean>;

  constructor(name: string, args: VmInstallArgs, opts?: pulumi.CustomResourceOptions) {
    super(vmInstallProvider, name, { inSync: undefined, ...args, connection: pulumi.secret(args.connection) }, pulumi.mergeOptions(opts, { additionalSecretOutputs: ["connection"] }), "phoenix/guest", "VmInstall");
  }
}

/**
 * How long to wait for the guest agent (cloud-init installs it at first boot), and for cloud-init
 * plus one script: a compose host's cloud-init installs the NVIDIA driver and CUDA after the agent.
 */
const AGENT_WAIT_SECONDS = 900;
const EXEC_TIMEOUT_SECONDS = 3600;
/**
 * Inside that, how long the runner waits for cloud-init, and when it stops the script: both end in
 * the VM before qm stops waiting, so their output comes back and nothing is left running there.
 * qm.pm `exec` past its --timeout prints only the pid, without the output, and leaves the command
 * running; `cloud-init status --wait` loops for as long as cloud-init is not done, with no limit
 * of its own (cloud-init 26.2 cloudinit/cmd/status.py handle_status_args). coreutils timeout(1)
 * exits 124 when the limit struck and, without --foreground, signals the command's children too.
 */
const CLOUD_INIT_WAIT_SECONDS = 2700;
const SCRIPT_DEADLINE_SECONDS = EXEC_TIMEOUT_SECONDS - 60;
const NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
const UNIT_RE = /^[A-Za-z0-9][A-Za-z0-9@._-]*\.(service|timer|socket|path)$/;

export const vmScriptPath = (name: string) => `/usr/local/sbin/phoenix-${name}-install`;
/** Where the SHA-256 of the script that last ran to the end is kept. */
export const vmScriptRecord = (name: string) => `/var/lib/phoenix/vm-install/${name}.sha256`;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
/**
 * A script for the node. Not providers/ssh/script.ts renderScript: that one roots the node script at
 * PHOENIX_ROOT when its text names "$R", which here only the VM's script (a quoted heredoc) does.
 */
const nodeScript = (body: string) => `#!/bin/bash\nset -euo pipefail\n${body}\n`;

/**
 * What runs inside the VM (bash, as root, the script on stdin). Every path is under PHOENIX_ROOT,
 * unset in a real VM: the rig's qm stand-in sets it to the VM's directory (test/rig/standins.ts),
 * where the scripts, rendered rooted (vm-agents.ts), write too.
 */
export function renderInVmRunner(name: string): string {
  const script = `"$root"${shellQuote(vmScriptPath(name))}`;
  const record = `"$root"${shellQuote(vmScriptRecord(name))}`;
  return [
    "set -euo pipefail",
    'root="${PHOENIX_ROOT:-}"',
    // cloud-init status --wait blocks until cloud-init is done: 1 or 2 when a module failed (the script then meets it), 124 from timeout.
    "rc=0",
    `timeout ${CLOUD_INIT_WAIT_SECONDS} cloud-init status --wait >/dev/null </dev/null || rc=$?`,
    `if [ "$rc" -eq 124 ]; then echo "cloud-init had not finished after ${CLOUD_INIT_WAIT_SECONDS} s (cloud-init status --long); nothing was run" >&2; exit 1; fi`,
    'if [ "$rc" -ne 0 ]; then echo "cloud-init reported errors (cloud-init status --long)" >&2; fi',
    "umask 022",
    `mkdir -p "$(dirname ${script})" "$(dirname ${record})"`,
    `cat >${script}.new`,
    `chmod 0700 ${script}.new`,
    `mv -f ${script}.new ${script}`,
    `rm -f ${record}`,
    // What is left of the exec's time ($SECONDS counts from this shell's start).
    `rc=0; timeout --kill-after=10 "$((${SCRIPT_DEADLINE_SECONDS} - SECONDS))" ${script} </dev/null || rc=$?`,
    `if [ "$rc" -eq 124 ]; then echo "stopped: not finished ${SCRIPT_DEADLINE_SECONDS} s after the exec began" >&2; fi`,
    'if [ "$rc" -ne 0 ]; then exit "$rc"; fi',
    `sha256sum <${script} | cut -d' ' -f1 >${record}`,
  ].join("\n");
}

/** The node-side script that runs one install script in VM `vmid`, once its guest agent answers. */
export function renderRunScript(vmid: number, s: Pick<VmScript, "name" | "script">): string {
  return nodeScript(
    [renderWaitForGuestAgent(vmid, AGENT_WAIT_SECONDS), renderGuestExec(vmid, ["bash", "-c", renderInVmRunner(s.name)], { timeoutSeconds: EXEC_TIMEOUT_SECONDS, stdin: s.script })].join("\n"),
  );
}

/** The node-side probe: `record <name> <sha256|->` per script and `inactive <unit>` per unit systemd does not report active. */
export function renderProbeScript(vmid: number, scripts: readonly Pick<VmScript, "name" | "units">[]): string {
  const lines = [
    'root="${PHOENIX_ROOT:-}"',
    ...scripts.map((s) => `printf 'record %s %s\\n' ${shellQuote(s.name)} "$(cat "$root"${shellQuote(vmScriptRecord(s.name))} 2>/dev/null || echo -)"`),
    ...scripts.flatMap((s) => s.units).map((u) => `systemctl is-active --quiet ${shellQuote(u)} || echo inactive ${shellQuote(u)}`),
  ];
  return nodeScript(renderGuestExec(vmid, ["bash", "-c", lines.join("\n")], { timeoutSeconds: 60 }));
}

/** Whether the probe's answer says every script ran to the end as it is now and its units run. */
export function probeInSync(stdout: string, scripts: readonly VmScript[]): boolean {
  const lines = stdout.split("\n").filter(Boolean);
  if (lines.some((l) => l.startsWith("inactive "))) return false;
  return scripts.every((s) => lines.includes(`record ${s.name} ${sha256(s.script)}`));
}

async function install(i: VmInstallInputs, only?: ReadonlySet<string>): Promise<VmInstallOutputs> {
  for (const s of i.scripts) {
    if (only && !only.has(s.name)) continue;
    const what = `run ${s.name}'s install script in VM ${i.vmid}`;
    const out = await runScriptChecked(i.connection, what, renderRunScript(i.vmid, s), { timeoutMs: (AGENT_WAIT_SECONDS + EXEC_TIMEOUT_SECONDS + 60) * 1000 });
    const r = parseGuestExec(out.stdout);
    if (r.exitcode !== 0) throw guestExecError(what, r, EXEC_TIMEOUT_SECONDS);
  }
  return { ...i, inSync: true };
}

/** Only how the VM is reached changed (the node it runs on, after a migration, or SSH to it): nothing to run. */
const reachOnly = (changed: readonly string[]) => changed.length > 0 && changed.every((k) => k === "connection" || k === "node");

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`install scripts of VM ${String(news.vmid)}`);
    c.connection(news.connection);
    c.node(news.node);
    if (!isUnknown(news.vmid)) c.require("vmid", Number.isInteger(news.vmid) && (news.vmid as number) >= 100, "vmid must be a VM id (100 or more)");
    if (!isUnknown(news.scripts)) {
      const scripts = Array.isArray(news.scripts) ? (news.scripts as Record<string, unknown>[]) : [];
      c.require("scripts", Array.isArray(news.scripts) && scripts.length > 0, "scripts must be a non-empty list");
      scripts.forEach((s, k) => {
        c.string(`scripts[${k}].name`, s.name, NAME_RE, "a short lower-case name");
        c.require(
          `scripts[${k}].script`,
          isUnknown(s.script) || (typeof s.script === "string" && s.script.startsWith("#!") && s.script.endsWith("\n") && Buffer.byteLength(s.script) < 1024 * 1024),
          // Ending in a line break: the heredoc that carries it adds one otherwise (guest-exec.ts), and the VM's record would never match.
          "script must be a script (#!, ending in a line break) under 1 MiB, what qm guest exec passes on stdin",
        );
        if (!isUnknown(s.units)) c.require(`scripts[${k}].units`, Array.isArray(s.units) && s.units.every((u) => typeof u === "string" && UNIT_RE.test(u)), "units must be systemd unit names");
      });
      c.require("scripts", new Set(scripts.map((s) => s.name)).size === scripts.length, "script names must differ");
    }
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: VmInstallOutputs, news: VmInstallInputs) {
    const changed = changedKeys(olds, news, ["connection", "node", "scripts"]);
    // Drift found by refresh (a record gone or stale, a unit not running) is a change: update runs the scripts again.
    return diffResult(olds.inSync === false ? [...changed, "inSync"] : changed, same(olds.vmid, news.vmid) ? [] : ["vmid"]);
  },

  async create(inputs: VmInstallInputs) {
    return { id: `${inputs.node}/qemu/${inputs.vmid}/install`, outs: await install(inputs) };
  },

  async read(id: string, props: VmInstallOutputs) {
    try {
      const out = await runScriptChecked(props.connection, `read the install records of VM ${props.vmid}`, renderProbeScript(props.vmid, props.scripts), { timeoutMs: 120_000 });
      const r = parseGuestExec(out.stdout);
      if (r.exitcode !== 0) return { id, props };
      return { id, props: { ...props, inSync: probeInSync(r.stdout, props.scripts) } };
    } catch {
      // A VM that is stopped or whose agent does not answer cannot be looked into: keep what is known.
      return { id, props };
    }
  },

  async update(_id: string, olds: VmInstallOutputs, news: VmInstallInputs) {
    const changed = changedKeys(olds, news, ["connection", "node", "scripts"]);
    if (olds.inSync !== false && reachOnly(changed)) return { outs: { ...news, inSync: true } };
    // Drift runs every script again; otherwise only the new and the changed ones run.
    const before = new Map(olds.scripts.map((s) => [s.name, s.script]));
    const only = olds.inSync === false ? undefined : new Set(news.scripts.filter((s) => before.get(s.name) !== s.script).map((s) => s.name));
    return { outs: await install(news, only) };
  },

  async delete() {
    // What the scripts installed stays in the VM, as a container's installs stay in the container:
    // it goes with the VM, and the VM's removal is guarded (providers/guest/destroy-guard.ts).
  },
};
