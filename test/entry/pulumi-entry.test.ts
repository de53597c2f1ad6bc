/**
 * pulumi-entry.cjs in a project of its own: the program comes out of the bundle, a file keeps its
 * own `__dirname`, an unchanged project reuses the cached bundle, and a change to any file the
 * bundle was built from rebuilds it. The bundle cache is the project's node_modules/.cache/phoenix,
 * so the project gets a node_modules of its own (links to the packages the entry requires).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..", "..");

describe("pulumi-entry.cjs", () => {
  let dir: string;
  const cache = () => path.join(dir, "node_modules", ".cache", "phoenix");
  const bundles = () => fs.readdirSync(cache()).filter((f) => /^program-[0-9a-f]+\.cjs$/.test(f));
  /** What index.ts exports, as cmd/run awaits it. */
  const run = (): Record<string, unknown> =>
    JSON.parse(execFileSync(process.execPath, ["-e", "require('./pulumi-entry.cjs').then((m) => process.stdout.write(JSON.stringify(m)))"], { cwd: dir, encoding: "utf8", env: { ...process.env, NODE_OPTIONS: "", PHOENIX_PROGRAM_CACHE: "" } })) as Record<string, unknown>;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-entry-"));
    for (const f of ["pulumi-entry.cjs", "pulumi-preload.cjs"]) fs.copyFileSync(path.join(ROOT, f), path.join(dir, f));
    fs.copyFileSync(path.join(ROOT, "tsconfig.json"), path.join(dir, "tsconfig.json"));
    fs.mkdirSync(path.join(dir, "node_modules"));
    for (const pkg of ["@pulumi", "esbuild"]) fs.symlinkSync(path.join(ROOT, "node_modules", pkg), path.join(dir, "node_modules", pkg));
    fs.mkdirSync(path.join(dir, "lib"));
    fs.writeFileSync(path.join(dir, "lib", "where.ts"), 'export const where: string = __dirname;\nexport const version = 1;\n');
    fs.writeFileSync(path.join(dir, "index.ts"), 'import { version, where } from "./lib/where";\nexport const here: string = __dirname;\nexport { version, where };\n');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("loads the program from one bundle, each file with its own __dirname", () => {
    expect(run()).toEqual({ here: dir, where: path.join(dir, "lib"), version: 1 });
    expect(bundles()).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(cache(), "program.json"), "utf8")).inputs).toEqual(["index.ts", "lib/where.ts"]);
  });

  it("drops the SDK's per-promise stack traces and debug messages, which PULUMI_DEBUG_PROMISE_LEAKS and PHOENIX_SDK_DEBUG keep", () => {
    // What the entry changes in the SDK it loads: the trace debuggablePromise records on a promise,
    // and whether log.debug sends anything (without an engine it resolves at once either way).
    const script = [
      "require('./pulumi-entry.cjs').then(() => {",
      "  const p = Promise.resolve(1);",
      "  require('@pulumi/pulumi/runtime/debuggable').debuggablePromise(p, 'probe');",
      "  const debug = require('@pulumi/pulumi/log').debug;",
      "  process.stdout.write(JSON.stringify({ trace: p._debugStackTrace, sdkDebug: !/^\\(\\) => Promise\\.resolve\\(\\)$/.test(String(debug)) }));",
      "});",
    ].join("\n");
    const probe = (env: Record<string, string>) => JSON.parse(execFileSync(process.execPath, ["-e", script], { cwd: dir, encoding: "utf8", env: { ...process.env, NODE_OPTIONS: "", PHOENIX_PROGRAM_CACHE: "", PULUMI_DEBUG_PROMISE_LEAKS: "", PHOENIX_SDK_DEBUG: "", ...env } })) as { trace: string; sdkDebug: boolean };
    expect(probe({})).toEqual({ trace: "Error", sdkDebug: false });
    const kept = probe({ PULUMI_DEBUG_PROMISE_LEAKS: "1", PHOENIX_SDK_DEBUG: "1" });
    expect(kept.trace).toContain("    at ");
    expect(kept.sdkDebug).toBe(true);
  });

  describe("lazy SDK modules", () => {
    const LAZY = ["automation/index.js", "runtime/closure/codePaths.js", "runtime/closure/serializeClosure.js"];
    /** Runs `body` (an async function's text, with `sdk` the SDK's folder) after the entry; its result as JSON. */
    const probe = (body: string, lazy = true): Record<string, unknown> => {
      const script = [
        "const path = require('path');",
        "const sdk = path.dirname(require.resolve('@pulumi/pulumi/package.json'));",
        "const loaded = (rel) => require.cache[require.resolve(rel, { paths: [sdk] })] !== undefined;",
        "(async () => { await require('./pulumi-entry.cjs');",
        body,
        "})().then((r) => process.stdout.write(JSON.stringify(r)));",
      ].join("\n");
      return JSON.parse(execFileSync(process.execPath, ["-e", script], { cwd: dir, encoding: "utf8", env: { ...process.env, NODE_OPTIONS: "", PHOENIX_PROGRAM_CACHE: "", PHOENIX_LAZY_SDK: lazy ? "" : "0" } })) as Record<string, unknown>;
    };
    const describeModules = `const out = {}; for (const rel of ${JSON.stringify(LAZY)}) { const m = require(path.join(sdk, rel)); out[rel] = { esModule: m.__esModule === true, keys: Object.keys(m), kinds: Object.keys(m).map((k) => typeof m[k] === 'function' ? (/^class\\b/.test(Function.prototype.toString.call(m[k])) ? 'class' : 'function') : typeof m[k]) }; } return out;`;

    it("stand in for the real modules with the same exports at the pinned SDK version; PHOENIX_LAZY_SDK=0 loads the real ones", () => {
      expect(JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", "@pulumi", "pulumi", "package.json"), "utf8")).version).toBe("3.248.0");
      const { modules: real, heavy } = probe(`const modules = (() => { ${describeModules} })(); require("@pulumi/pulumi"); return { modules, heavy: [loaded("typescript"), loaded("@npmcli/arborist")] };`, false) as { modules: Record<string, { esModule: boolean; keys: string[]; kinds: string[] }>; heavy: boolean[] };
      expect(heavy).toEqual([true, true]);
      // The stubs are what require returns until first use (no key read here but the list).
      const stubs = probe(`const out = {}; for (const rel of ${JSON.stringify(LAZY)}) { const m = require.cache[path.join(sdk, rel)].exports; out[rel] = { esModule: m.__esModule === true, keys: Object.keys(m) }; } return out;`) as Record<string, { esModule: boolean; keys: string[] }>;
      for (const rel of LAZY) {
        expect(stubs[rel]!.esModule).toBe(true);
        expect(stubs[rel]!.keys).toEqual(real[rel]!.keys);
        expect(real[rel]!.esModule).toBe(true);
      }
      // The closure modules' exports are plain functions (forwarded calls keep them right); runtime/index.js
      // copies them at load, so a getter would load the real module at once.
      for (const rel of LAZY.filter((r) => r.startsWith("runtime/"))) expect(real[rel]!.kinds.every((k) => k === "function")).toBe(true);
      expect(real["automation/index.js"]!.kinds).toContain("class");
    });

    it("keep TypeScript, arborist and the Automation API unloaded through `require(\"@pulumi/pulumi\")`, and load each on first use", () => {
      const r = probe(`
        const pulumi = require("@pulumi/pulumi");
        const heavy = () => ({ ts: loaded("typescript"), arborist: loaded("@npmcli/arborist"), automation: loaded("./automation/stack.js") });
        const atStart = heavy();
        const stack = pulumi.automation.fullyQualifiedStackName("org", "proj", "dev");
        const automationClass = pulumi.automation.LocalWorkspace === require(path.join(sdk, "automation/localWorkspace.js")).LocalWorkspace;
        const afterAutomation = heavy();
        const root = await require(path.join(sdk, "runtime/closure/codePaths.js")).findWorkspaceRoot(process.cwd());
        const afterCodePaths = heavy();
        const fn = await pulumi.runtime.serializeFunction(() => 6 * 7);
        const value = new Function("exports", fn.text + "; return exports." + fn.exportName + "()")({});
        return { atStart, stack, automationClass, afterAutomation, root: root ?? null, afterCodePaths, value, afterAll: heavy() };
      `);
      expect(r).toEqual({
        atStart: { ts: false, arborist: false, automation: false },
        stack: "org/proj/dev",
        automationClass: true,
        afterAutomation: { ts: false, arborist: false, automation: true },
        root: null,
        afterCodePaths: { ts: false, arborist: true, automation: true },
        value: 42,
        afterAll: { ts: true, arborist: true, automation: true },
      });
    });

    it("keep cmd/run's tracing packages unloaded until tracing starts, and then trace", () => {
      // As the CLI runs it: the preload first, then cmd/run's tracing module; `start` is what run.js calls with --tracing.
      const script = [
        "require('./pulumi-preload.cjs');",
        "const path = require('path');",
        "const run = path.join(path.dirname(require.resolve('@pulumi/pulumi/package.json')), 'cmd', 'run');",
        // Any file of the package but its main one, where the stand-in sits until first use.
        "const main = require.resolve('@opentelemetry/sdk-trace-node', { paths: [run] });",
        "const loaded = () => Object.keys(require.cache).some((f) => f.includes('/@opentelemetry/sdk-trace-node/') && f !== main);",
        "const tracing = require(path.join(run, 'tracing.js'));",
        "const before = { loaded: loaded(), recording: tracing.newSpan('probe').isRecording() };",
        "tracing.start('http://127.0.0.1:9/api/v2/spans');",
        "process.stdout.write(JSON.stringify({ before, after: { loaded: loaded(), recording: tracing.newSpan('probe').isRecording() } }));",
        "process.exit(0);",
      ].join("\n");
      expect(JSON.parse(execFileSync(process.execPath, ["-e", script], { cwd: dir, encoding: "utf8", env: { ...process.env, NODE_OPTIONS: "", PHOENIX_LAZY_SDK: "" } }))).toEqual({
        before: { loaded: false, recording: false },
        after: { loaded: true, recording: true },
      });
    });
  });

  it("reuses the bundle while no source changes, and rebuilds it when one does", () => {
    const [before] = bundles();
    const built = fs.statSync(path.join(cache(), before!)).mtimeMs;
    expect(run().version).toBe(1);
    expect(bundles()).toEqual([before]);
    expect(fs.statSync(path.join(cache(), before!)).mtimeMs).toBe(built);

    fs.writeFileSync(path.join(dir, "lib", "where.ts"), 'export const where: string = __dirname;\nexport const version = 2;\n');
    expect(run().version).toBe(2);
    // The bundle of the old sources is gone; the new one is the only one.
    expect(bundles()).toHaveLength(1);
    expect(bundles()).not.toEqual([before]);
  });
});
