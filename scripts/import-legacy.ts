/**
 * `npm run import-legacy -- <dir> --stack <name> [--force]`: reads the bash
 * orchestrator's JSON from <dir>, writes Pulumi.<name>.yaml and import-report.md
 * in the project directory, and prints the report. Exit 0: written and valid;
 * 1: the legacy config has errors (nothing but the report written); 2: usage.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LEGACY_FILES } from "../stacks/legacy/format";
import type { LegacyInput } from "../stacks/legacy/convert";
import { importLegacy } from "../stacks/legacy/import";

const USAGE = "usage: npm run import-legacy -- <legacy config dir> --stack <name> [--force]";

export interface ImportRun {
  code: number;
  stdout: string;
}

interface Args {
  dir: string;
  stack: string;
  force: boolean;
}

function parseArgs(args: string[]): Args | string {
  let dir: string | undefined;
  let stack: string | undefined;
  let force = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--force") force = true;
    else if (arg === "--stack") stack = args[++i];
    else if (arg.startsWith("--stack=")) stack = arg.slice("--stack=".length);
    else if (arg.startsWith("-")) return `unknown option ${arg}`;
    else if (dir === undefined) dir = arg;
    else return `unexpected argument ${arg}`;
  }
  if (!dir || !stack) return "name the legacy config directory and the stack";
  // Pulumi's own rule for stack names, so the file name is one Pulumi will pick up.
  if (!/^[A-Za-z0-9_.-]+$/.test(stack)) return `'${stack}' is not a stack name: letters, digits, '_', '.', '-'`;
  return { dir, stack, force };
}

/** Script names the legacy config may reference: the orchestrator kept them in bin/ beside etc/. */
function listScripts(dir: string): Set<string> | undefined {
  const roots = [path.join(dir, "bin"), path.join(dir, "..", "bin")].filter((d) => fs.existsSync(d) && fs.statSync(d).isDirectory());
  if (roots.length === 0) return undefined;
  const names = new Set<string>();
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(d, entry.name));
      else names.add(entry.name);
    }
  };
  roots.forEach(walk);
  return names;
}

export function runImport(args: string[], cwd: string): ImportRun {
  const parsed = parseArgs(args);
  if (typeof parsed === "string") return { code: 2, stdout: `${parsed}\n${USAGE}` };
  const dir = path.resolve(cwd, parsed.dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) return { code: 2, stdout: `${parsed.dir} is not a directory\n${USAGE}` };
  const stackFile = path.join(cwd, `Pulumi.${parsed.stack}.yaml`);
  if (fs.existsSync(stackFile) && !parsed.force) {
    return { code: 2, stdout: `Pulumi.${parsed.stack}.yaml already exists: choose another stack name, or pass --force to replace it` };
  }

  const input: LegacyInput = { scripts: listScripts(dir) };
  for (const [key, name] of Object.entries(LEGACY_FILES) as [keyof typeof LEGACY_FILES, string][]) {
    const file = path.join(dir, name);
    if (!fs.existsSync(file)) continue;
    try {
      input[key] = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      return { code: 1, stdout: `${name} is not valid JSON: ${(e as Error).message}` };
    }
  }
  if (Object.keys(LEGACY_FILES).every((key) => input[key as keyof typeof LEGACY_FILES] === undefined)) {
    return { code: 2, stdout: `${parsed.dir} holds none of ${Object.values(LEGACY_FILES).join(", ")}` };
  }

  const outcome = importLegacy(input, parsed.stack);
  fs.writeFileSync(path.join(cwd, "import-report.md"), outcome.report);
  if (outcome.stackYaml === undefined) {
    return { code: 1, stdout: `${outcome.report}\n${outcome.errors}\nPulumi.${parsed.stack}.yaml was not written; the report is in import-report.md.` };
  }
  fs.writeFileSync(stackFile, outcome.stackYaml);
  return { code: 0, stdout: `${outcome.report}\nWrote Pulumi.${parsed.stack}.yaml and import-report.md.` };
}

if (require.main === module) {
  const { code, stdout } = runImport(process.argv.slice(2), process.cwd());
  console.log(stdout);
  process.exitCode = code;
}
