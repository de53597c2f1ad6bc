/** The stack configuration as the Pulumi engine hands it to the program. */
import * as pulumi from "@pulumi/pulumi";
import { formatIssues, NAMESPACE, readEngineConfig, validateStack } from "./load";
import type { StackConfig } from "./schema";

export interface LoadedStack {
  config: StackConfig;
  /** A secret's value, kept secret in the graph. */
  secret(key: string): pulumi.Output<string>;
  /** Whether an optional secret is set. */
  hasSecret(key: string): boolean;
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
  const raw = readEngineConfig(pulumi.runtime.allConfig(), configSecretCheck());
  const result = validateStack(raw, { requireSecrets: true });
  if (result.ok !== true) {
    const issues = result.ok === false ? result.issues : result.unknownPaths.map((path) => ({ path, message: "has no value" }));
    throw new pulumi.RunError(formatIssues(issues));
  }
  const cfg = new pulumi.Config(NAMESPACE);
  return { config: result.config, secret: (key) => cfg.requireSecret(key), hasSecret: (key) => result.secretsSet.has(key) };
}
