/**
 * Loading the stack configuration from where it lives (the Pulumi engine, or a
 * stack file read offline) and validating it once, at the boundary. Everything
 * past this point works with a typed, checked StackConfig.
 */
import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import { engineConfigOverflow, engineConfigOverflowMessage } from "./engine-env";
import { parseFailure, PlacedError } from "./errors";
import { projectFileIssues, type ProjectFileUse } from "./project-files";
import { backupSecretIssues, dockerSecretIssues, pbsKeyIssues, findPlainTextSecrets, knownSecretKeys, MACHINE_KEYS, requiredSecrets, secretShapeProblem, setSecretCommand, WELL_KNOWN_SECRETS, type SecretNeed } from "./secrets";
import { roleSchema, stackSchema, UNKNOWN, type StackConfig } from "./schema";
import { crossValidate, type ConfigIssue, type Unchecked } from "./validate";
import { expandTemplateCopies } from "./cluster";
import { applyPlacement, placementPlan } from "./placement";

export const NAMESPACE = "phoenix";
export { MACHINE_KEYS };

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
      /** Files from the node (CA, host keys) not yet in the project (only with projectRoot, when not required). */
      missingFiles: ProjectFileUse[];
    }
  | { ok: false; issues: ConfigIssue[] }
  /** Only preview unknowns stood in the way: validate again when Pulumi knows them. */
  | { ok: "deferred"; unknownPaths: string[] };

export interface LoadOptions {
  /** Missing secrets (and, with projectRoot, the node's files) are errors (pulumi preview/up) or only listed (offline synth). */
  requireSecrets: boolean;
  /** The project folder: the files the stack names are checked there (inside it, regular files, present). */
  projectRoot?: string;
}

export function validateStack(raw: RawStack, options: LoadOptions): LoadResult {
  const issues: ConfigIssue[] = [];
  const machine: Record<string, unknown> = {};
  for (const key of MACHINE_KEYS) if (key in raw.values) machine[key] = raw.values[key];
  // Every walk below recurses; a value nested past any setting's depth stops here.
  const tooDeep = MACHINE_KEYS.filter((key) => depthOf(machine[key]) > MAX_DEPTH);
  if (tooDeep.length > 0) return { ok: false, issues: tooDeep.map((path) => ({ path, message: `nests deeper than ${MAX_DEPTH} levels, which no Phoenix setting does` })) };

  const overflow = engineConfigOverflow(raw, NAMESPACE);
  if (overflow) issues.push({ path: overflow.largest, message: engineConfigOverflowMessage(overflow) });

  for (const path of findPlainTextSecrets(machine, "")) {
    issues.push({ path, message: `a secret is written into the machine description: remove it and keep it as its own secret key (${setSecretCommand("<key>")}); for a Docker stack variable, map it in secretEnv` });
  }

  const unknownPaths = findUnknowns(machine, "");
  // reportInput: an issue carries the value it is about, to tell a wrong type from a missing setting.
  const parsed = stackSchema.safeParse(machine, { reportInput: true });
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
  // Guests placed by rule or by their GPUs get their node now, so every later rule and tier reads guest.node (stacks/placement.ts).
  const placement = placementPlan(parsed.data);
  issues.push(...placement.issues);
  const config = applyPlacement(parsed.data, placement);

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
      const shape = typeof value === "string" ? secretShapeProblem(key, value) : undefined;
      if (shape) issues.push({ path: key, message: shape });
    }
  }

  issues.push(...crossValidate(config), ...dockerSecretIssues(config), ...backupSecretIssues(config), ...pbsKeyIssues(config, raw.values));
  const files = options.projectRoot === undefined ? { issues: [], missing: [] } : projectFileIssues(config, options.projectRoot, options.requireSecrets);
  issues.push(...files.issues);

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
  // Per-node template copies become templates of their own, and guests clone the one on their node (stacks/cluster.ts).
  return issues.length > 0 ? { ok: false, issues } : { ok: true, config: expandTemplateCopies(config), secretsSet, missingSecrets, missingFiles: files.missing };
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
      // The value itself is never repeated: it may be a secret typed into the wrong field.
      return { path, message: issue.input === undefined ? `is required (${issue.expected})` : `must be ${article(issue.expected)}, but is ${typeOf(issue.input)}` };
    default:
      return { path, message: issue.message };
  }
}

const DISCRIMINATOR_VALUES: Record<string, string> = {
  kind: "lxc, vm",
  type: roleSchema.options.map((o) => o.shape.type.value).join(", "),
  engine: "vllm, ollama, llamacpp",
};

/** The kind of a parsed YAML/JSON value, in the words of the stack file. */
function typeOf(value: unknown): string {
  if (value === null) return "null (empty)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "number") return Number.isInteger(value) ? "a whole number" : "a number with a fraction";
  if (typeof value === "object") return "a mapping";
  return article(typeof value);
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

export function formatIssues(issues: readonly ConfigIssue[]): string {
  const lines = issues.map((i) => `  - ${NAMESPACE}:${i.path}: ${i.message}`);
  return `The stack configuration has ${issues.length} problem${issues.length === 1 ? "" : "s"}; nothing was changed:\n${lines.join("\n")}`;
}

// --- Sources -------------------------------------------------------------------

/**
 * Reads a Pulumi.<stack>.yaml file. Secret values stay encrypted: only their presence is known.
 * A file that cannot be read or parsed is a PlacedError naming it (never quoting it).
 * @param label how to name the file in errors (default: its path)
 */
export function readStackFile(file: string, label = file): RawStack {
  let text: string;
  try {
    if (!fs.statSync(file).isFile()) throw new PlacedError("is not a regular file", { file: label });
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof PlacedError) throw e;
    throw new PlacedError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`, { file: label });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (e) {
    throw new PlacedError(parseFailure(e), { file: label });
  }
  const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isMapping(doc)) throw new PlacedError("must be a mapping with a config: section (a Pulumi stack file)", { file: label });
  const config = doc.config ?? {};
  if (!isMapping(config)) throw new PlacedError("config: must be a mapping of keys to values", { file: label });
  const values: Record<string, unknown> = {};
  const secretKeys = new Set<string>();
  for (const [fullKey, value] of Object.entries(config)) {
    const [ns, key] = splitKey(fullKey);
    if (ns !== NAMESPACE) continue;
    if (isMapping(value) && Object.keys(value).length === 1 && "secure" in value) {
      secretKeys.add(key);
      values[key] = "[secret]";
    } else {
      values[key] = value;
    }
  }
  return { values, secretKeys };
}

/** Far deeper than any setting, and shallow enough for every recursive walk over the values. */
const MAX_DEPTH = 64;

/** How deeply a parsed value nests, counted without recursion. */
function depthOf(value: unknown): number {
  let max = 0;
  const todo: Array<[unknown, number]> = [[value, 1]];
  while (todo.length > 0) {
    const [v, depth] = todo.pop()!;
    if (v === null || typeof v !== "object") continue;
    max = Math.max(max, depth);
    if (max > MAX_DEPTH) return max;
    for (const child of Object.values(v)) todo.push([child, depth + 1]);
  }
  return max;
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
