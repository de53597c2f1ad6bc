/**
 * `npm run validate -- <stack>`: checks Pulumi.<stack>.yaml offline, with no
 * Pulumi CLI and no secrets: the configuration, and the files it names in the
 * project folder. Lists the secrets and the node's files still to put in place.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { setSecretCommand } from "../stacks/secrets";
import { runCli } from "./cli";

export function runValidate(stack: string | undefined, cwd: string): { code: number; text: string } {
  if (!stack) return { code: 2, text: "usage: npm run validate -- <stack>   (checks Pulumi.<stack>.yaml)" };
  const name = `Pulumi.${stack}.yaml`;
  const file = path.join(cwd, name);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file ${name}: create it, or name an existing stack` };
  const result = validateStack(readStackFile(file, name), { requireSecrets: false, projectRoot: cwd });
  if (result.ok === false) return { code: 1, text: `${name}: ${formatIssues(result.issues)}` };
  if (result.ok === "deferred") return { code: 1, text: `${name}: values not known: ${result.unknownPaths.join(", ")}` };
  const lines = [`${name} is valid: ${result.config.templates.length} templates, ${result.config.guests.length} guests, ${result.config.routes.length} routes.`];
  const missing = [...new Map(result.missingSecrets.map((s) => [s.key, s])).values()];
  if (missing.length > 0) {
    lines.push("Secrets to set before `pulumi up`:");
    for (const need of missing) lines.push(`  ${setSecretCommand(need.key)}   # ${need.why}`);
  }
  if (result.missingFiles.length > 0) {
    lines.push("Files to put in the project folder before `pulumi up`:");
    for (const need of result.missingFiles) lines.push(`  ${need.file}   # phoenix:${need.path}${need.howTo ? `: ${need.howTo}` : ""}`);
  }
  return { code: 0, text: lines.join("\n") };
}

if (require.main === module) {
  void runCli("validate", ([stack]) => {
    const { code, text } = runValidate(stack, process.cwd());
    (code === 0 ? console.log : console.error)(text);
    return code;
  });
}
