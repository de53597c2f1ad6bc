/** The stack configuration as the Pulumi engine hands it to the program. */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { formatIssues, NAMESPACE, readEngineConfig, validateStack } from "./load";
import type { StackConfig } from "./schema";

/** Set by `npm run synth`: no secrets and no local files are needed, and none are read. */
export const OFFLINE_ENV = "PHOENIX_OFFLINE";
export const SECRET_PLACEHOLDER = "[secret]";

export interface LoadedStack {
  config: StackConfig;
  /** A secret's value, kept secret in the graph. */
  secret(key: string): pulumi.Output<string>;
  /** Whether an optional secret is set. */
  hasSecret(key: string): boolean;
  /** A file the stack names relative to the project directory (a CA, a host key). */
  projectFile(file: string, configPath: string): string;
}

// isConfigSecret is internal to the SDK's runtime module but is what the engine's
// PULUMI_CONFIG_SECRET_KEYS is read through; without it plain-text secrets go unnoticed.
function configSecretCheck(): (key: string) => boolean {
  const runtimeConfig = require("@pulumi/pulumi/runtime/config") as { isConfigSecret?: (k: string) => boolean };
  if (typeof runtimeConfig.isConfigSecret !== "function") {
    throw new Error("@pulumi/pulumi no longer exposes runtime.isConfigSecret: Phoenix cannot tell secret config from plain text with this SDK version");
  }
  return runtimeConfig.isConfigSecret;
}

/** Loads and validates the stack's config; stops the program with every problem found. */
export function loadFromEngine(): LoadedStack {
  const offline = process.env[OFFLINE_ENV] === "1";
  const raw = readEngineConfig(pulumi.runtime.allConfig(), configSecretCheck());
  const result = validateStack(raw, { requireSecrets: !offline });
  if (result.ok !== true) {
    const issues = result.ok === false ? result.issues : result.unknownPaths.map((p) => ({ path: p, message: "has no value" }));
    throw new pulumi.RunError(formatIssues(issues));
  }
  const cfg = new pulumi.Config(NAMESPACE);
  return {
    config: result.config,
    secret: (key) => (offline ? pulumi.secret(SECRET_PLACEHOLDER) : cfg.requireSecret(key)),
    hasSecret: (key) => result.secretsSet.has(key),
    projectFile(file, configPath) {
      if (offline) return `[contents of ${file}]`;
      const full = path.resolve(file);
      if (!fs.existsSync(full)) throw new Error(`${configPath}: ${file} does not exist (looked in ${path.dirname(full)})`);
      return fs.readFileSync(full, "utf8").trim();
    },
  };
}
