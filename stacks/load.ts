/**
 * Loading the stack configuration from where it lives (the Pulumi engine, or a
 * stack file read offline) and validating it once, at the boundary. Everything
 * past this point works with a typed, checked StackConfig.
 */
import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { findPlainTextSecrets, knownSecretKeys, requiredSecrets, setSecretCommand, WELL_KNOWN_SECRETS, type SecretNeed } from "./secrets";
import { roleSchema, stackSchema, UNKNOWN, type StackConfig } from "./schema";
import { crossValidate, type ConfigIssue, type Unchecked } from "./validate";

export const NAMESPACE = "phoenix";
export const MACHINE_KEYS = Object.keys(stackSchema.shape) as (keyof StackConfig)[];

/** The phoenix:* config of one stack, as raw values. */
export interface RawStack {
  /** Values by key without the namespace; structured values already parsed. */
  values: Record<string, unknown>;
  /** Keys whose values are Pulumi secrets. */
  secretKeys: ReadonlySet<string>;
}

export type LoadResult =
  | {
      ok: true;
      config: StackConfig;
      /** Secret keys that are set. */
      secretsSet: Set<string>;
      /** Secrets the configuration needs that are not set (only when not required). */
      missingSecrets: SecretNeed[];
    }
  | { ok: false; issues: ConfigIssue[] }
  /** Only preview unknowns stood in the way: validate again when Pulumi knows them. */
  | { ok: "deferred"; unknownPaths: string[] };

export interface LoadOptions {
  /** Missing secrets are errors (pulumi preview/up) or only listed (offline synth). */
  requireSecrets: boolean;
}

export function validateStack(raw: RawStack, options: LoadOptions): LoadResult {
  const issues: ConfigIssue[] = [];
  const machine: Record<string, unknown> = {};
  for (const key of MACHINE_KEYS) if (key in raw.values) machine[key] = raw.values[key];

  for (const path of findPlainTextSecrets(machine, "")) {
    issues.push({ path, message: `a secret is written into the machine description: remove it and keep it as its own secret key (${setSecretCommand("<key>")}); for a Docker stack variable, map it in secretEnv` });
  }

  const unknownPaths = findUnknowns(machine, "");
  const parsed = stackSchema.safeParse(machine);
  if (!parsed.success) {
    const structural = parsed.error.issues.map(convertIssue);
    const underUnknown = (path: string) => unknownPaths.some((u) => path === u || path.startsWith(`${u}.`) || path.startsWith(`${u}[`));
    issues.push(...structural.filter((i) => !underUnknown(i.path)));
    // Without a fully typed value, the cross-field rules still run over the list
    // entries that are whole, so one broken guest does not hide the other problems.
    issues.push(...crossValidateSalvaged(machine, [...structural.map((i) => i.path), ...unknownPaths]));
    // With only preview unknowns in the way, everything runs again at apply time.
    return issues.length > 0 ? { ok: false, issues } : { ok: "deferred", unknownPaths };
  }
  const config = parsed.data;

  const secretsSet = new Set<string>();
  const allowedSecrets = knownSecretKeys(config);
  for (const [key, value] of Object.entries(raw.values)) {
    if ((MACHINE_KEYS as string[]).includes(key)) continue;
    const isSecret = raw.secretKeys.has(key);
    if (!allowedSecrets.has(key)) {
      issues.push({ path: key, message: `phoenix:${key} is not a Phoenix setting: the settings are ${MACHINE_KEYS.join(", ")} and the secrets ${[...allowedSecrets].join(", ")}` });
    } else if (!isSecret) {
      issues.push({ path: key, message: `phoenix:${key} is stored in plain text: run \`pulumi config rm phoenix:${key}\` then \`${setSecretCommand(key)}\`` });
    } else if (value !== undefined && value !== "") {
      secretsSet.add(key);
    }
  }

  issues.push(...crossValidate(config));

  const missingSecrets = requiredSecrets(config).filter((need) => !secretsSet.has(need.key));
  if (options.requireSecrets) {
    const reported = new Set<string>();
    for (const need of missingSecrets) {
      // One message per secret, except where each use names a different guest.
      const id = need.key === "proxmoxRootPassword" ? `${need.key}@${need.path}` : need.key;
      if (reported.has(id)) continue;
      reported.add(id);
      issues.push({ path: need.path, message: `needs the secret phoenix:${need.key} (${need.why}), which is not set: run \`${setSecretCommand(need.key)}\`` });
    }
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, config, secretsSet, missingSecrets };
}

const LIST_KEYS = ["templates", "guests", "services", "routes"] as const;

/**
 * Cross-field rules over the machine with the broken list entries left out.
 * Paths and messages are mapped back to the entries' original indices.
 */
function crossValidateSalvaged(machine: Record<string, unknown>, brokenPaths: string[]): ConfigIssue[] {
  const broken = new Map<string, Set<number>>(LIST_KEYS.map((k) => [k, new Set<number>()]));
  for (const path of brokenPaths) {
    const m = /^(\w+)\[(\d+)\]/.exec(path);
    if (!m || !broken.has(m[1]!)) return []; // a broken proxmox/host/firewall leaves nothing to check against
    broken.get(m[1]!)!.add(Number(m[2]));
  }
  const salvaged: Record<string, unknown> = { ...machine };
  const originalIndex = new Map<string, number[]>();
  for (const key of LIST_KEYS) {
    const list = machine[key];
    if (!Array.isArray(list)) continue;
    const kept = list.map((_, i) => i).filter((i) => !broken.get(key)!.has(i));
    salvaged[key] = kept.map((i) => list[i]);
    originalIndex.set(key, kept);
  }
  const parsed = stackSchema.safeParse(salvaged);
  if (!parsed.success) return [];
  const idsOf = (key: string, field: string) => [...broken.get(key)!].map((i) => ((machine[key] as Record<string, unknown>[])[i] ?? {})[field]);
  const unchecked: Unchecked = {
    templates: new Set(idsOf("templates", "vmid").filter((v): v is number => typeof v === "number")),
    guests: new Set(idsOf("guests", "vmid").filter((v): v is number => typeof v === "number")),
    services: new Set(idsOf("services", "name").filter((v): v is string => typeof v === "string")),
  };
  const remap = (text: string) => text.replace(/\b(templates|guests|services|routes)\[(\d+)\]/g, (_match, key: string, i: string) => `${key}[${originalIndex.get(key)?.[Number(i)] ?? i}]`);
  return crossValidate(parsed.data, unchecked).map((issue) => ({ path: remap(issue.path), message: remap(issue.message) }));
}

/** Paths whose value is the preview sentinel: Pulumi will know them at apply time. */
function findUnknowns(value: unknown, path: string): string[] {
  if (value === UNKNOWN) return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => findUnknowns(v, `${path}[${i}]`));
  if (value !== null && typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => findUnknowns(v, path ? `${path}.${k}` : k));
  }
  return [];
}

export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === "number" ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), "");
}

function convertIssue(issue: z.core.$ZodIssue): ConfigIssue {
  const path = formatPath(issue.path);
  switch (issue.code) {
    case "unrecognized_keys":
      return {
        path: issue.keys.length === 1 ? formatPath([...issue.path, issue.keys[0]!]) : path,
        message: `unknown setting${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `'${k}'`).join(", ")}: check the spelling against schema/stack.schema.json`,
      };
    case "invalid_union":
      if ("note" in issue && issue.note === "No matching discriminator") {
        return { path, message: `must be one of: ${DISCRIMINATOR_VALUES[String(issue.path.at(-1))] ?? "see schema/stack.schema.json"}` };
      }
      return { path, message: issue.message };
    case "invalid_type":
      return { path, message: issue.input === undefined ? `is required (${issue.expected})` : `must be ${article(issue.expected)}` };
    default:
      return { path, message: issue.message };
  }
}

const DISCRIMINATOR_VALUES: Record<string, string> = {
  kind: "lxc, vm",
  type: roleSchema.options.map((o) => o.shape.type.value).join(", "),
  engine: "vllm, ollama, llamacpp",
};

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `  - ${NAMESPACE}:${i.path}: ${i.message}`);
  return `The stack configuration has ${issues.length} problem${issues.length === 1 ? "" : "s"}; nothing was changed:\n${lines.join("\n")}`;
}

// --- Sources -------------------------------------------------------------------

/** Reads a Pulumi.<stack>.yaml file. Secret values stay encrypted: only their presence is known. */
export function readStackFile(file: string): RawStack {
  const doc = (parseYaml(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
  const values: Record<string, unknown> = {};
  const secretKeys = new Set<string>();
  for (const [fullKey, value] of Object.entries(doc.config ?? {})) {
    const [ns, key] = splitKey(fullKey);
    if (ns !== NAMESPACE) continue;
    if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 1 && "secure" in value) {
      secretKeys.add(key);
      values[key] = "[secret]";
    } else {
      values[key] = value;
    }
  }
  return { values, secretKeys };
}

/** Reads the config the Pulumi engine handed to this program. */
export function readEngineConfig(all: Record<string, string>, isSecret: (fullKey: string) => boolean): RawStack {
  const values: Record<string, unknown> = {};
  const secretKeys = new Set<string>();
  for (const [fullKey, text] of Object.entries(all)) {
    const [ns, key] = splitKey(fullKey);
    if (ns !== NAMESPACE) continue;
    if (isSecret(fullKey)) secretKeys.add(key);
    values[key] = (MACHINE_KEYS as string[]).includes(key) ? parseStructured(text) : text;
  }
  return { values, secretKeys };
}

function parseStructured(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function splitKey(fullKey: string): [string, string] {
  const i = fullKey.indexOf(":");
  return i < 0 ? ["", fullKey] : [fullKey.slice(0, i), fullKey.slice(i + 1).replace(/^config:/, "")];
}

export { WELL_KNOWN_SECRETS };
