/*
 * The lab network's rerouting, for any Node process of an e2e apply: connections to a mapped
 * `host:port` (a guest's address, an image publisher) go to the stand-in's local port instead,
 * the TLS name checked staying the one asked for; and the lab CA joins the roots of the default
 * HTTPS agent, so a stand-in is trusted where the real service would be by its public chain.
 *
 * The test process installs it through ../e2e/lab-network.ts. A process the harness spawns (the
 * SDK's dynamic-provider host, test/e2e/wire) gets it as a preload, `NODE_OPTIONS=--require
 * <this file>`, with the description in PHOENIX_LAB_NETWORK: `{ routes: { "host:port": port },
 * caPem }`. Plain CommonJS, so the preload adds no TypeScript loader to a process that has none.
 */
/* global require, module, process, __filename */
"use strict";
const net = require("node:net");
const https = require("node:https");
const tls = require("node:tls");

const ENV = "PHOENIX_LAB_NETWORK";

/**
 * Installs the routes (a Map or a plain object of `host:port` → local port) and, when given,
 * the lab CA; returns the undo.
 */
function install(routes, caPem) {
  const table = routes instanceof Map ? routes : new Map(Object.entries(routes));
  const original = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    const first = Array.isArray(args[0]) ? args[0][0] : args[0];
    if (first !== null && typeof first === "object") {
      const to = table.get(`${first.host}:${first.port}`);
      if (to !== undefined) {
        first.host = "127.0.0.1";
        first.port = to;
      }
    }
    return original.apply(this, args);
  };
  const options = https.globalAgent.options;
  const caBefore = options.ca;
  if (caPem) options.ca = [...tls.rootCertificates, caPem];
  return () => {
    net.Socket.prototype.connect = original;
    options.ca = caBefore;
  };
}

/** The environment that makes a child Node process install the same rerouting at start. */
function preloadEnv(routes, caPem) {
  const table = routes instanceof Map ? Object.fromEntries(routes) : routes;
  return { NODE_OPTIONS: `--require ${JSON.stringify(__filename)}`, [ENV]: JSON.stringify({ routes: table, caPem }) };
}

if (process.env[ENV]) {
  const d = JSON.parse(process.env[ENV]);
  install(d.routes, d.caPem);
}

module.exports = { install, preloadEnv };
