/**
 * The GitHub workflows in .github/workflows cannot run here, so they are judged offline:
 * - by GitHub's workflow parser (@actions/workflow-parser, the schema of GitHub's language
 *   services): keys, value types, allowed expression contexts, and, with the called file
 *   loaded, the inputs and secrets each call of a reusable workflow passes;
 * - the `with:` of every action step against the action.yml of the exact commit it is pinned
 *   to (test/reference/actions, copied from upstream, see its NOTE.md);
 * - every `run:` script by shellcheck, the way the runner runs it (bash -e -o pipefail);
 * - and the choices README.md ("In pull requests") describes: least-privilege tokens, no
 *   pull-request code on the self-hosted runner from forks, one run per stack at a time,
 *   the project's Node version and Pulumi release.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { convertWorkflowTemplate, NoOperationTraceWriter, parseWorkflow } from "@actions/workflow-parser";
import { convertActionTemplate, parseAction } from "@actions/workflow-parser/actions/index";
import type { FileProvider } from "@actions/workflow-parser/workflows/file-provider";
import { ROOT, shellcheck } from "../support";

const WORKFLOWS = path.join(ROOT, ".github", "workflows");
const ACTIONS = path.join(ROOT, "test", "reference", "actions");
const files = fs.readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).sort();
const read = (file: string) => fs.readFileSync(path.join(WORKFLOWS, file), "utf8");
/** A workflow with one whole line replaced; fails unless exactly one line matches. */
function withLine(file: string, line: RegExp, replacement: string): string {
  const lines = read(file).split("\n");
  const at = lines.flatMap((l, i) => (line.test(l) ? [i] : []));
  if (at.length !== 1) throw new Error(`${file}: ${at.length} lines match ${line}`);
  lines[at[0] as number] = replacement;
  return lines.join("\n");
}
const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
  engines?: { node?: string };
  dependencies: Record<string, string>;
};

/** Reusable workflows the calls name: the repo's own files, `overrides` first (by repo path). */
function localFiles(overrides: Record<string, string>): FileProvider {
  return {
    async getFileContent(ref) {
      if ("repository" in ref) throw new Error(`remote workflow ${ref.owner}/${ref.repository}/${ref.path}: not available offline`);
      return { name: ref.path, content: overrides[ref.path] ?? fs.readFileSync(path.join(ROOT, ref.path), "utf8") };
    },
  };
}

/** Every error GitHub's parser reports for a workflow, reusable workflows it calls included. */
async function workflowErrors(name: string, content: string, overrides: Record<string, string> = {}): Promise<string[]> {
  const parsed = parseWorkflow({ name, content }, new NoOperationTraceWriter());
  const parseErrors = parsed.context.errors.getErrors().map((e) => e.message);
  if (parsed.value === undefined) return parseErrors.length > 0 ? parseErrors : [`${name}: nothing parsed`];
  const template = await convertWorkflowTemplate(parsed.context, parsed.value, localFiles(overrides), { fetchReusableWorkflowDepth: 1 });
  return (template.errors ?? []).map((e) => e.Message);
}

type Step = { uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> };
type Job = {
  "runs-on"?: unknown;
  uses?: string;
  if?: string;
  needs?: string | string[];
  permissions?: Record<string, string>;
  concurrency?: { group?: string; "cancel-in-progress"?: boolean; queue?: string };
  strategy?: { matrix?: Record<string, unknown> };
  with?: Record<string, unknown>;
  steps?: Step[];
};
type Workflow = { on: Record<string, unknown>; permissions?: Record<string, string>; jobs: Record<string, Job> };
const workflow = (file: string) => parseYaml(read(file)) as Workflow;
const steps = (file: string) => Object.values(workflow(file).jobs).flatMap((job) => job.steps ?? []);

/** The action.yml an action step is pinned to: `owner/repo@<commit>` with a copy in test/reference/actions. */
function pinnedManifest(uses: string): { inputs: { id: string; required: boolean }[] } | string {
  const m = /^([\w.-]+)\/([\w.-]+)@([0-9a-f]{40})$/.exec(uses);
  if (!m) return `${uses}: not pinned to a full commit SHA`;
  const file = path.join(ACTIONS, `${m[1]}+${m[2]}@${m[3]}.yml`);
  if (!fs.existsSync(file)) return `${uses}: no copy of its action.yml in test/reference/actions`;
  const parsed = parseAction({ name: path.basename(file), content: fs.readFileSync(file, "utf8") }, new NoOperationTraceWriter());
  if (parsed.value === undefined) return `${file}: does not parse`;
  const action = convertActionTemplate(parsed.context, parsed.value);
  return { inputs: (action.inputs ?? []).map((i) => ({ id: i.id, required: i.required === true && i.default === undefined })) };
}

/** What is wrong with an action step's pin and its `with:`; empty when nothing is. */
function actionStepProblems(step: Step): string[] {
  const manifest = pinnedManifest(step.uses ?? "");
  if (typeof manifest === "string") return [manifest];
  const known = new Set(manifest.inputs.map((i) => i.id));
  const given = Object.keys(step.with ?? {});
  return [
    ...given.filter((k) => !known.has(k)).map((k) => `${step.uses}: no input ${k}`),
    ...manifest.inputs.filter((i) => i.required && !given.includes(i.id)).map((i) => `${step.uses}: required input ${i.id} missing`),
  ];
}

describe("GitHub's workflow parser", () => {
  it("finds the three workflows", () => {
    expect(files).toEqual(["drift.yml", "preview.yml", "pull-request.yml"]);
  });

  it.each(files)("%s has no errors, with the workflows it calls", async (file) => {
    expect(await workflowErrors(file, read(file))).toEqual([]);
  });

  it("reports a job without runs-on, an unknown permission level and a value outside the allowed ones", async () => {
    const broken = [
      "on: pull_request",
      "permissions:",
      "  pull-requests: wirte",
      "jobs:",
      "  test:",
      "    steps:",
      "      - run: true",
    ].join("\n");
    const errors = await workflowErrors("broken.yml", broken);
    expect(errors.some((e) => /runs-on/.test(e)), errors.join("\n")).toBe(true);
    expect(errors.some((e) => /wirte/.test(e)), errors.join("\n")).toBe(true);
    const badQueue = await workflowErrors("preview.yml", withLine("preview.yml", /^ {6}queue: max$/, "      queue: maximum"));
    expect(badQueue.some((e) => /Unexpected value 'maximum'/.test(e)), badQueue.join("\n")).toBe(true);
  });

  it("reports a context used where GitHub does not allow it", async () => {
    const content = withLine("preview.yml", /^ {6}group: pulumi-/, "      group: pulumi-${{ secrets.PULUMI_ACCESS_TOKEN }}");
    const errors = await workflowErrors("preview.yml", content);
    expect(errors.some((e) => /Unrecognized named-value: 'secrets'/.test(e)), errors.join("\n")).toBe(true);
  });

  it("checks each call against the inputs and secrets of the workflow it calls", async () => {
    const renamed = withLine("preview.yml", /^ {6}comment-on-pr:$/, "      comment-on-pull-request:");
    const errors = await workflowErrors("pull-request.yml", read("pull-request.yml"), { ".github/workflows/preview.yml": renamed });
    expect(errors.some((e) => /comment-on-pr is not defined in the referenced workflow/.test(e)), errors.join("\n")).toBe(true);
    const noSecrets = withLine("preview.yml", /^ {6}PULUMI_ACCESS_TOKEN:$/, "      PULUMI_TOKEN:");
    const secretErrors = await workflowErrors("drift.yml", read("drift.yml"), { ".github/workflows/preview.yml": noSecrets });
    expect(secretErrors.some((e) => /PULUMI_ACCESS_TOKEN is not defined/.test(e)), secretErrors.join("\n")).toBe(true);
  });
});

describe("actions", () => {
  const actionSteps = files.flatMap((file) => steps(file).filter((s) => s.uses).map((s) => [file, s] as const));

  it("are pinned to a commit whose action.yml is kept, and given only its inputs", () => {
    expect(actionSteps.length).toBeGreaterThanOrEqual(5);
    expect(actionSteps.flatMap(([file, step]) => actionStepProblems(step).map((p) => `${file}: ${p}`))).toEqual([]);
  });

  it("a tag, an unknown input and a missing copy are each reported", () => {
    const pulumi = steps("preview.yml").find((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(pulumi).toBeDefined();
    expect(actionStepProblems({ ...pulumi, uses: "pulumi/actions@v7" })).toEqual(["pulumi/actions@v7: not pinned to a full commit SHA"]);
    expect(actionStepProblems({ ...pulumi, with: { ...pulumi?.with, "comment-on-pull-request": true } })).toEqual([
      `${pulumi?.uses}: no input comment-on-pull-request`,
    ]);
    expect(actionStepProblems({ uses: `pulumi/actions@${"0".repeat(40)}` })).toEqual([
      `pulumi/actions@${"0".repeat(40)}: no copy of its action.yml in test/reference/actions`,
    ]);
  });

  it("set up the Node version package.json declares", () => {
    expect(packageJson.engines?.node).toBeTruthy();
    const setupNode = actionSteps.filter(([, s]) => s.uses?.startsWith("actions/setup-node@"));
    expect(setupNode.length).toBe(2);
    for (const [, step] of setupNode) expect(step.with).toEqual({ "node-version-file": "package.json" });
  });

  it("run the Pulumi CLI of the SDK's release, and preview with --refresh", () => {
    const [pulumi, ...others] = actionSteps.filter(([, s]) => s.uses?.startsWith("pulumi/actions@"));
    expect(others).toEqual([]);
    expect(pulumi?.[1].with).toMatchObject({
      command: "preview",
      "pulumi-version": packageJson.dependencies["@pulumi/pulumi"],
      refresh: true,
      "expect-no-changes": "${{ inputs.expect-no-changes }}",
      "comment-on-pr": "${{ inputs.comment-on-pr }}",
    });
  });
});

describe("run steps", () => {
  const runSteps = files.flatMap((file) => steps(file).filter((s) => s.run !== undefined).map((s) => [file, s.run ?? ""] as const));

  it("take no ${{ }} expressions: values reach scripts through env, never spliced into the script", () => {
    expect(runSteps.length).toBeGreaterThanOrEqual(3);
    expect(runSteps.filter(([, run]) => run.includes("${{"))).toEqual([]);
  });

  it.each(runSteps)("%s: `%s` is shellcheck-clean as the runner runs it", (file, run) => {
    // The runner's bash shell: `bash --noprofile --norc -eo pipefail {0}`.
    shellcheck(`${file}: ${run}`, `#!/bin/bash\nset -eo pipefail\n${run}\n`);
  });

  it("the test job runs the project's CI entry point", () => {
    expect(fs.existsSync(path.join(ROOT, ".ci", "run"))).toBe(true);
    expect(workflow("pull-request.yml").jobs.test?.steps?.map((s) => s.run).filter(Boolean)).toEqual(["bash .ci/run"]);
  });
});

describe("the design", () => {
  const jobs = files.flatMap((file) => Object.entries(workflow(file).jobs).map(([id, job]) => [file, id, job] as const));

  it("grants write access once: the pull request's preview may comment", () => {
    const grants = [
      ...files.flatMap((file) => Object.entries(workflow(file).permissions ?? {}).map(([scope, level]) => `${file} ${scope}: ${level}`)),
      ...jobs.flatMap(([file, id, job]) => Object.entries(job.permissions ?? {}).map(([scope, level]) => `${file} ${id} ${scope}: ${level}`)),
    ];
    expect(grants.filter((g) => !g.endsWith(": read"))).toEqual(["pull-request.yml preview pull-requests: write"]);
    // Every workflow that starts runs limits its token; the called one inherits its caller's.
    for (const file of ["pull-request.yml", "drift.yml"]) expect(workflow(file).permissions).toEqual({ contents: "read" });
    expect(workflow("preview.yml").permissions).toBeUndefined();
    for (const [file, id, job] of jobs.filter(([, , j]) => j.uses)) expect(job.permissions, `${file} ${id}`).toBeDefined();
  });

  it("runs pull-request code on the self-hosted runner only after the tests, and never from a fork", () => {
    const all = files.map((file) => workflow(file));
    expect(all.filter((w) => "pull_request_target" in w.on || "workflow_run" in w.on)).toEqual([]);
    const preview = workflow("pull-request.yml").jobs.preview;
    expect(preview?.needs).toBe("test");
    expect(preview?.if).toBe("github.event.pull_request.head.repo.full_name == github.repository");
    expect(preview?.uses).toBe("./.github/workflows/preview.yml");
    expect(preview?.with).toMatchObject({ "comment-on-pr": true });
    const selfHosted = jobs.filter(([, , job]) => JSON.stringify(job["runs-on"] ?? "").includes("self-hosted"));
    expect(selfHosted.map(([file, id]) => `${file} ${id}`)).toEqual(["preview.yml preview"]);
  });

  it("previews one stack at a time, queueing instead of cancelling", () => {
    const job = workflow("preview.yml").jobs.preview;
    expect(job?.["runs-on"]).toEqual(["self-hosted", "phoenix"]);
    expect(job?.concurrency).toEqual({ group: "pulumi-${{ inputs.stack }}", "cancel-in-progress": false, queue: "max" });
    // A workflow-level group with cancel-in-progress would cancel running previews too.
    expect(files.filter((file) => "concurrency" in workflow(file))).toEqual([]);
  });

  it("checks for drift on a schedule and on demand, failing on any change", () => {
    const drift = workflow("drift.yml");
    expect(Object.keys(drift.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect(drift.jobs.drift?.uses).toBe("./.github/workflows/preview.yml");
    expect(drift.jobs.drift?.with).toMatchObject({ "expect-no-changes": true });
  });

  it("previews stacks that exist by default, prod only", () => {
    for (const [file, id, job] of jobs.filter(([, , j]) => j.uses)) {
      const expr = String(job.strategy?.matrix?.stack ?? "");
      const fallback = /\|\| '(\[.*\])'/.exec(expr)?.[1];
      expect(fallback, `${file} ${id}: ${expr}`).toBeDefined();
      const stacks = JSON.parse(fallback ?? "[]") as string[];
      expect(stacks).toEqual(["prod"]);
      for (const stack of stacks) expect(fs.existsSync(path.join(ROOT, `Pulumi.${stack}.yaml`))).toBe(true);
    }
  });

  it("puts the node's CA where the prod stack's proxmox.tls.caFile looks", () => {
    const ca = steps("preview.yml").find((s) => s.env?.PVE_CA_FILE);
    const dest = /install -m 0644 "\$PVE_CA_FILE" (\S+)$/.exec(ca?.run ?? "")?.[1];
    const prod = parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8")) as { config: Record<string, { tls?: { caFile?: string } }> };
    expect(dest).toBeDefined();
    expect(dest).toBe(prod.config["phoenix:proxmox"]?.tls?.caFile);
  });
});
