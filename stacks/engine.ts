/** The stack configuration as the Pulumi engine hands it to the program. */
import * as pulumi from "@pulumi/pulumi";
import { formatIssues, NAMESPACE, readEngineConfig, validateStack } from "./load";
import { PlacedError } from "./errors";
import { readProjectFile } from "./project-files";
import type { StackConfig } from "./schema";
import { SECRET_PLACEHOLDER } from "./placeholder";
import { isDockerSecretKey, type GatewayApiKeySecret, type WellKnownSecret } from "./secrets";

/** Set by `npm run synth`: no secrets and no local files are needed, and none are read. */
export const OFFLINE_ENV = "PHOENIX_OFFLINE";
export { SECRET_PLACEHOLDER } from "./placeholder";

export interface LoadedStack {
  config: StackConfig;
  /** One of Phoenix's own secrets (a gateway API client's key among them), kept secret in the graph. */
  secret(key: WellKnownSecret | GatewayApiKeySecret): pulumi.Output<string>;
  /** A Docker stack's secret (secretEnv): never one of Phoenix's own secrets or settings. */
  dockerSecret(key: string): pulumi.Output<string>;
  /** Whether an optional secret is set. */
  hasSecret(key: WellKnownSecret): boolean;
  /** A file the stack names relative to the project folder (a CA, a host key, a compose file), read only from inside it. */
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
  // Pulumi runs the program in the project folder (where Pulumi.yaml is): the stack's files are read from there only.
  const root = process.cwd();
  const result = validateStack(raw, { requireSecrets: !offline, ...(offline ? {} : { projectRoot: root }) });
  if (result.ok !== true) {
    const issues = result.ok === false ? result.issues : result.unknownPaths.map((p) => ({ path: p, message: "has no value" }));
    throw new pulumi.RunError(formatIssues(issues));
  }
  // Renderers accept the offline placeholder where a secret would be; a real secret spelled so would slip through.
  const placeholders = offline ? [] : [...raw.secretKeys].filter((k) => raw.values[k] === SECRET_PLACEHOLDER);
  if (placeholders.length) {
    throw new pulumi.RunError(formatIssues(placeholders.map((k) => ({ path: k, message: `is set to the offline placeholder ${SECRET_PLACEHOLDER}: set the real value with pulumi config set --secret phoenix:${k}` }))));
  }
  const cfg = new pulumi.Config(NAMESPACE);
  const secret = (key: string) => (offline ? pulumi.secret(SECRET_PLACEHOLDER) : cfg.requireSecret(key));
  return {
    config: result.config,
    secret,
    dockerSecret(key) {
      // Validation refused these already (dockerSecretIssues); this keeps any other caller from passing one on.
      if (!isDockerSecretKey(key)) throw new PlacedError(`phoenix:${key} is not a Docker stack secret`, {});
      return secret(key);
    },
    hasSecret: (key) => result.secretsSet.has(key),
    projectFile: (file, configPath) => (offline ? `[contents of ${file}]` : readProjectFile(root, file, configPath)),
  };
}
