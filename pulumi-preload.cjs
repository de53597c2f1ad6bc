/*
 * Stand-ins for parts of the Pulumi SDK that a program evaluation does not use, each loading the
 * real module on first use (issue #22, cold load). Preloaded before cmd/run loads anything:
 * Pulumi.yaml `runtime.options.nodeargs: --require ./pulumi-preload.cjs`. The nodejs language host
 * puts nodeargs before cmd/run's path (pulumi v3.248.0 sdk/nodejs/cmd/pulumi-language-nodejs/main.go,
 * `runtimeArgs, err = shlex.Split(opts.nodeargs)`, then the run arguments) and starts node in its own
 * working directory, which is the directory of Pulumi.yaml's `main` (pkg/engine/project.go
 * `getPwdMain`; pkg/host/host.go `plugin.NewLanguageRuntime(host, ctx, runtime, ctx.Pwd)`;
 * sdk/go/common/resource/plugin/plugin.go `ExecPlugin`: `cmd.Dir = pwd`), so the relative path
 * resolves here. pulumi-entry.cjs requires this file as well; a module already loaded is left as
 * it is. PHOENIX_LAZY_SDK=0 turns all of it off. Why, and the figures: README.md, "How `pulumi up`
 * loads Phoenix".
 */
/* global require, process, module */
"use strict";
const path = require("node:path");
const Module = require("node:module");

/** Enters `exports` in require.cache as the module at `filename`. */
function standIn(filename, exports) {
  const stub = new Module(filename, module);
  stub.filename = filename;
  stub.loaded = true;
  stub.exports = exports;
  require.cache[filename] = stub;
  return stub;
}

/** The real module at `filename`, once: the stand-in leaves the cache and any require loads it. */
function loader(filename, stub) {
  let real;
  return () => {
    if (real === undefined) {
      if (require.cache[filename] === stub()) delete require.cache[filename];
      real = require(filename);
    }
    return real;
  };
}

// `require("@pulumi/pulumi")` loads three parts a program evaluation does not need, and they were
// most of its import time:
//  - automation/ (index.js: `__importStar(require("./automation"))`, which returns the module
//    itself since it is `__esModule`), the Automation API, for programs that drive the CLI;
//  - runtime/closure/codePaths.js, which loads @npmcli/arborist to package a function's
//    node_modules (runtime.computeCodePaths); the dynamic providers' serialisation does not use
//    it (dynamic/index.js `serializeFunctionMaybeSecret` requires only serializeClosure, which
//    requires createClosure and utils);
//  - runtime/closure/serializeClosure.js, whose createClosure.js loads TypeScript to parse
//    function text; dynamic/index.js itself requires it only when it serialises a provider
//    ("Load runtime/closure on demand, as its dependencies are slow to load"), but
//    runtime/index.js requires it, and codePaths, at once to re-export their functions
//    (`exports.serializeFunction = serializeClosure_1.serializeFunction`,
//    `exports.computeCodePaths = codePaths_1.computeCodePaths`).
// Each is entered in require.cache before the SDK is first required, as a module whose exports
// load the real one on first use (@pulumi/pulumi@3.248.0, the files above). runtime/index.js reads
// its two modules' functions when it loads, so those exports are functions that forward each call;
// automation's classes must stay themselves (`new`, `instanceof`), so its exports are getters. The
// key lists are this version's (test/entry/pulumi-entry.test.ts compares them with the real
// modules); with any other SDK version nothing is made lazy, and a module already loaded stays.
const LAZY_SDK_VERSION = "3.248.0";
const LAZY_SDK_MODULES = [
  { file: "runtime/closure/serializeClosure.js", forward: ["serializeFunction", "serializeFunctionAsync"] },
  { file: "runtime/closure/codePaths.js", forward: ["computeCodePaths", "findWorkspaceRoot"] },
  {
    file: "automation/index.js",
    get: ["CommandResult", "PulumiCommand", "parseAndValidatePulumiVersion", "CommandError", "ConcurrentUpdateError", "StackNotFoundError", "StackAlreadyExistsError", "createCommandError", "Stack", "fullyQualifiedStackName", "stackSettingsSerDeKeys", "LocalWorkspace", "DiffKind", "RemoteStack", "RemoteWorkspace", "isFullyQualifiedStackName"],
  },
];
function installLazySdkModules(sdk) {
  for (const { file, forward = [], get = [] } of LAZY_SDK_MODULES) {
    const filename = path.join(sdk, file);
    if (require.cache[filename]) continue;
    const load = loader(filename, () => stub);
    const exports = {};
    Object.defineProperty(exports, "__esModule", { value: true });
    for (const key of forward) {
      const fn = function (...args) {
        return load()[key].apply(this, args);
      };
      Object.defineProperty(fn, "name", { value: key });
      exports[key] = fn;
    }
    for (const key of get) {
      const getter = () => load()[key];
      const setter = (value) => {
        load()[key] = value;
      };
      Object.defineProperty(exports, key, { enumerable: true, configurable: true, get: getter, set: setter });
    }
    const stub = standIn(filename, exports);
  }
}

// cmd/run's tracing (@pulumi/pulumi@3.248.0 cmd/run/tracing.js) requires six OpenTelemetry
// packages at load and uses them only in `start`, which run.js calls only when the CLI passes
// `--tracing` (run.js: `if (tracingUrl) { tracing.start(tracingUrl) ... }`); `newSpan`, called on
// every run, needs only @opentelemetry/api, which stays. tracing.js binds each package once
// (`const resources_1 = require("@opentelemetry/resources")`) and reads its members in `start`,
// so a stand-in that forwards every access to the real package, loading it on the first, keeps it
// working without a list of its keys. instrumentation.js requires two of them itself, inside the
// functions that use them. Resolved from cmd/run, as tracing.js resolves them.
const TRACING_ONLY = ["@opentelemetry/resources", "@opentelemetry/sdk-trace-base", "@opentelemetry/exporter-zipkin", "@opentelemetry/instrumentation-grpc", "@opentelemetry/sdk-trace-node", "@opentelemetry/instrumentation"];
function installLazyTracing(sdk) {
  for (const request of TRACING_ONLY) {
    let filename;
    try {
      filename = require.resolve(request, { paths: [path.join(sdk, "cmd", "run")] });
    } catch {
      continue;
    }
    if (require.cache[filename]) continue;
    const load = loader(filename, () => stub);
    const exports = new Proxy(
      {},
      {
        get: (_, key) => load()[key],
        set: (_, key, value) => {
          load()[key] = value;
          return true;
        },
        has: (_, key) => key in load(),
        ownKeys: () => Reflect.ownKeys(load()),
        getOwnPropertyDescriptor: (_, key) => {
          const d = Reflect.getOwnPropertyDescriptor(load(), key);
          // A proxy may not report a property non-configurable that its target lacks.
          return d && { ...d, configurable: true };
        },
      },
    );
    const stub = standIn(filename, exports);
  }
}

if (process.env.PHOENIX_LAZY_SDK !== "0") {
  let sdk;
  try {
    sdk = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
  } catch {
    sdk = undefined;
  }
  if (sdk !== undefined && require(path.join(sdk, "package.json")).version === LAZY_SDK_VERSION) {
    installLazySdkModules(sdk);
    installLazyTracing(sdk);
  }
}
