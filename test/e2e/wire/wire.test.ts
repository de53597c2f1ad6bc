/**
 * The dev stack over the real wire: the program in `@pulumi/pulumi/cmd/run`, its dynamic
 * providers in `@pulumi/pulumi/cmd/dynamic-provider`, both over gRPC to the engine of ./engine.ts;
 * bridged resources go to the simulator through the same translations as the in-process engine.
 *
 * The dynamic-provider host is a separate process: the lab network's stand-ins reach it through a
 * preload (../lab-reroute.cjs, `w.lab.childEnv`).
 *
 * In `npm test`: the fresh up, the no-op second up, the fault, and the provider that does not
 * serialise (four program runs). The preview and the up that converges after the fault add two
 * more program runs and are left to `PHOENIX_WIRE_E2E=1 npx vitest run test/e2e/wire` for CI's
 * time (./README.md).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../../providers/common";
import { DEV_FILE } from "../../stacks/fixtures";
import { edited, loadProgram } from "../support";
import { TYPES } from "../translations";
import { startWorld, type World } from "../world";
import { WireState, wireApply, type WireResult } from "./engine";
import { ROOT } from "./language-host";

const kinds = (r: WireResult) => [...new Set(r.operations.map((o) => o.kind))].sort();
const failures = (r: WireResult) => r.failures.map((f) => `${f.urn}: ${f.message}`);
const hasUnknown = (v: unknown): boolean => v === UNKNOWN || (Array.isArray(v) ? v.some(hasUnknown) : v !== null && typeof v === "object" && Object.values(v).some(hasUnknown));

const all = process.env.PHOENIX_WIRE_E2E === "1";

/** Each dynamic registration's `__provider` as the engine received it, and its dependencies. */
const providerTexts = (r: WireResult) =>
  Object.fromEntries(r.registrations.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic/")).map((x) => [x.urn, { text: x.object.__provider, deps: x.propertyDependencies.__provider }]));

describe("dev stack through cmd/run and cmd/dynamic-provider over gRPC", () => {
  let w: World;
  const state = new WireState();
  // The ups' program bundle, and the provider texts kept beside it (providers/dynamic-resource.ts),
  // in a folder of their own: the fresh up serializes every provider, the ups after it send the
  // kept texts.
  // A fresh clone has no node_modules/.cache until the first bundle is built.
  const cacheRoot = path.join(ROOT, "node_modules", ".cache");
  fs.mkdirSync(cacheRoot, { recursive: true });
  const bundleDir = fs.mkdtempSync(path.join(cacheRoot, "phoenix-wire-"));
  const keptFile = () => fs.readdirSync(bundleDir).filter((f) => /^providers-[0-9a-f]+\.json$/.test(f)).map((f) => path.join(bundleDir, f));
  let serialized: ReturnType<typeof providerTexts> = {};
  const up = (raw = w.raw) => wireApply({ raw, state, translations: w.translations, dryRun: false, providerEnv: w.lab.childEnv, programEnv: { PHOENIX_PROGRAM_CACHE: bundleDir } });

  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram });
  }, 60_000);
  afterAll(async () => {
    fs.rmSync(bundleDir, { recursive: true, force: true });
    await w?.stop();
  });

  it.runIf(all)("preview changes nothing and sends what providers compute as unknown", async () => {
    const r = await wireApply({ raw: w.raw, state, translations: w.translations, dryRun: true, providerEnv: w.lab.childEnv });
    expect(failures(r), r.program.stderr).toEqual([]);
    expect(r.program.code).toBe(0);
    expect(kinds(r)).toEqual(["preview-create"]);
    expect(w.sim.log.mutating()).toEqual([]);
    // A guest's id is the provider's: whatever is built from it reaches the engine as the SDK's unknown sentinel.
    expect(r.registrations.some((x) => hasUnknown(x.object))).toBe(true);
    // What only the CA's install prints stays unknown to the end: the stack's export is the sentinel itself.
    expect(r.exports?.caRootPem).toBe(UNKNOWN);
    expect(r.exports?.gatewayUrl).toMatch(/^https:\/\//);
    expect(state.resources.size).toBe(0);
  }, 240_000);

  it("a fresh up creates everything; dynamic resources carry the provider text the SDK serialised", async () => {
    expect(keptFile()).toEqual([]);
    const r = await up();
    serialized = providerTexts(r);
    expect(failures(r), r.program.stderr).toEqual([]);
    expect(kinds(r)).toEqual(["create"]);
    const dynamic = [...state.resources.values()].filter((e) => e.type.startsWith("pulumi-nodejs:dynamic/"));
    expect(dynamic.length).toBeGreaterThan(5);
    for (const e of dynamic) expect(typeof e.outputs.__provider).toBe("string");
    expect(w.sim.state.guests.get(103)).toBeDefined();
    // Secrets travel marked: the stack's secrets reached the wire wrapped with the SDK's signature.
    expect(r.registrations.some((x) => JSON.stringify(x.object).includes("1b47061264138c4ac30d75fd1eb44270"))).toBe(true);
    expect(r.exports?.caRootPem).toContain("-----BEGIN CERTIFICATE-----");
  }, 240_000);

  it("a second up changes nothing and makes no mutating call", async () => {
    w.sim.log.clear();
    const [file] = keptFile();
    const before = fs.statSync(file!);
    const r = await up();
    expect(failures(r), r.program.stderr).toEqual([]);
    expect(kinds(r)).toEqual(["same"]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
    // The kept texts: the engine receives every `__provider` byte for byte as the fresh up's
    // serialization sent it (and the host's Check and Diff ran them); the file holds exactly those
    // texts and this run did not write it (a miss would have).
    expect(providerTexts(r)).toEqual(serialized);
    expect(keptFile(), "a source changed between the two ups and the bundle was rebuilt").toEqual([file]);
    const kept = JSON.parse(fs.readFileSync(file!, "utf8")) as { providers: Record<string, string> };
    expect(new Set(Object.values(kept.providers))).toEqual(new Set(Object.values(serialized).map((s) => s.text)));
    const after = fs.statSync(file!);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  }, 240_000);

  const edit = () => edited(w.raw, (v) => ((v.guests as Array<{ vmid: number; memoryMiB: number }>).find((g) => g.vmid === 103)!.memoryMiB = 768));
  const guest = () => [...state.resources.values()].find((e) => e.type === TYPES.container && e.inputs.vmId === 103);

  it("a fault in an update fails the up with the API's message and keeps the old state", async () => {
    w.sim.faults.add({ kind: "http5xx", method: "PUT", path: "/nodes/{node}/lxc/{vmid}/config", count: 100 });
    const failed = await up(edit());
    w.sim.faults.clear();
    expect(failed.program.code).not.toBe(0);
    // The failed registration names the container, with the API's answer (the simulator's 500).
    expect(failed.failures.find((f) => f.urn.startsWith(`urn:pulumi:dev::phoenix::`) && f.urn.includes(TYPES.container))?.message).toMatch(/no quorum/);
    expect(JSON.stringify(guest()?.inputs)).not.toContain("768");
  }, 240_000);

  it.runIf(all)("after the fault, the next up converges", async () => {
    const again = await up(edit());
    expect(failures(again), again.program.stderr).toEqual([]);
    expect(again.operations.filter((o) => o.kind === "update").length).toBeGreaterThan(0);
    expect(JSON.stringify(guest()?.inputs)).toContain("768");
  }, 240_000);

  it("a provider that captures a live object does not serialise, and the up fails before any operation", async () => {
    // test/e2e/wire/fixtures/unserialisable.ts, a program of its own, through tsx's hook (the
    // project's bundle holds index.ts and what it imports only).
    const runtime = { typescript: false, nodeargs: "--require tsx/cjs", programDirectory: ROOT, entryPoint: "test/e2e/wire/fixtures/unserialisable.ts" };
    const r = await wireApply({ raw: { values: {}, secretKeys: new Set() }, state: new WireState(), translations: {}, dryRun: false, runtime });
    expect(r.program.code).not.toBe(0);
    expect(r.operations).toEqual([]);
    expect(r.registrations.map((x) => x.type)).toEqual(["pulumi:pulumi:Stack"]);
    expect(failures(r).join("\n")).toMatch(/error serializing property "__provider"[\s\S]*variable 'socket'/);
  }, 120_000);
});
