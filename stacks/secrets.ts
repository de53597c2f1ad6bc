/**
 * Secrets never live in the machine description: each is its own top-level
 * config key, set with `pulumi config set --secret phoenix:<key>`, so the engine
 * tracks its secrecy per key. This module says which keys exist and which a
 * given configuration needs.
 */
import type { StackConfig } from "./schema";
import { guestLabel, rootOnlySettings } from "./validate";

export const WELL_KNOWN_SECRETS = {
  proxmoxTokenSecret: "the secret of the Proxmox API token (proxmox.tokenId)",
  proxmoxRootPassword: "the root@pam password, for settings only root@pam may make through the API (GPU devices, features) on nodes without SSH",
  sshPrivateKey: "the private key Phoenix uses to SSH to the nodes (OpenSSH PEM)",
  stepCaPassword: "the Step-CA admin provisioner password",
  modelApiKey: "the API key the model servers require",
  portainerAdminPassword: "the Portainer admin password",
} as const;

export type WellKnownSecret = keyof typeof WELL_KNOWN_SECRETS;

export interface SecretNeed {
  key: string;
  /** Config path of the setting that needs it. */
  path: string;
  why: string;
}

export function setSecretCommand(key: string): string {
  return `pulumi config set --secret phoenix:${key} <value>`;
}

/** The secrets this configuration cannot be applied without. */
export function requiredSecrets(config: StackConfig): SecretNeed[] {
  const needs: SecretNeed[] = [{ key: "proxmoxTokenSecret", path: "proxmox.tokenId", why: WELL_KNOWN_SECRETS.proxmoxTokenSecret }];
  config.proxmox.nodes.forEach((node, i) => {
    if (node.ssh) needs.push({ key: "sshPrivateKey", path: `proxmox.nodes[${i}].ssh`, why: WELL_KNOWN_SECRETS.sshPrivateKey });
  });
  const hostNode = config.host.node ?? config.proxmox.nodes[0]?.name;
  const nodesWithSsh = new Set(config.proxmox.nodes.filter((n) => n.ssh).map((n) => n.name));
  config.guests.forEach((guest, i) => {
    const rootOnly = rootOnlySettings(guest).api;
    const node = guest.node ?? hostNode ?? "";
    if (rootOnly.length > 0 && !nodesWithSsh.has(node)) {
      needs.push({
        key: "proxmoxRootPassword",
        path: `guests[${i}]`,
        why: `${guestLabel(guest)}: ${rootOnly.join(", ")} need root@pam and node ${node} has no proxmox.nodes[].ssh; configure SSH to the node or set the root@pam password`,
      });
    }
    const role = guest.role;
    if (role?.type === "step-ca") needs.push({ key: "stepCaPassword", path: `guests[${i}].role`, why: WELL_KNOWN_SECRETS.stepCaPassword });
    if (role?.type === "portainer-server") needs.push({ key: "portainerAdminPassword", path: `guests[${i}].role`, why: WELL_KNOWN_SECRETS.portainerAdminPassword });
    if (role?.type === "model-server" && role.server.engine === "vllm" && role.server.requireApiKey) {
      needs.push({ key: "modelApiKey", path: `guests[${i}].role.server.requireApiKey`, why: WELL_KNOWN_SECRETS.modelApiKey });
    }
    if (guest.kind === "vm") {
      guest.dockerStacks.forEach((stack, s) => {
        for (const [variable, key] of Object.entries(stack.secretEnv)) {
          needs.push({ key, path: `guests[${i}].dockerStacks[${s}].secretEnv.${variable}`, why: `${variable} of docker stack ${stack.name}` });
        }
      });
    }
  });
  return needs;
}

/** Every config key name that may legitimately hold a secret for this configuration. */
export function knownSecretKeys(config: StackConfig): Set<string> {
  return new Set([...Object.keys(WELL_KNOWN_SECRETS), ...requiredSecrets(config).map((n) => n.key)]);
}

// Field names that, holding a string, can only be a secret pasted in plain text.
const SECRET_FIELD_RE = /^(password|passwd|passphrase|secret|token|apikey|api_key|privatekey|private_key)$|(Password|Passphrase|Secret|Token|ApiKey|PrivateKey)$/;
// Environment variables whose plain value should have been a secret.
const SECRET_ENV_RE = /(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|PRIVATE_KEY)/i;

/** Paths in a raw machine description where a secret was written in plain text. */
export function findPlainTextSecrets(value: unknown, path: string): string[] {
  const found: string[] = [];
  const walk = (v: unknown, p: string, parentKey: string | undefined): void => {
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${p}[${i}]`, undefined));
      return;
    }
    if (v === null || typeof v !== "object") return;
    for (const [key, child] of Object.entries(v as Record<string, unknown>)) {
      const childPath = p ? `${p}.${key}` : key;
      const isEnvValue = parentKey === "env" && typeof child === "string";
      if ((typeof child === "string" && SECRET_FIELD_RE.test(key) && parentKey !== "secretEnv") || (isEnvValue && SECRET_ENV_RE.test(key))) {
        found.push(childPath);
      } else if (child !== null && typeof child === "object" && "secure" in child) {
        found.push(childPath);
      } else {
        walk(child, childPath, key);
      }
    }
  };
  walk(value, path, undefined);
  return found;
}
