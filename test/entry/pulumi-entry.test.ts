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
    fs.copyFileSync(path.join(ROOT, "pulumi-entry.cjs"), path.join(dir, "pulumi-entry.cjs"));
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
