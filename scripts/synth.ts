/**
 * `npm run synth -- <stack>`: runs the program against Pulumi.<stack>.yaml with
 * no Pulumi CLI, no Proxmox and no secrets, and writes out/<stack>/: plan.md
 * (a guest-level overview in Mermaid, resources by tier, dependency waves,
 * guests, GPU memory), graph.dot and graph.svg. A configuration problem exits 1
 * with every error; any other failure is one line naming the stack file (the
 * stack trace with --debug).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { OFFLINE_ENV, SECRET_PLACEHOLDER } from "../stacks/engine";
import { PlacedError, type ErrorPlace } from "../stacks/errors";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { renderTailscalePolicy, TAILSCALE_POLICY_FILE } from "../stacks/tailscale";
import { runCli } from "./cli";
import { offlineOutputs, PLACEHOLDER_CA_CN } from "./offline-outputs";
import { runOffline } from "./offline-program";
import { artifacts, renderDot, renderPlan } from "./synth/plan";

const OFFLINE_NOTE = `Offline stand-ins: secrets read \`[secret]\`; the CA root in the rendered files is a throwaway certificate (CN "${PLACEHOLDER_CA_CN}"); the host driver's GPU report is taken from the configuration. \`pulumi up\` renders the same files with the real values.`;

/**
 * Pulumi's stack names: pulumi/pulumi sdk/go/common/tokens/stack_name.go
 * ParseStackName allows 1–100 characters of `[A-Za-z0-9_.-]`. That still
 * admits `.` and `..`, so the output folder is checked on its own too.
 */
const STACK_NAME_RE = /^[A-Za-z0-9_.-]{1,100}$/;

/** `child` when it lies strictly inside `parent`, else undefined. */
function inside(parent: string, child: string): string | undefined {
  const rel = path.relative(parent, child);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel) ? child : undefined;
}

/** An error of the program run against the stack file: it names that file, and keeps its config path and stack. */
function inStackFile(e: unknown, file: string): Error {
  if (e instanceof PlacedError && e.file !== undefined) return e;
  const placed = new PlacedError(e instanceof Error ? e.message : String(e), { file, configPath: (e as ErrorPlace | undefined)?.configPath });
  if (e instanceof Error && e.stack) placed.stack = e.stack;
  return placed;
}

export interface SynthResult {
  code: number;
  text: string;
  outDir?: string;
}

/** `load` evaluates the program (index.ts); a caller that synthesizes more than once per process passes one that loads it afresh. */
export async function synth(stack: string | undefined, cwd: string, outRoot = path.join(cwd, "out"), load: () => Promise<Record<string, unknown>> = () => import("../index")): Promise<SynthResult> {
  if (!stack) return { code: 2, text: "usage: npm run synth -- <stack>   (reads Pulumi.<stack>.yaml, writes out/<stack>/)" };
  if (!STACK_NAME_RE.test(stack)) return { code: 2, text: "a stack name is 1–100 letters, digits, '_', '.' or '-' (Pulumi's rule): name an existing Pulumi.<stack>.yaml" };
  // The folder is emptied before it is written: it must be one folder right inside out/, never out/ itself or above it.
  const outDir = path.resolve(outRoot, stack);
  if (path.dirname(outDir) !== path.resolve(outRoot)) return { code: 2, text: `stack name ${stack}: its output would not be a folder inside ${path.relative(cwd, outRoot) || outRoot}` };
  const name = `Pulumi.${stack}.yaml`;
  const file = path.join(cwd, name);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file ${name} in ${cwd}` };
  const raw = readStackFile(file, name);
  const checked = validateStack(raw, { requireSecrets: false });
  if (checked.ok === false) return { code: 1, text: `${name}: ${formatIssues(checked.issues)}` };
  if (checked.ok === "deferred") return { code: 1, text: `${name}: values not known: ${checked.unknownPaths.join(", ")}` };
  const missing = [...new Set(checked.missingSecrets.map((s) => s.key))];

  const previous = process.env[OFFLINE_ENV];
  process.env[OFFLINE_ENV] = "1";
  try {
    const values = { ...raw.values, ...Object.fromEntries(missing.map((k) => [k, SECRET_PLACEHOLDER])) };
    // Providers' outputs are stood in for (offline-outputs.ts), so every file renders as it would at apply.
    const { resources } = await runOffline({ values, secretKeys: new Set([...raw.secretKeys, ...missing]) }, { preview: false, outputsOf: offlineOutputs(checked.config), load }).catch((e: unknown) => {
      throw inStackFile(e, name);
    });
    const files = artifacts(checked.config, resources).map((a) => {
      // Paths come from the guests' file lists: none may land outside the stack's folder.
      const target = inside(outDir, path.resolve(outDir, a.path));
      if (!target) throw new PlacedError(`a guest file ${JSON.stringify(a.path)} would be written outside ${path.relative(cwd, outDir) || outDir}`, { file: name });
      return { target, content: a.content };
    });
    fs.rmSync(outDir, { recursive: true, force: true });
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, "plan.md"), renderPlan(stack, checked.config, resources, missing, [OFFLINE_NOTE]));
    const dot = renderDot(checked.config, resources);
    fs.writeFileSync(path.join(outDir, "graph.dot"), dot);
    fs.writeFileSync(path.join(outDir, "graph.svg"), execFileSync("dot", ["-Tsvg"], { input: dot }));
    // The tailnet policy for the user to apply in Tailscale's admin console (stacks/tailscale.ts).
    const policy = renderTailscalePolicy(checked.config);
    if (policy !== undefined) fs.writeFileSync(path.join(outDir, TAILSCALE_POLICY_FILE), policy);
    for (const f of files) {
      fs.mkdirSync(path.dirname(f.target), { recursive: true });
      fs.writeFileSync(f.target, f.content);
    }
    const custom = resources.filter((r) => r.custom).length;
    return { code: 0, text: `synth ${stack}: ${custom} resources, ${files.length} guest files; wrote ${path.relative(cwd, outDir) || outDir}/{plan.md,graph.dot,graph.svg} and a folder per guest`, outDir };
  } finally {
    if (previous === undefined) delete process.env[OFFLINE_ENV];
    else process.env[OFFLINE_ENV] = previous;
  }
}

if (require.main === module) {
  void runCli("synth", async ([stack]) => {
    const { code, text } = await synth(stack, process.cwd());
    (code === 0 ? console.log : console.error)(text);
    return code;
  });
}
