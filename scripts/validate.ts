/**
 * `npm run validate -- <stack>`: checks Pulumi.<stack>.yaml offline, with no
 * Pulumi CLI and no secrets, and lists the secrets still to set.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { setSecretCommand } from "../stacks/secrets";

export function runValidate(stack: string | undefined, cwd: string): { code: number; text: string } {
  if (!stack) return { code: 2, text: "usage: npm run validate -- <stack>   (checks Pulumi.<stack>.yaml)" };
  const file = path.join(cwd, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file ${path.relative(cwd, file) || file}: create it, or name an existing stack` };
  const result = validateStack(readStackFile(file), { requireSecrets: false });
  if (result.ok === false) return { code: 1, text: formatIssues(result.issues) };
  if (result.ok === "deferred") return { code: 1, text: `values not known: ${result.unknownPaths.join(", ")}` };
  const lines = [`Pulumi.${stack}.yaml is valid: ${result.config.templates.length} templates, ${result.config.guests.length} guests, ${result.config.routes.length} routes.`];
  const missing = [...new Map(result.missingSecrets.map((s) => [s.key, s])).values()];
  if (missing.length > 0) {
    lines.push("Secrets to set before `pulumi up`:");
    for (const need of missing) lines.push(`  ${setSecretCommand(need.key)}   # ${need.why}`);
  }
  return { code: 0, text: lines.join("\n") };
}

if (require.main === module) {
  const { code, text } = runValidate(process.argv[2], process.cwd());
  (code === 0 ? console.log : console.error)(text);
  process.exitCode = code;
}
