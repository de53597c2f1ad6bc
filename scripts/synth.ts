/**
 * `npm run synth -- <stack>`: runs the program against Pulumi.<stack>.yaml with
 * no Pulumi CLI, no Proxmox and no secrets, and writes out/<stack>/: plan.md
 * (resources by tier, dependency waves, guests, GPU memory), graph.dot and
 * graph.svg. A configuration problem exits 1 with every error.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { OFFLINE_ENV, SECRET_PLACEHOLDER } from "../stacks/engine";
import { formatIssues, readStackFile, validateStack } from "../stacks/load";
import { offlineOutputs, PLACEHOLDER_CA_CN } from "./offline-outputs";
import { runOffline } from "./offline-program";
import { artifacts, renderDot, renderPlan } from "./synth/plan";

const OFFLINE_NOTE = `Offline stand-ins: secrets read \`[secret]\`; the CA root in the rendered files is a throwaway certificate (CN "${PLACEHOLDER_CA_CN}"); the host driver's GPU report is taken from the configuration. \`pulumi up\` renders the same files with the real values.`;

export interface SynthResult {
  code: number;
  text: string;
  outDir?: string;
}

export async function synth(stack: string | undefined, cwd: string, outRoot = path.join(cwd, "out")): Promise<SynthResult> {
  if (!stack) return { code: 2, text: "usage: npm run synth -- <stack>   (reads Pulumi.<stack>.yaml, writes out/<stack>/)" };
  const file = path.join(cwd, `Pulumi.${stack}.yaml`);
  if (!fs.existsSync(file)) return { code: 2, text: `no stack file Pulumi.${stack}.yaml in ${cwd}` };
  const raw = readStackFile(file);
  const checked = validateStack(raw, { requireSecrets: false });
  if (checked.ok === false) return { code: 1, text: formatIssues(checked.issues) };
  if (checked.ok === "deferred") return { code: 1, text: `values not known: ${checked.unknownPaths.join(", ")}` };
  const missing = [...new Set(checked.missingSecrets.map((s) => s.key))];

  const previous = process.env[OFFLINE_ENV];
  process.env[OFFLINE_ENV] = "1";
  try {
    const values = { ...raw.values, ...Object.fromEntries(missing.map((k) => [k, SECRET_PLACEHOLDER])) };
    // Providers' outputs are stood in for (offline-outputs.ts), so every file renders as it would at apply.
    const { resources } = await runOffline({ values, secretKeys: new Set([...raw.secretKeys, ...missing]) }, { preview: false, outputsOf: offlineOutputs(checked.config), load: () => import("../index") });
    const outDir = path.join(outRoot, stack);
    fs.rmSync(outDir, { recursive: true, force: true });
    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, "plan.md"), renderPlan(stack, checked.config, resources, missing, [OFFLINE_NOTE]));
    const dot = renderDot(checked.config, resources);
    fs.writeFileSync(path.join(outDir, "graph.dot"), dot);
    fs.writeFileSync(path.join(outDir, "graph.svg"), execFileSync("dot", ["-Tsvg"], { input: dot }));
    const files = artifacts(checked.config, resources);
    for (const a of files) {
      const target = path.join(outDir, a.path);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, a.content);
    }
    const custom = resources.filter((r) => r.custom).length;
    return { code: 0, text: `synth ${stack}: ${custom} resources, ${files.length} guest files; wrote ${path.relative(cwd, outDir) || outDir}/{plan.md,graph.dot,graph.svg} and a folder per guest`, outDir };
  } finally {
    if (previous === undefined) delete process.env[OFFLINE_ENV];
    else process.env[OFFLINE_ENV] = previous;
  }
}

if (require.main === module) {
  synth(process.argv[2], process.cwd()).then(
    ({ code, text }) => {
      (code === 0 ? console.log : console.error)(text);
      process.exitCode = code;
    },
    (e: unknown) => {
      console.error(`synth failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 1;
    },
  );
}
