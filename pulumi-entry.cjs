/*
 * The program's entry under the Pulumi CLI (Pulumi.yaml `main`, `typescript: false`). The language
 * host starts `@pulumi/pulumi/cmd/run`, which requires this file and awaits what it exports
 * (@pulumi/pulumi@3.248.0 cmd/run/run.js `runProgram`: `programExport instanceof Function ?
 * programExport() : programExport`, then `await`): here a promise of index.ts's exports, which
 * become the stack's outputs as if index.ts were `main`.
 *
 * index.ts and the project files it imports are bundled by esbuild into one CommonJS file
 * (packages in node_modules stay `require`s), cached in node_modules/.cache/phoenix and keyed by a
 * hash of every file the bundle was built from: a change to any of them rebuilds it (about a
 * tenth of a second), otherwise the program is one file to read and no TypeScript hook is
 * installed in the process. No type check here: `npm test` runs tsc. Why, and the figures:
 * README.md, "How `pulumi up` loads Phoenix".
 */
/* global require, process, module, __dirname, __filename */
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");

// ---- Lazy SDK modules (issue #22, cold load) -------------------------------------------------
// Pulumi.yaml's nodeargs preload this file's sibling before cmd/run loads anything; required here
// too, so a run without that preload still defers what is not yet loaded (it skips what is).
require("./pulumi-preload.cjs");
// ---- end of lazy SDK modules -----------------------------------------------------------------

// Source maps off in the run path. The SDK reads `new Error().stack` for every resource
// (Resource.callsites, with no frame limit) and every RPC promise (debuggablePromise); cmd/run's
// index.js installs source-map-support's Error.prepareStackTrace, which maps every frame of the
// SDK's own files through their .js.map. Undone here: a stack trace shows the bundle's line.
// PHOENIX_SOURCE_MAPS=1 turns Node's source maps on and a trace shows the .ts file's line (the
// bundle is always written with its .map beside it).
Error.prepareStackTrace = undefined;
if (process.env.PHOENIX_SOURCE_MAPS === "1") process.setSourceMapsEnabled(true);

// The SDK records a stack trace on every promise it makes (@pulumi/pulumi@3.248.0
// runtime/debuggable.js `debuggablePromise`: `_debugStackTrace: new Error().stack`): one per output
// property of every resource (runtime/rpc.js transferProperties), per RPC, per log line; with the
// SDK's resource work it was the largest cost of registering a resource. That trace is read only by
// the leak report, and only with PULUMI_DEBUG_PROMISE_LEAKS set (`promiseDebugString`, called when
// `debugPromiseLeaks`); without it the trace is left empty. Callers reach the function through the
// module's exports at each call (`debuggable_1.debuggablePromise(...)`), so replacing the export is
// enough. Resource.callsites, which sets its own unlimited depth, keeps sending source positions.
const debuggable = require("@pulumi/pulumi/runtime/debuggable");
if (!debuggable.debugPromiseLeaks && typeof debuggable.debuggablePromise === "function") {
  const record = debuggable.debuggablePromise;
  debuggable.debuggablePromise = function debuggablePromise(p, ctx) {
    const depth = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return record(p, ctx);
    } finally {
      Error.stackTraceLimit = depth;
    }
  };
}

// The SDK sends the engine several debug messages per resource (@pulumi/pulumi@3.248.0
// runtime/resource.js `log.debug`: "Registering resource", "RegisterResource RPC prepared",
// "... finished" with the whole response), each a Log RPC, one after another (log/index.js `log`
// chains them on `lastLog`), and keeps the program alive until the last is answered. The CLI shows
// them only with `pulumi up --debug` (pulumi/pulumi v3.248.0 sdk/go/common/diag/sink.go: Debug
// messages go to a discarding writer unless `Debug`), which it does not tell the program (the
// language host passes the config, the secret keys, the TypeScript switches and the tracing
// endpoint: sdk/nodejs/cmd/pulumi-language-nodejs/main.go `execRuntime`). On prod's scale they were
// a quarter of the evaluation. PHOENIX_SDK_DEBUG=1 sends them, for `pulumi up --debug`. The callers
// reach `debug` through the module's exports (`log.debug(...)`, __importStar of an ES module).
if (process.env.PHOENIX_SDK_DEBUG !== "1") require("@pulumi/pulumi/log").debug = () => Promise.resolve();

const ROOT = __dirname;
/**
 * Where the bundle lives. The bench points it at an empty folder to time a rebuild; that folder
 * must be below node_modules too, since the bundle's `require`s resolve from where it lies.
 */
const CACHE = process.env.PHOENIX_PROGRAM_CACHE || path.join(ROOT, "node_modules", ".cache", "phoenix");
const MANIFEST = path.join(CACHE, "program.json");

/** Changes whenever a bundle of the same sources could come out different. */
function buildIdentity() {
  const esbuildVersion = require("esbuild/package.json").version;
  return [esbuildVersion, fs.readFileSync(__filename, "utf8"), fs.readFileSync(path.join(ROOT, "tsconfig.json"), "utf8")];
}

/** sha256 over the build's identity and every input's path and content; undefined when one is gone. */
function keyOf(inputs) {
  const h = crypto.createHash("sha256");
  for (const part of buildIdentity()) h.update(part).update("\0");
  for (const rel of inputs) {
    let content;
    try {
      content = fs.readFileSync(path.join(ROOT, rel));
    } catch {
      return undefined;
    }
    h.update(rel).update("\0").update(content).update("\0");
  }
  return h.digest("hex").slice(0, 32);
}

/** The cached bundle when the files it was built from are unchanged. */
function cached() {
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(MANIFEST, "utf8"));
  } catch {
    return undefined;
  }
  const file = path.join(CACHE, `program-${manifest.key}.cjs`);
  return keyOf(manifest.inputs) === manifest.key && fs.existsSync(file) ? file : undefined;
}

/**
 * esbuild gives a bundle one `__dirname`, the output's folder; a project file that reads a file
 * beside itself (components/core/nginx.render.ts) keeps its own. esbuild renames the per-module
 * declarations apart where they collide in the bundle's scope.
 */
const ownDirname = {
  name: "phoenix-own-dirname",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      let contents = fs.readFileSync(args.path, "utf8");
      if (/\b__(dirname|filename)\b/.test(contents)) {
        contents = `var __dirname = ${JSON.stringify(path.dirname(args.path))}, __filename = ${JSON.stringify(args.path)};\n${contents}`;
      }
      return { contents, loader: "ts" };
    });
  },
};

/** Builds the bundle, writes it and its manifest by rename (another run may read them meanwhile). */
async function build() {
  const esbuild = require("esbuild");
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [path.join(ROOT, "index.ts")],
    outfile: path.join(CACHE, "program.cjs"),
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // Every bare import (the SDK, providers, zod, ...) stays a `require` of node_modules, resolved
    // from the cache folder upwards, so the SDK's closure serializer still finds each package by its
    // module object in require.cache (runtime/closure/createClosure.js findNormalizedModuleNameAsync).
    packages: "external",
    tsconfig: path.join(ROOT, "tsconfig.json"),
    // As tsx compiled each file before: the text the SDK serializes of a dynamic provider's
    // functions (Function.prototype.toString) stays as compact as it was. It is not the same text
    // (the bundle may rename a local, `path` to `path6`), which changes nothing: every provider's
    // diff leaves `__provider` out (providers/common.ts `canonical`) and the SDK's host runs the
    // text it is sent (cmd/dynamic-provider/index.js `getProvider`).
    minifyWhitespace: true,
    sourcemap: "linked",
    sourcesContent: false,
    metafile: true,
    write: false,
    logLevel: "silent",
    plugins: [ownDirname],
  });
  const inputs = Object.keys(result.metafile.inputs).sort();
  const key = keyOf(inputs);
  const js = result.outputFiles.find((f) => f.path.endsWith(".cjs"));
  const map = result.outputFiles.find((f) => f.path.endsWith(".map"));
  const file = path.join(CACHE, `program-${key}.cjs`);
  fs.mkdirSync(CACHE, { recursive: true });
  const write = (to, text) => {
    fs.writeFileSync(`${to}.${process.pid}`, text);
    fs.renameSync(`${to}.${process.pid}`, to);
  };
  write(`${file}.map`, map.text);
  write(file, js.text.replace(/\/\/# sourceMappingURL=.*\n?$/, `//# sourceMappingURL=${path.basename(file)}.map\n`));
  // Bundles of older sources go; the one just written stays.
  for (const f of fs.readdirSync(CACHE)) if (/^program-[0-9a-f]+\.cjs(\.map)?$/.test(f) && !f.startsWith(path.basename(file))) fs.rmSync(path.join(CACHE, f), { force: true });
  write(MANIFEST, JSON.stringify({ key, inputs }));
  return file;
}

async function load() {
  const file = cached() ?? (await build());
  // Which bundle runs, for providers/dynamic-resource.ts: it keeps each dynamic provider's
  // serialized `__provider` text in this folder under this bundle's key (the hash in its name).
  globalThis[Symbol.for("phoenix.programBundle")] = { key: /program-([0-9a-f]+)\.cjs$/.exec(file)[1], dir: path.dirname(file) };
  return require(file);
}

module.exports = load();
