/**
 * Starts the SDK's two Node processes the way the Pulumi CLI does: the program through
 * `@pulumi/pulumi/cmd/run` with the command line and environment of the nodejs language host,
 * and the dynamic-provider host `@pulumi/pulumi/cmd/dynamic-provider`.
 *
 * The language host's behaviour is read from pulumi/pulumi
 * sdk/nodejs/cmd/pulumi-language-nodejs/main.go (the version with the bun runtime, 2026):
 * - `parseOptions`: `typescript` defaults to true; `nodeargs` is one string;
 * - `execRuntime`: argv is `shlex.Split(nodeargs)`, then the run path, then
 *   `constructArguments`; the environment adds `PULUMI_CONFIG` (keys rewritten to
 *   `<namespace>:config:<name>`, values as strings), `PULUMI_CONFIG_SECRET_KEYS` (a JSON list),
 *   and `PULUMI_NODEJS_TYPESCRIPT=true` when `typescript` is on;
 * - `constructArguments`: `--monitor --engine --sync --organization --project --root-directory
 *   --stack --pwd <program directory> [--dry-run] --parallel --tracing <entry point> <args>`.
 * `--sync` (a pipe directory for synchronous invokes) is left out: Phoenix makes no invokes.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as YAML from "yaml";
import { engineConfigJson } from "../../../stacks/engine-env";
import { NAMESPACE, type RawStack } from "../../../stacks/load";

export const ROOT = path.resolve(__dirname, "..", "..", "..");
const RUN_PATH = require.resolve("@pulumi/pulumi/cmd/run", { paths: [ROOT] });
const DYNAMIC_PROVIDER_PATH = require.resolve("@pulumi/pulumi/cmd/dynamic-provider", { paths: [ROOT] });

export interface RuntimeOptions {
  typescript: boolean;
  nodeargs: string;
  /** Pulumi.yaml `main`: the program directory and the entry point in it. */
  programDirectory: string;
  entryPoint: string;
}

/** `runtime.options` and `main` of the project's Pulumi.yaml, with the language host's defaults. */
export function projectRuntime(root = ROOT): RuntimeOptions {
  const project = YAML.parse(fs.readFileSync(path.join(root, "Pulumi.yaml"), "utf8")) as { main?: string; runtime: string | { options?: { typescript?: boolean; nodeargs?: string } } };
  const options = typeof project.runtime === "object" ? (project.runtime.options ?? {}) : {};
  const main = path.join(root, project.main ?? ".");
  const isFile = fs.statSync(main).isFile();
  return {
    typescript: options.typescript ?? true,
    nodeargs: options.nodeargs ?? "",
    programDirectory: isFile ? path.dirname(main) : main,
    entryPoint: isFile ? path.basename(main) : ".",
  };
}

/** shlex.Split for the simple case: words separated by blanks; quoting is refused rather than guessed. */
function splitArgs(s: string): string[] {
  if (/["'\\]/.test(s)) throw new Error(`nodeargs with quotes or escapes are not supported by this harness: ${s}`);
  return s.split(/\s+/).filter((w) => w !== "");
}

export interface ProgramRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunProgramOptions {
  monitor: string;
  engine: string;
  project: string;
  stack: string;
  dryRun: boolean;
  raw: RawStack;
  parallel?: number;
  runtime?: RuntimeOptions;
  /** Added to the inherited environment (a fresh TMPDIR for cold loads, PHOENIX_OFFLINE for the bench). */
  env?: Record<string, string>;
}

/** The `PULUMI_CONFIG` value (stacks/engine-env.ts) and `PULUMI_CONFIG_SECRET_KEYS`. */
export function engineConfigEnv(raw: RawStack, namespace = NAMESPACE): { config: string; secretKeys: string } {
  return { config: engineConfigJson(raw.values, namespace), secretKeys: JSON.stringify([...raw.secretKeys].map((k) => `${namespace}:${k}`)) };
}

function collect(child: ChildProcess, started: number): Promise<ProgramRun> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** Runs the program once, as `pulumi preview` (dryRun) or `pulumi up` would. */
export function runProgram(o: RunProgramOptions): Promise<ProgramRun> {
  const rt = o.runtime ?? projectRuntime();
  const { config, secretKeys } = engineConfigEnv(o.raw);
  const args = [
    ...splitArgs(rt.nodeargs),
    RUN_PATH,
    "--monitor", o.monitor,
    "--engine", o.engine,
    "--project", o.project,
    "--root-directory", ROOT,
    "--stack", o.stack,
    "--pwd", rt.programDirectory,
    ...(o.dryRun ? ["--dry-run"] : []),
    "--parallel", String(o.parallel ?? 2147483647),
    rt.entryPoint,
  ];
  const env: Record<string, string | undefined> = { ...process.env, PULUMI_CONFIG: config, PULUMI_CONFIG_SECRET_KEYS: secretKeys, ...o.env };
  // The harness's own environment (vitest, tsx) must not leak into the program's process.
  delete env.NODE_OPTIONS;
  delete env.PULUMI_NODEJS_TYPESCRIPT;
  if (rt.typescript) env.PULUMI_NODEJS_TYPESCRIPT = "true";
  const started = performance.now();
  // The language host runs node in its own working directory and lets `--pwd` move it; that is the project here.
  return collect(spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] }), started);
}

export interface DynamicProviderHost {
  address: string;
  stderr(): string;
  stop(): void;
}

/**
 * `pulumi-resource-pulumi-nodejs`: the CLI's plugin script runs
 * `node ./node_modules/@pulumi/pulumi/cmd/dynamic-provider` with the engine's address and reads
 * the port it prints (cmd/dynamic-provider/index.js `main`).
 */
export function startDynamicProviderHost(engineAddress: string, extraEnv: Record<string, string> = {}): Promise<DynamicProviderHost> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.NODE_OPTIONS;
  Object.assign(env, extraEnv);
  const child = spawn(process.execPath, [DYNAMIC_PROVIDER_PATH, engineAddress], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    let out = "";
    const onData = (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n")[0]!;
      if (out.includes("\n")) {
        child.stdout.off("data", onData);
        if (!/^\d+$/.test(line.trim())) return reject(new Error(`dynamic-provider printed ${JSON.stringify(line)} instead of its port; stderr: ${err}`));
        resolve({ address: `127.0.0.1:${line.trim()}`, stderr: () => err, stop: () => void child.kill() });
      }
    };
    child.stdout.on("data", onData);
    child.on("exit", (code) => reject(new Error(`dynamic-provider exited (${code}) before printing its port: ${err}`)));
  });
}
