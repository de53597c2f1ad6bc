/**
 * The whole import, minus the file system: convert, validate with Phoenix's own
 * rules, restate what fails against the legacy files, and render the stack file
 * and the report.
 */
import { stringify } from "yaml";
import { formatIssues, NAMESPACE, validateStack } from "../load";
import { setSecretCommand } from "../secrets";
import type { ConfigIssue } from "../validate";
import { convertLegacy, type LegacyInput } from "./convert";
import { LEGACY_FILES } from "./format";
import { formatRef, renderReport, type ReportEntry } from "./report";

export interface ImportOutcome {
  /** The stack file's text; only when it validates. */
  stackYaml: string | undefined;
  report: string;
  entries: ReportEntry[];
  /** What stopped the import, each error with the legacy field it came from; empty on success. */
  errors: string;
}

const MODELINE = "# yaml-language-server: $schema=./schema/stack.schema.json";

export function importLegacy(input: LegacyInput, stack: string): ImportOutcome {
  const { values, log } = convertLegacy(input);
  let errors = "";
  let secrets: string[] = [];
  if (values) {
    const result = validateStack({ values, secretKeys: new Set() }, { requireSecrets: false });
    if (result.ok === true) secrets = [...new Set(result.missingSecrets.map((need) => need.key))];
    else {
      const issues: ConfigIssue[] = result.ok === false ? result.issues : result.unknownPaths.map((path) => ({ path, message: "has no value" }));
      const traced = issues.map((issue) => {
        const { source, message } = log.legacyIssue(issue);
        const where = source ?? { file: LEGACY_FILES.hypervisor, path: "" };
        log.problem(where, "error", `Phoenix rejects ${NAMESPACE}:${issue.path}: ${message}`, "correct the legacy field and import again", issue.path);
        return { path: issue.path, message: `${message} [from ${formatRef(where)}]` };
      });
      errors = formatIssues(traced);
    }
  }
  const fatal = log.entries.filter((e) => e.kind === "problem" && e.severity === "error" && e.target === undefined);
  if (fatal.length > 0) {
    errors = [`The legacy configuration has ${fatal.length} error${fatal.length === 1 ? "" : "s"}:`, ...fatal.map((e) => `  - ${formatRef(e.source)}: ${e.message}`), errors].filter(Boolean).join("\n");
  }
  const failed = errors !== "";
  const files = (Object.keys(LEGACY_FILES) as (keyof typeof LEGACY_FILES)[]).map((key) => `${LEGACY_FILES[key]}: ${input[key] === undefined ? "missing" : "read"}`);
  const header = [
    failed ? `**The import failed**: Pulumi.${stack}.yaml was not written. Fix the errors below in the legacy files and run it again.` : `Wrote \`Pulumi.${stack}.yaml\`; it validates with Phoenix's schema.`,
    "",
    ...files.map((f) => `- ${f}`),
  ];
  if (secrets.length > 0) header.push("", "Secrets to set before `pulumi up`:", "", ...secrets.map((key) => `    ${setSecretCommand(key)}`));
  return {
    stackYaml: failed || !values ? undefined : renderStack(values, secrets),
    report: renderReport(log.entries, header),
    entries: log.entries,
    errors,
  };
}

function renderStack(values: Record<string, unknown>, secrets: string[]): string {
  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) config[`${NAMESPACE}:${key}`] = value;
  const head = [
    MODELINE,
    "#",
    "# Imported from the bash orchestrator's JSON by `npm run import-legacy`: read",
    "# import-report.md (placeholders to fill in, derived values to check) before `pulumi up`.",
    "# Secrets are not in this file; set them with",
    ...secrets.map((key) => `#   ${setSecretCommand(key)}`),
  ];
  // YAML 1.1 quoting, so "off" or "0000:01:00.0" stay strings for every reader of the file.
  return `${head.join("\n")}\n${stringify({ config }, { lineWidth: 0, version: "1.1" })}`;
}
