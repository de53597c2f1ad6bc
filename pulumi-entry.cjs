/*
 * The program's entry under the Pulumi CLI (Pulumi.yaml `main`). The language host starts
 * `@pulumi/pulumi/cmd/run`, which requires this file; it loads index.ts through tsx's CommonJS
 * hook (esbuild: no type check, which `npm test` does with tsc) instead of the SDK's vendored
 * ts-node, which type-checks every file at each cold start. Why, and the figures: README.md,
 * "How `pulumi up` loads Phoenix".
 *
 * tsx is resolved from this file, not from the working directory the CLI starts node in, which
 * is why this is a file and not `runtime.options.nodeargs: --require tsx/cjs`.
 */
/* global require, process, module */
"use strict";

// Source maps off in the run path. The SDK reads `new Error().stack` for every resource
// (Resource.callsites, with no frame limit) and every RPC promise (debuggablePromise); mapping
// each frame was a third of the evaluation. cmd/run/index.js installs source-map-support's
// Error.prepareStackTrace before loading the program, which maps frames through the SDK's own
// .js.map files; tsx's register() turns on Node's source maps and inlines one in every file it
// compiles. Both are undone here: a stack trace then shows the compiled line of a .ts file.
// PHOENIX_SOURCE_MAPS=1 keeps Node's source maps for debugging.
Error.prepareStackTrace = undefined;
require("tsx/cjs/api").register();
if (process.env.PHOENIX_SOURCE_MAPS !== "1") process.setSourceMapsEnabled(false);

module.exports = require("./index.ts");
