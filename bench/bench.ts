/**
 * `npm run bench`: how Phoenix's costs grow, outside `npm test`.
 *  - the cold load + evaluation of prod under the CLI's program host, side by side, each with an
 *    empty temp folder so no compile cache there helps: the SDK's vendored ts-node with type check
 *    (`typescript: true`), the previous entry (bench/tsx-entry.cjs: tsx's hook), and Phoenix's
 *    entry (pulumi-entry.cjs) once with an empty bundle cache (a rebuild, as after any change to
 *    the sources) and once with the bundle it just built, then once more loading the whole SDK
 *    (PHOENIX_LAZY_SDK=0: no stand-ins from pulumi-preload.cjs); beside them, what importing
 *    the SDK and the two provider packages alone costs;
 *  - load + evaluation (validation, composition, every renderer) through the real program host
 *    (cmd/run over gRPC, bench/program-host.ts) for the prod stack and for generated stacks of
 *    10, 100 and 500 extra guests;
 *  - an apply of the whole dev stack against the simulator, the sshd rig and
 *    the lab network, with Proxmox operations at their real durations scaled
 *    down 100×: makespan, the critical path of the recorded operations
 *    through the dependency graph, and the sequential sum;
 *  - the calls a second, no-op apply makes.
 * Prints a table and writes bench/results.json.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as os from "node:os";
import { validateStack, type RawStack } from "../stacks/load";
import type { StackConfig } from "../stacks/schema";
import { projectRuntime } from "../test/e2e/wire/language-host";
import { withGeneratedGuests } from "./generated-stack";
import { evaluateThroughHost } from "./program-host";
import type { ApplyResult } from "../test/e2e/engine";
import { startWorld } from "../test/e2e/world";
import { runCli, PlacedError } from "../scripts/cli";

const ROOT = path.resolve(__dirname, "..");

/** Evaluates index.ts afresh: the program's modules are dropped from the cache first. */
function freshProgram(): Promise<Record<string, unknown>> {
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(ROOT) && !key.includes(`${path.sep}node_modules${path.sep}`)) delete require.cache[key];
  }
  // require, not import(): only the CommonJS cache can be cleared.
  return Promise.resolve(require("../index") as Record<string, unknown>);
}

/**
 * The stack with `extra` generated guests, validated, with placeholders for the secrets it lacks;
 * or, past the size the CLI can hand a program (stacks/engine-env.ts), the validation's message.
 */
function prepared(extra: number): { raw: RawStack; config: StackConfig } | { guests: number; error: string } {
  const raw = withGeneratedGuests(extra);
  const checked = validateStack(raw, { requireSecrets: false });
  const overflow = checked.ok === false ? checked.issues.find((i) => i.message.includes("PULUMI_CONFIG")) : undefined;
  if (overflow) return { guests: (raw.values.guests as unknown[]).length, error: `phoenix:${overflow.path}: ${overflow.message}` };
  if (checked.ok === false) throw new PlacedError(`the stack with ${extra} generated guests does not validate: ${checked.issues.map((i) => `phoenix:${i.path}: ${i.message}`).join("; ")}`, { file: "Pulumi.prod.yaml" });
  if (checked.ok !== true) throw new PlacedError(`the stack with ${extra} generated guests has unknown values: ${checked.unknownPaths.join(", ")}`, { file: "Pulumi.prod.yaml" });
  const missing = [...new Set(checked.missingSecrets.map((s) => s.key))];
  const full: RawStack = { values: { ...raw.values, ...Object.fromEntries(missing.map((k) => [k, "[secret]"])) }, secretKeys: new Set([...raw.secretKeys, ...missing]) };
  return { raw: full, config: checked.config };
}

/** Runs `f` with a fresh, empty temp folder as TMPDIR (where ts-node and tsx keep their compile caches). */
async function cold<T>(f: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-cold-"));
  try {
    return await f({ TMPDIR: tmp });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** A stack past the size the CLI can hand a program cannot run under the CLI at all, and is recorded as such. */
async function evaluation(extra: number): Promise<{ guests: number; resources?: number; ms?: number; error?: string }> {
  const stack = prepared(extra);
  if ("error" in stack) return stack;
  const { raw, config } = stack;
  const run = await evaluateThroughHost(raw, config);
  return { guests: config.guests.length, resources: run.resources, ms: run.ms };
}

/** Wall time of a node process that only imports the SDK and the two provider packages. */
function sdkImportMs(): number {
  const started = performance.now();
  execFileSync(process.execPath, ["-e", 'require("@pulumi/pulumi"); require("@muhlba91/pulumi-proxmoxve"); require("@pulumi/command")'], { cwd: ROOT, stdio: "ignore" });
  return Math.round(performance.now() - started);
}

/**
 * Cold load + evaluation of prod: the SDK's ts-node path, the previous entry and Phoenix's own
 * (Pulumi.yaml), in one run. The bundle goes to a fresh cache folder (below node_modules, where
 * its `require`s resolve), first empty, then holding what that first run built.
 */
async function coldLoads(): Promise<Record<string, number>> {
  const stack = prepared(0);
  if ("error" in stack) throw new PlacedError(stack.error, { file: "Pulumi.prod.yaml" });
  const { raw, config } = stack;
  const project = projectRuntime();
  const tsNode = { ...project, typescript: true, nodeargs: "", entryPoint: "index.ts" };
  const tsx = { ...project, nodeargs: "", programDirectory: ROOT, entryPoint: "bench/tsx-entry.cjs" };
  const cacheRoot = path.join(ROOT, "node_modules", ".cache");
  fs.mkdirSync(cacheRoot, { recursive: true });
  const bundleCache = fs.mkdtempSync(path.join(cacheRoot, "phoenix-bench-"));
  const timed = (runtime: typeof project, extra: Record<string, string> = {}) => cold(async (env) => (await evaluateThroughHost(raw, config, { runtime, env: { ...env, ...extra } })).ms);
  try {
    return {
      sdkImportMs: sdkImportMs(),
      tsNodeTypeCheckMs: await timed(tsNode),
      tsxEntryMs: await timed(tsx),
      bundleRebuildMs: await timed(project, { PHOENIX_PROGRAM_CACHE: bundleCache }),
      bundleCachedMs: await timed(project, { PHOENIX_PROGRAM_CACHE: bundleCache }),
      // The same with the whole SDK loaded at once, as before pulumi-preload.cjs made parts of it lazy.
      bundleCachedWholeSdkMs: await timed(project, { PHOENIX_PROGRAM_CACHE: bundleCache, PHOENIX_LAZY_SDK: "0" }),
    };
  } finally {
    fs.rmSync(bundleCache, { recursive: true, force: true });
  }
}

/**
 * Proxmox operations at their real durations scaled down 100× (create from an OS template 24 s,
 * linked clone 2 s, start 5 s, template conversion 3 s, firewall and config updates 0.3 s), added
 * to the simulator's answer. Scripts in guests and on the node take what their stand-ins take.
 */
const OPERATION_LATENCIES: Array<{ method: string; path: RegExp; latencyMs: number }> = [
  { method: "POST", path: /^\/nodes\/[^/]+\/(lxc|qemu)$/, latencyMs: 240 },
  { method: "POST", path: /\/(lxc|qemu)\/\d+\/clone$/, latencyMs: 20 },
  { method: "POST", path: /\/(lxc|qemu)\/\d+\/status\/start$/, latencyMs: 50 },
  { method: "POST", path: /\/(lxc|qemu)\/\d+\/template$/, latencyMs: 30 },
  ...["POST", "PUT", "DELETE"].map((method) => ({ method, path: /\/firewall(\/|$)|\/(lxc|qemu)\/\d+\/config$/, latencyMs: 3 })),
];

/** Longest path through the graph, each operation weighted by its recorded duration. */
function criticalPath(r: ApplyResult): number {
  const duration = new Map(r.operations.map((o) => [o.key, o.end - o.start]));
  const memo = new Map<string, number>();
  const longest = (key: string): number => {
    const known = memo.get(key);
    if (known !== undefined) return known;
    const deps = r.graph.get(key) ?? [];
    const value = (duration.get(key) ?? 0) + Math.max(0, ...deps.map(longest));
    memo.set(key, value);
    return value;
  };
  return Math.max(0, ...r.operations.map((o) => longest(o.key)));
}

async function main(): Promise<void> {
  const loadAverage = os.loadavg()[0]!;
  const coldLoad = await coldLoads();
  console.log("cold load + evaluation of prod through cmd/run, empty temp folder:");
  for (const [k, v] of Object.entries(coldLoad)) console.log(`  ${k.padEnd(26)} ${v}`);
  const evaluations = [];
  for (const extra of [0, 10, 100, 400, 500]) evaluations.push(await evaluation(extra));
  console.log("load + evaluation through cmd/run (program host over gRPC, warm compile cache):");
  console.log("  guests  resources  ms");
  for (const e of evaluations) console.log(`  ${String(e.guests).padStart(6)}  ${String(e.resources ?? "-").padStart(9)}  ${String(e.ms ?? e.error).padStart(5)}`);
  if (process.argv.includes("--evaluation-only")) {
    fs.writeFileSync(path.join(__dirname, "results.json"), `${JSON.stringify({ date: new Date().toISOString(), loadAverage, coldLoad, evaluations }, null, 2)}\n`);
    console.log("wrote bench/results.json");
    return;
  }

  const world = await startWorld({ stackFile: path.join(ROOT, "Pulumi.dev.yaml"), loadProgram: freshProgram });
  for (const rule of OPERATION_LATENCIES) world.sim.faults.add({ kind: "latency", ...rule });
  let applyFigures;
  try {
    const first = await world.apply();
    if (first.failures.length > 0) throw new Error(`the first apply failed: ${first.failures.map((f) => f.key).join(", ")}`);
    const sequential = first.operations.reduce((sum, o) => sum + (o.end - o.start), 0);
    const critical = criticalPath(first);
    world.sim.log.clear();
    const second = await world.apply();
    applyFigures = {
      operations: first.operations.length,
      makespanMs: Math.round(first.makespan),
      criticalPathMs: Math.round(critical),
      sequentialMs: Math.round(sequential),
      makespanOverCriticalPath: Math.round((first.makespan / critical) * 100) / 100,
      sequentialOverMakespan: Math.round((sequential / first.makespan) * 100) / 100,
      noOpMutatingCalls: world.sim.log.mutating().length,
      noOpTotalCalls: world.sim.log.entries.length,
      noOpChanges: second.operations.filter((o) => o.kind !== "same").length,
    };
  } finally {
    await world.stop();
  }

  const results = { date: new Date().toISOString(), loadAverage, coldLoad, evaluations, apply: applyFigures };
  fs.writeFileSync(path.join(__dirname, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log("apply of the whole dev stack (simulator + sshd rig + lab network, Proxmox latencies ÷100):");
  for (const [k, v] of Object.entries(applyFigures ?? {})) console.log(`  ${k.padEnd(26)} ${v}`);
  console.log("wrote bench/results.json");
}

void runCli("bench", main);
