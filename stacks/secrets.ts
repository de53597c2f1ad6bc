/**
 * Secrets never live in the machine description: each is its own top-level
 * config key, set with `pulumi config set --secret phoenix:<key>`, so the engine
 * tracks its secrecy per key. This module says which keys exist and which a
 * given configuration needs.
 */
import { stackSchema, type StackConfig } from "./schema";
import { guestLabel, rootOnlySettings, templateNesting, type ConfigIssue } from "./validate";
import { backupSecretNeeds } from "./backup";
import { assertModelApiKey, SECRET_PLACEHOLDER } from "./placeholder";

/** The stack file's machine-description keys (phoenix:proxmox, phoenix:guests, ...). */
export const MACHINE_KEYS = Object.keys(stackSchema.shape) as (keyof StackConfig)[];

export const WELL_KNOWN_SECRETS = {
  proxmoxTokenSecret: "the secret of the Proxmox API token (proxmox.tokenId)",
  proxmoxRootPassword: "the root@pam password, for settings only root@pam may make through the API (GPU devices, features) on nodes without SSH",
  sshPrivateKey: "the private key Phoenix uses to SSH to the nodes (OpenSSH PEM)",
  stepCaPassword: "the Step-CA admin provisioner password",
  modelApiKey: "the API key the model servers require",
  portainerAdminPassword: "the Portainer admin password",
  portainerAgentSecret: "the secret the Portainer server and its agents share (AGENT_SECRET): 32 to 256 characters of letters, digits and . _ ~ + / = -, e.g. `openssl rand -hex 32`",
  traefikDashboardPassword: "the password of the Traefik dashboard's user admin (basicAuth)",
  tailscaleAuthKey: "the Tailscale pre-auth key the guests with tailscale join with (tskey-auth-…), allowed to set their tags",
} as const;

export type WellKnownSecret = keyof typeof WELL_KNOWN_SECRETS;

/**
 * Docker stack secrets (secretEnv) are every other phoenix:<key>: a stack's
 * container may receive only secrets set for Docker stacks, never Phoenix's own
 * (the program reads those by WellKnownSecret name only) nor its settings.
 */
export function isDockerSecretKey(key: string): boolean {
  return !Object.hasOwn(WELL_KNOWN_SECRETS, key) && !(MACHINE_KEYS as string[]).includes(key) && !key.startsWith(GATEWAY_API_KEY_PREFIX);
}

/** Each gateway API client's key is its own secret, phoenix:gatewayApiKey-<client>, so one is set, rotated or removed alone. */
export const GATEWAY_API_KEY_PREFIX = "gatewayApiKey-";
export type GatewayApiKeySecret = `${typeof GATEWAY_API_KEY_PREFIX}${string}`;
export const gatewayApiKeySecret = (client: string): GatewayApiKeySecret => `${GATEWAY_API_KEY_PREFIX}${client}`;
/**
 * What a long shared secret must be, never echoed: a gateway API key (long and random enough that
 * its SHA-256 alone may sit on the gateway) and the Portainer agent secret
 * (providers/portainer/agent-secret.ts AGENT_SECRET_RE: the base64/hex alphabet reads the same in a
 * Compose env file and an HTTP header).
 */
export const GATEWAY_API_KEY_RE = /^[A-Za-z0-9._~+/=-]{32,256}$/;
export const GATEWAY_API_KEY_RULE = "32 to 256 characters of letters, digits and . _ ~ + / = -, e.g. `openssl rand -hex 32`";

/** secretEnv entries that name one of Phoenix's own secrets or settings. */
export function dockerSecretIssues(config: StackConfig): ConfigIssue[] {
  return dockerSecretUses(config)
    .filter((use) => !isDockerSecretKey(use.key))
    .map((use) => ({
      path: use.path,
      message: `phoenix:${use.key} is one of Phoenix's own ${Object.hasOwn(WELL_KNOWN_SECRETS, use.key) ? "secrets" : "settings"}, which no Docker stack may receive: name a secret of the stack's own here (any other key, set with \`${setSecretCommand("<key>")}\`)`,
    }));
}

/** A PBS storage's password and encryption key name keys of their own (read like a Docker stack's secret), never one of Phoenix's secrets or settings. */
export function backupSecretIssues(config: StackConfig): ConfigIssue[] {
  return backupSecretNeeds(config)
    .filter((n) => !isDockerSecretKey(n.key))
    .map((n) => ({ path: n.path, message: `phoenix:${n.key} is one of Phoenix's own secrets or settings: name a key of its own (e.g. ${n.path.endsWith("encryptionKeySecretKey") ? "pbsEncryptionKey" : "pbsPassword"}), set with \`${setSecretCommand("<key>")}\`` }));
}

/**
 * A PBS encryption key must be the key file itself (`proxmox-backup-client key create --kdf none`:
 * JSON with `data`, as pve-storage@9.1.7 PBSPlugin.pm on_add_hook checks). PVE's `autogen` is
 * refused: PVE would make a key Phoenix never sees, and a replaced storage (every bpg input is
 * RequiresReplace) deletes the node's copy (on_delete_hook) and makes a new one, so every earlier
 * backup could no longer be restored. The value is never echoed.
 */
export function pbsKeyIssues(config: StackConfig, values: Record<string, unknown>): ConfigIssue[] {
  return (config.backup?.pbs ?? []).flatMap((p, i) => {
    const key = p.encryptionKeySecretKey;
    const value = key === undefined ? undefined : values[key];
    if (key === undefined || typeof value !== "string" || value === "" || value === SECRET_PLACEHOLDER) return [];
    let data: unknown;
    try {
      data = (JSON.parse(value) as { data?: unknown }).data;
    } catch {
      data = undefined;
    }
    if (typeof data === "string" && data !== "") return [];
    return [{ path: `backup.pbs[${i}].encryptionKeySecretKey`, message: `phoenix:${key} must be the key file \`proxmox-backup-client key create --kdf none <file>\` writes (JSON with "data"), not PVE's autogen or anything else: keep a copy off the box and set it with \`pulumi config set --secret phoenix:${key} < <file>\`` }];
  });
}

function dockerSecretUses(config: StackConfig): Array<{ key: string; variable: string; stack: string; path: string }> {
  return config.guests.flatMap((guest, i) =>
    guest.kind !== "vm"
      ? []
      : guest.dockerStacks.flatMap((stack, s) => Object.entries(stack.secretEnv).map(([variable, key]) => ({ key, variable, stack: stack.name, path: `guests[${i}].dockerStacks[${s}].secretEnv.${variable}` }))),
  );
}

export interface SecretNeed {
  key: string;
  /** Config path of the setting that needs it. */
  path: string;
  why: string;
}

/**
 * What is wrong with a secret's value when its key has a required shape, without the value:
 * each gateway client's key and the Portainer agent secret (GATEWAY_API_KEY_RE), and phoenix:modelApiKey
 * (stacks/placeholder.ts assertModelApiKey). Checked when the stack loads, so a bad value stops
 * the run before any resource rather than failing one resource's rendering. The offline
 * placeholder passes.
 */
export function secretShapeProblem(key: string, value: string): string | undefined {
  if (value === SECRET_PLACEHOLDER) return undefined;
  if ((key === "portainerAgentSecret" || key.startsWith(GATEWAY_API_KEY_PREFIX)) && !GATEWAY_API_KEY_RE.test(value)) return `phoenix:${key} must be ${GATEWAY_API_KEY_RULE}: set a new one with \`${setSecretCommand(key)}\``;
  if (key === "modelApiKey") {
    try {
      assertModelApiKey(value);
    } catch (e) {
      return (e as Error).message;
    }
  }
  return undefined;
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
    const rootOnly = rootOnlySettings(guest, templateNesting(config.templates, guest)).api;
    const node = guest.node ?? hostNode ?? "";
    if (rootOnly.length > 0 && !nodesWithSsh.has(node)) {
      needs.push({
        key: "proxmoxRootPassword",
        path: `guests[${i}]`,
        why: `${guestLabel(guest)}: ${rootOnly.join(", ")} need root@pam and node ${node} has no proxmox.nodes[].ssh; configure SSH to the node or set the root@pam password`,
      });
    }
    const role = guest.role;
    if (guest.tailscale) needs.push({ key: "tailscaleAuthKey", path: `guests[${i}].tailscale`, why: WELL_KNOWN_SECRETS.tailscaleAuthKey });
    if (role?.type === "step-ca") needs.push({ key: "stepCaPassword", path: `guests[${i}].role`, why: WELL_KNOWN_SECRETS.stepCaPassword });
    if (role?.type === "nginx-gateway" && role.apiKeys.enabled) {
      role.apiKeys.clients.forEach((c, k) => needs.push({ key: gatewayApiKeySecret(c.name), path: `guests[${i}].role.apiKeys.clients[${k}]`, why: `the API key of gateway client ${c.name}: ${GATEWAY_API_KEY_RULE}` }));
    }
    if (role?.type === "traefik" && role.dashboard) needs.push({ key: "traefikDashboardPassword", path: `guests[${i}].role.dashboard`, why: WELL_KNOWN_SECRETS.traefikDashboardPassword });
    if (role?.type === "portainer-server") {
      needs.push({ key: "portainerAdminPassword", path: `guests[${i}].role`, why: WELL_KNOWN_SECRETS.portainerAdminPassword });
      needs.push({ key: "portainerAgentSecret", path: `guests[${i}].role`, why: WELL_KNOWN_SECRETS.portainerAgentSecret });
    }
    if (role?.type === "model-server" && role.server.engine === "vllm" && role.server.requireApiKey) {
      needs.push({ key: "modelApiKey", path: `guests[${i}].role.server.requireApiKey`, why: WELL_KNOWN_SECRETS.modelApiKey });
    }
  });
  needs.push(...backupSecretNeeds(config));
  for (const use of dockerSecretUses(config)) {
    if (isDockerSecretKey(use.key)) needs.push({ key: use.key, path: use.path, why: `${use.variable} of docker stack ${use.stack}` });
  }
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

// --- Secrets recognised by their value ------------------------------------------------
// Names say nothing when a password sits inside DATABASE_URL or a token in OPENAI_KEY,
// so text from outside Phoenix (the legacy importer's input) is also read for the
// shapes credentials take.

/** Token prefixes that mark a credential whatever the field is called. */
const TOKEN_PREFIXES: [RegExp, string][] = [
  // GitHub changelog 2021-03-31 "Authentication token format updates are generally available":
  // ghp_ personal, gho_ OAuth, ghu_ user-to-server, ghs_ server-to-server, ghr_ refresh; github_pat_ fine-grained.
  [/^(gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}$/, "a GitHub token"],
  // huggingface.co/docs/hub/security-tokens and huggingface.js Credentials ("hf…" access tokens).
  [/^hf_[A-Za-z0-9]{20,}$/, "a Hugging Face token"],
  // unverified: OpenAI's key format (sk-…, sk-proj-…) is not in a document read here; it is the prefix secret scanners match.
  [/^sk-[A-Za-z0-9_-]{20,}$/, "an API key (sk-)"],
];

const shannonBits = (s: string): number => {
  const counts = new Map<string, number>();
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= (n / s.length) * Math.log2(n / s.length);
  return bits;
};

/** Share of neighbouring characters that switch between lower case, upper case and digit: high in random strings, low in names like Qwen3-Coder-30B. */
const classSwitches = (s: string): number => {
  const cls = (ch: string) => (/[a-z]/.test(ch) ? 1 : /[A-Z]/.test(ch) ? 2 : /\d/.test(ch) ? 3 : 0);
  let switches = 0;
  for (let i = 1; i < s.length; i++) {
    const a = cls(s[i - 1]!);
    const b = cls(s[i]!);
    if (a && b && a !== b) switches++;
  }
  return switches / s.length;
};

/** One word of text: a token, a random key, or neither. */
function secretWord(word: string): string | undefined {
  for (const [re, kind] of TOKEN_PREFIXES) if (re.test(word)) return kind;
  if (/^[0-9a-f]{32,}$/i.test(word) && /\d/.test(word) && /[a-f]/i.test(word)) return "a long hexadecimal key";
  // Random base64/base62 keys: long, varied, and without the word structure of names, paths and model ids.
  if (word.length >= 20 && /^[A-Za-z0-9+/=_~-]+$/.test(word) && !word.startsWith("/") && shannonBits(word) >= 4 && classSwitches(word) >= 0.3) return "a long random string";
  return undefined;
}

/**
 * What kind of credential a value holds, judged by its shape alone, or
 * undefined. It looks inside text too: `HF_TOKEN=hf_…` in a config line, or a
 * password in `postgres://app:pw@db/app`.
 */
export function secretValueKind(value: string): string | undefined {
  // An OpenSSH public key line (sshd(8) AUTHORIZED_KEYS FILE FORMAT: type, base64 key, comment) is meant to be shared.
  if (/^\s*(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+=*( .*)?$/.test(value)) return undefined;
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(value)) return "a private key";
  // RFC 3986 §3.2.1 userinfo: scheme://user:password@host.
  if (/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/\s:@]*:[^/\s@]+@/.test(value)) return "a password inside a URL";
  // A key as the URL's user (https://<key>@host, as in DSNs).
  for (const m of value.matchAll(/[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/\s:@]+)@/g)) if (secretWord(m[1]!)) return "a key inside a URL";
  for (const word of value.split(/[\s"'`=,;&?]+/)) {
    const kind = word && secretWord(word);
    if (kind) return kind;
  }
  return undefined;
}

/** The secret parts of a value: the whole value, and a URL's password on its own, so neither is echoed anywhere. */
export function secretParts(value: string): string[] {
  const parts = [value];
  for (const m of value.matchAll(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/\s:@]*:([^/\s@]+)@/g)) parts.push(m[1]!);
  for (const word of value.split(/[\s"'`=,;&?]+/)) if (word && secretWord(word)) parts.push(word);
  return parts.filter((p) => p.length >= 4);
}
