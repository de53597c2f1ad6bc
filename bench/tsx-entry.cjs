/*
 * `npm run bench`'s "before": the program entry Phoenix had until the bundle (pulumi-entry.cjs),
 * index.ts through tsx's CommonJS hook with source maps off, kept to time both side by side.
 */
/* global require, process, module */
"use strict";
Error.prepareStackTrace = undefined;
require("tsx/cjs/api").register();
process.setSourceMapsEnabled(false);
module.exports = require("../index.ts");
