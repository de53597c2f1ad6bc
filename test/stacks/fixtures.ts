/** Shared fixtures for the stack configuration tests: the committed stack files, freshly read. */
import * as path from "node:path";
import { readStackFile, validateStack, type LoadResult, type RawStack } from "../../stacks/load";
import { secretShapeProblem } from "../../stacks/secrets";
import type { ConfigIssue } from "../../stacks/validate";

export const ROOT = path.resolve(__dirname, "..", "..");
export const PROD_FILE = path.join(ROOT, "Pulumi.prod.yaml");
export const DEV_FILE = path.join(ROOT, "Pulumi.dev.yaml");

/** Every secret the prod stack needs, present as secrets. */
export const PROD_SECRETS = ["proxmoxTokenSecret", "sshPrivateKey", "stepCaPassword", "portainerAdminPassword", "portainerAgentSecret", "traefikDashboardPassword", "qdrantApiKey", "webappSessionSecret", "gatewayApiKey-webapp", "gatewayApiKey-n8n"];

/** A syntactically valid PEM standing in for the node's pve-root-ca.pem. */
export const TEST_PVE_CA = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";

/** The prod stack as the engine would see it with all its secrets set and the node's CA in place. */
export function prodWithSecrets(): RawStack {
  const raw = readStackFile(PROD_FILE);
  const values = structuredClone(raw.values) as Record<string, unknown>;
  // The user copies pve-root-ca.pem into the project; tests give it inline instead of writing files.
  (values.proxmox as { tls: unknown }).tls = { caPem: TEST_PVE_CA };
  // Long enough where the key has a required shape (stacks/secrets.ts secretShapeProblem).
  for (const key of PROD_SECRETS) values[key] = secretShapeProblem(key, `value-of-${key}`) === undefined ? `value-of-${key}` : `value-of-${key}-0123456789abcdef`;
  return { values, secretKeys: new Set([...raw.secretKeys, ...PROD_SECRETS]) };
}

export function issuesOf(result: LoadResult): ConfigIssue[] {
  if (result.ok === false) return result.issues;
  return [];
}

export function validate(raw: RawStack, requireSecrets = true): LoadResult {
  return validateStack(raw, { requireSecrets });
}
