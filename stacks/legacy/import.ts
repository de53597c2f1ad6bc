/**
 * The whole import, minus the file system: convert, validate with Phoenix's own
 * rules, restate what fails against the legacy files, and render the stack file
 * (or, when it does not validate, the draft) and the report. No secret found in
 * the legacy files reaches any of them.
 */
import { stringify } from "yaml";
import { NAMESPACE, validateStack } from "../load";
import { setSecretCommand } from "../secrets";
import type { ConfigIssue } from "../validate";
import { convertLegacy, type LegacyInput } from "./convert";
import { LEGACY_FILES } from "./format";
import { formatRef, renderReport, type ImportLog, type ReportEntry } from "./report";

export interface ImportOutcome {
  /** The stack file's text; only when it validates. */
  stackYaml: string | undefined;
  /** The draft's text when the result does not validate: every problem is in the report. */
  draftYaml: string | undefined;
  report: string;
  entries: ReportEntry[];
  /** What stops the import, each error with the legacy field it came from; empty on success. */
  errors: string;
}

const MODELINE = "# yaml-language-server: $schema=./schema/stack.schema.json";
const SECRET_REMOVED = "SECRET-REMOVED-see-import-report";

/** The draft's file name beside Pulumi.<stack>.yaml; `npm run validate -- <stack>.draft` checks it. */
export const draftFileName = (stack: string): string => `Pulumi.${stack}.draft.yaml`;

export function importLegacy(input: LegacyInput, stack: string): ImportOutcome {
  const { values, log, secrets } = convertLegacy(input);
  if (values) removeSecrets(values, secrets, log, "");
  let secretKeys: string[] = [];
  const issues: ConfigIssue[] = [];
  if (values) {
    const result = validateStack({ values, secretKeys: new Set() }, { requireSecrets: false });
    if (result.ok === true) secretKeys = [...new Set(result.missingSecrets.map((need) => need.key))];
    else issues.push(...(result.ok === false ? result.issues : result.unknownPaths.map((path) => ({ path, message: "has no value" }))));
  }
  // The converter already reported some of these with a precise edit (an over-subscribed GPU, a clone to move).
  const explained = new Set(log.entries.filter((e) => e.kind === "problem" && e.severity === "error" && e.target).map((e) => e.target));
  const draft = draftFileName(stack);
  for (const issue of issues.filter((i) => !explained.has(i.path))) {
    const { source, message } = log.legacyIssue(issue);
    const where = source ?? { file: LEGACY_FILES.hypervisor, path: "" };
    log.problem(where, "error", `Phoenix rejects ${NAMESPACE}:${issue.path}: ${message}`, `in ${draft}, edit ${NAMESPACE}:${issue.path} as the message says (or correct ${formatRef(where)} and import again)`, issue.path);
  }
  const errorEntries = log.entries.filter((e) => e.kind === "problem" && e.severity === "error");
  const errors =
    errorEntries.length === 0
      ? ""
      : [`The legacy configuration has ${errorEntries.length} problem${errorEntries.length === 1 ? "" : "s"} to fix:`, ...errorEntries.map((e) => `  - ${formatRef(e.source)}${e.target ? ` (${NAMESPACE}:${e.target})` : ""}: ${e.message}\n    edit: ${e.fix}`)].join("\n");
  const failed = errors !== "";
  const files = (Object.keys(LEGACY_FILES) as (keyof typeof LEGACY_FILES)[]).map((key) => `${LEGACY_FILES[key]}: ${input[key] === undefined ? "missing" : "read"}`);
  const header = [
    failed
      ? values
        ? `**The import is a draft**: \`${draft}\` holds the result, with the ${errorEntries.length} problem${errorEntries.length === 1 ? "" : "s"} listed under Problems (errors). Make each edit, in the draft or in the legacy files, then check it with \`npm run validate -- ${stack}.draft\` and rename it to \`Pulumi.${stack}.yaml\`, or import again.`
        : "**The import failed**: the legacy files could not be read as a whole (see Problems); nothing was written but this report."
      : `Wrote \`Pulumi.${stack}.yaml\`; it validates with Phoenix's schema.`,
    "",
    ...files.map((f) => `- ${f}`),
  ];
  if (secretKeys.length > 0) header.push("", "Secrets to set before `pulumi up`:", "", ...secretKeys.map((key) => `    ${setSecretCommand(key)}`));
  const scrub = (text: string): string => redact(text, secrets);
  const yaml = values ? scrub(renderStack(values, secretKeys, failed ? draft : undefined)) : undefined;
  return {
    stackYaml: failed ? undefined : yaml,
    draftYaml: failed ? yaml : undefined,
    report: scrub(renderReport(log.entries, header)),
    entries: log.entries.map((e) => ({ ...e, message: scrub(e.message), fix: e.fix === undefined ? undefined : scrub(e.fix) })),
    errors: scrub(errors),
  };
}

/**
 * The last guard: a value carrying a secret the converter did not route to a
 * secret key is replaced, and the import fails on it. Every secret path is
 * already in the report, so this only fires on a converter gap.
 */
function removeSecrets(value: Record<string, unknown> | unknown[], secrets: ReadonlySet<string>, log: ImportLog, path: string): void {
  for (const [key, child] of Object.entries(value)) {
    const childPath = Array.isArray(value) ? `${path}[${key}]` : path ? `${path}.${key}` : key;
    if (typeof child === "string" && [...secrets].some((s) => child.includes(s))) {
      (value as Record<string, unknown>)[key] = SECRET_REMOVED;
      const source = log.legacyOf(childPath) ?? { file: LEGACY_FILES.hypervisor, path: "" };
      log.problem(source, "error", `${NAMESPACE}:${childPath} would hold a secret from the legacy files: removed`, "keep the secret out of the stack: set it with `pulumi config set --secret` where Phoenix has a secret key for it, or drop the setting", childPath);
    } else if (child !== null && typeof child === "object") removeSecrets(child as Record<string, unknown>, secrets, log, childPath);
  }
}

/** Every occurrence of a secret string replaced, longest first so a part never uncovers the rest. */
function redact(text: string, secrets: ReadonlySet<string>): string {
  let out = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) out = out.split(secret).join("[secret]");
  return out;
}

function renderStack(values: Record<string, unknown>, secrets: string[], draft: string | undefined): string {
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) config[`${NAMESPACE}:${key}`] = value;
  const head = [
    MODELINE,
    "#",
    "# Imported from the bash orchestrator's JSON by `npm run import-legacy`: read",
    "# import-report.md (placeholders to fill in, derived values to check) before `pulumi up`.",
    ...(draft ? [`# A DRAFT: it does not validate yet. Make the edits under "Problems" in import-report.md,`, `# then rename ${draft} to the stack file.`] : []),
    "# Secrets are not in this file; set them with",
    ...secrets.map((key) => `#   ${setSecretCommand(key)}`),
  ];
  // YAML 1.1 quoting, so "off" or "0000:01:00.0" stay strings for every reader of the file.
  return `${head.join("\n")}\n${stringify({ config }, { lineWidth: 0, version: "1.1" })}`;
}
