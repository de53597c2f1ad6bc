/**
 * `npm run bench`: how Phoenix's costs grow, outside `npm test`.
 *  - program evaluation (validation, composition, every renderer) for the prod
 *    stack and for generated stacks of 10, 100 and 500 extra guests;
 *  - an apply of the whole dev stack against the simulator, the sshd rig and
 *    the lab network, with Proxmox operations at their real durations scaled
 *    down 100×: makespan, the critical path of the recorded operations
 *    through the dependency graph, and the sequential sum;
 *  - the calls a second, no-op apply makes.
 * Prints a table and writes bench/results.json.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { offlineOutputs } from "../scripts/offline-outputs";
import { runOffline } from "../scripts/offline-program";
import { OFFLINE_ENV } from "../stacks/engine";
import { readStackFile, validateStack, type RawStack } from "../stacks/load";
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

/** The prod stack with `extra` more containers on a /16, each a clone of the base template with its own address. */
function generated(extra: number): RawStack {
  const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"), "Pulumi.prod.yaml");
  const values = structuredClone(raw.values) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  values.host.address = "10.0.0.13/16";
  for (const g of values.guests) g.network.ip = g.network.ip.replace("/24", "/16");
  for (let i = 0; i < extra; i++) {
    values.guests.push({
      kind: "lxc",
      vmid: 3000 + i,
      name: `bench-${i}`,
      clone: 900,
      storage: "quickOS-lxc-disks",
      network: { ip: `10.0.${10 + Math.floor(i / 250)}.${(i % 250) + 1}/16` },
      firewall: { rules: [{ type: "in", action: "ACCEPT", proto: "tcp", dport: 22, source: "10.0.0.0/24" }] },
    });
  }
  return { values, secretKeys: raw.secretKeys };
}

async function evaluation(extra: number): Promise<{ guests: number; resources: number; ms: number }> {
  const raw = generated(extra);
  const started = performance.now();
  const checked = validateStack(raw, { requireSecrets: false });
  if (checked.ok === false) throw new PlacedError(`the stack with ${extra} generated guests does not validate: ${checked.issues.map((i) => `phoenix:${i.path}: ${i.message}`).join("; ")}`, { file: "Pulumi.prod.yaml" });
  if (checked.ok !== true) throw new PlacedError(`the stack with ${extra} generated guests has unknown values: ${checked.unknownPaths.join(", ")}`, { file: "Pulumi.prod.yaml" });
  const missing = [...new Set(checked.missingSecrets.map((s) => s.key))];
  const run = await runOffline(
    { values: { ...raw.values, ...Object.fromEntries(missing.map((k) => [k, "[secret]"])) }, secretKeys: new Set([...raw.secretKeys, ...missing]) },
    { preview: false, outputsOf: offlineOutputs(checked.config), load: freshProgram },
  );
  return { guests: checked.config.guests.length, resources: run.resources.filter((r) => r.custom).length, ms: Math.round(performance.now() - started) };
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
  process.env[OFFLINE_ENV] = "1";
  const evaluations = [];
  for (const extra of [0, 10, 100, 500]) evaluations.push(await evaluation(extra));
  delete process.env[OFFLINE_ENV];

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

  const results = { date: new Date().toISOString(), evaluations, apply: applyFigures };
  fs.writeFileSync(path.join(__dirname, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  console.log("program evaluation (validation, composition, renderers, offline):");
  console.log("  guests  resources  ms");
  for (const e of evaluations) console.log(`  ${String(e.guests).padStart(6)}  ${String(e.resources).padStart(9)}  ${String(e.ms).padStart(5)}`);
  console.log("apply of the whole dev stack (simulator + sshd rig + lab network, Proxmox latencies ÷100):");
  for (const [k, v] of Object.entries(applyFigures ?? {})) console.log(`  ${k.padEnd(26)} ${v}`);
  console.log("wrote bench/results.json");
}

void runCli("bench", main);
