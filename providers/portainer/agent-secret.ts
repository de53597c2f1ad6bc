/**
 * PortainerAgentSecret: the secret the Portainer server and its agents share (AGENT_SECRET),
 * put into one Portainer VM and its Portainer container (re)created to read it.
 *
 * Why: an agent without AGENT_SECRET pairs with the first Portainer that signs a request to it
 * and trusts only that key from then on (portainer/agent@2.23.0 crypto/ecdsa.go
 * decodeAndParsePublicKey, README "Default mode"): anyone on the LAN who reaches port 9001
 * first owns the Docker host. With AGENT_SECRET set, every request must be signed over the
 * secret (ecdsa.go decodeAndVerifySignature: md5(secret) instead of md5("Portainer-App");
 * http/security/notary.go answers 403 otherwise), and the server signs with the secret from
 * its own environment at start (portainer/portainer@2.23.0 api/cmd/portainer/main.go
 * initDigitalSignatureService: os.Getenv("AGENT_SECRET"); api/crypto/ecdsa.go CreateSignature).
 * Both read it only when their process starts, so a new secret means new containers.
 *
 * How: never through cloud-init (user data sits on the node's snippets storage in plain
 * text). The node runs `qm guest exec <vmid> --pass-stdin 1 -- sh -c …` (guest-exec.ts); the
 * script reaches the node on SSH's stdin, the secret reaches the VM as the command's stdin,
 * and lands in a root-only env file the compose file names (components/docker/portainer.ts).
 * Nothing here prints it, and no error message carries it.
 */
import { createHash } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { Checker, diffResult, isUnknown, nodeReplaces, reachOnly, same, changedKeys } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { runScriptChecked, type SshConnection } from "../ssh";
import { renderScript, shellQuote } from "../ssh/script";
import { GATEWAY_API_KEY_RE } from "../../stacks/secrets";
import { guestExecError, parseGuestExec, renderGuestExec, renderWaitForGuestAgent } from "./guest-exec";

/** The env file both compose files name (components/docker/portainer.ts env_file). */
export const PORTAINER_ENV_FILE = "/etc/phoenix/portainer.env";
/** The variable both read (agent os/options.go EnvKeyAgentSecret; server main.go). */
export const AGENT_SECRET_VARIABLE = "AGENT_SECRET";
/**
 * What Phoenix accepts as the secret: 32 to 256 characters of the base64/hex alphabet. The env
 * file is read by Compose's dotenv parser, which expands `$`, ends a value at ` #` and strips
 * quotes; a value without those characters means the same thing everywhere.
 */
export const AGENT_SECRET_RE = GATEWAY_API_KEY_RE;

/** How long to wait for the guest agent (installed by cloud-init on first boot) and for cloud-init and Compose. */
const AGENT_WAIT_SECONDS = 900;
const EXEC_TIMEOUT_SECONDS = 900;

export interface PortainerAgentSecretInputs {
  /** SSH to the Proxmox node the VM runs on. */
  connection: SshConnection;
  /** That node's name: the VM is another VM on another node. */
  node: string;
  vmid: number;
  /** The Pulumi secret portainerAgentSecret. */
  secret: string;
  /** The compose file whose containers read PORTAINER_ENV_FILE, recreated after each delivery. */
  composeFile: string;
}

export interface PortainerAgentSecretOutputs extends PortainerAgentSecretInputs {
  /** Whether the VM's env file held this secret when last looked at (`pulumi refresh`); false re-delivers. */
  inSync: boolean;
}

export interface PortainerAgentSecretArgs {
  connection: pulumi.Input<SshConnection>;
  node: pulumi.Input<string>;
  vmid: pulumi.Input<number>;
  secret: pulumi.Input<string>;
  composeFile: pulumi.Input<string>;
}

export const portainerAgentSecretProvider = dynamicProvider<PortainerAgentSecretInputs, PortainerAgentSecretOutputs>("portainer/agent-secret");

export class PortainerAgentSecret extends DynamicResource {
  declare readonly inSync: pulumi.Output<boolean>;

  constructor(name: string, args: PortainerAgentSecretArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      portainerAgentSecretProvider,
      name,
      { inSync: undefined, ...args, secret: pulumi.secret(args.secret), connection: pulumi.secret(args.connection) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["secret", "connection"] }),
      "phoenix/portainer",
      "PortainerAgentSecret",
    );
  }
}

const envFileContent = (secret: string) => `${AGENT_SECRET_VARIABLE}=${secret}\n`;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/**
 * The script run inside the VM (by sh, as root, the secret on stdin): waits for cloud-init to
 * finish (it installs Docker and writes the compose file), writes the env file 0600 through a
 * temporary file in the same folder, then recreates the project's containers so they start with
 * it (`up -d` alone keeps a running container whose compose file did not change).
 */
export function renderInVmDelivery(composeFile: string): string {
  return [
    "set -eu",
    'root="${PHOENIX_ROOT:-}"',
    "umask 077",
    // cloud-init status --wait blocks until cloud-init is done; it exits non-zero when a module failed, which Compose then reports.
    'cloud-init status --wait >/dev/null || echo "cloud-init reported errors (cloud-init status --long)" >&2',
    `mkdir -p "$root${PORTAINER_ENV_FILE.replace(/\/[^/]+$/, "")}"`,
    `cat > "$root${PORTAINER_ENV_FILE}.new"`,
    `mv -f "$root${PORTAINER_ENV_FILE}.new" "$root${PORTAINER_ENV_FILE}"`,
    `docker compose -f ${shellQuote(composeFile)} up -d --force-recreate`,
  ].join("\n");
}

/** The node-side script that delivers the secret into VM `vmid` and restarts its Portainer container. */
export function renderDeliveryScript(i: Pick<PortainerAgentSecretInputs, "vmid" | "secret" | "composeFile">): string {
  return renderScript(
    [
      renderWaitForGuestAgent(i.vmid, AGENT_WAIT_SECONDS),
      renderGuestExec(i.vmid, ["sh", "-c", renderInVmDelivery(i.composeFile)], { timeoutSeconds: EXEC_TIMEOUT_SECONDS, stdin: envFileContent(i.secret) }),
    ].join("\n"),
  );
}

/** The node-side probe: the env file's SHA-256 as the VM sees it (nothing when absent). */
export function renderProbeScript(vmid: number): string {
  return renderScript(renderGuestExec(vmid, ["sh", "-c", `sha256sum "\${PHOENIX_ROOT:-}${PORTAINER_ENV_FILE}" 2>/dev/null || true`], { timeoutSeconds: 30 }));
}

async function deliver(i: PortainerAgentSecretInputs): Promise<PortainerAgentSecretOutputs> {
  const what = `put the Portainer agent secret into VM ${i.vmid} and recreate its containers (${i.composeFile})`;
  const out = await runScriptChecked(i.connection, what, renderDeliveryScript(i), { timeoutMs: (AGENT_WAIT_SECONDS + EXEC_TIMEOUT_SECONDS + 60) * 1000 });
  const r = parseGuestExec(out.stdout);
  if (r.exitcode !== 0) throw guestExecError(what, r, EXEC_TIMEOUT_SECONDS);
  return { ...i, inSync: true };
}

function checkSecret(c: Checker, v: unknown): void {
  if (isUnknown(v)) return;
  // Never echo the value.
  c.require(
    "secret",
    typeof v === "string" && AGENT_SECRET_RE.test(v),
    "phoenix:portainerAgentSecret must be 32 to 256 characters of letters, digits and . _ ~ + / = - (for example the output of `openssl rand -hex 32`)",
  );
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`Portainer agent secret of VM ${String(news.vmid)}`);
    c.connection(news.connection);
    c.node(news.node);
    if (!isUnknown(news.vmid)) c.require("vmid", Number.isInteger(news.vmid) && (news.vmid as number) >= 100, "vmid must be a VM id (100 or more)");
    checkSecret(c, news.secret);
    c.string("composeFile", news.composeFile, /^\/[A-Za-z0-9._/-]+\.ya?ml$/, "an absolute path of a compose file");
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: PortainerAgentSecretOutputs, news: PortainerAgentSecretInputs) {
    const replaces = [...nodeReplaces(olds, news), ...(same(olds.vmid, news.vmid) ? [] : ["vmid"])];
    const changed = changedKeys(olds, news, ["connection", "secret", "composeFile"]);
    // Drift found by refresh (the file gone or changed in the VM) is a change: update puts it back.
    return diffResult(olds.inSync === false ? [...changed, "inSync"] : changed, replaces);
  },

  async create(inputs: PortainerAgentSecretInputs) {
    return { id: `${inputs.node}/qemu/${inputs.vmid}/portainer-agent-secret`, outs: await deliver(inputs) };
  },

  async read(id: string, props: PortainerAgentSecretOutputs) {
    let seen: string | undefined;
    try {
      const out = await runScriptChecked(props.connection, `read the Portainer agent secret's file in VM ${props.vmid}`, renderProbeScript(props.vmid), { timeoutMs: 90_000 });
      const r = parseGuestExec(out.stdout);
      if (r.exitcode !== 0) return { id, props };
      seen = r.stdout.split(/\s+/)[0] ?? "";
    } catch {
      // A VM that is stopped or whose agent does not answer cannot be looked into: keep what is known.
      return { id, props };
    }
    return { id, props: { ...props, inSync: seen === sha256(envFileContent(props.secret)) } };
  },

  async update(_id: string, olds: PortainerAgentSecretOutputs, news: PortainerAgentSecretInputs) {
    const changed = changedKeys(olds, news, ["connection", "secret", "composeFile"]);
    if (olds.inSync !== false && reachOnly(changed)) return { outs: { ...news, inSync: true } };
    return { outs: await deliver(news) };
  },

  async delete() {
    // The file goes with the VM: a VM leaves Portainer only by being replaced or destroyed
    // (its role is in its user data, a force-new input), so there is nothing to undo here.
  },
};
