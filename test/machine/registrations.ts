/** The registrations of a committed stack file's program run, as synth runs it (offline secrets and provider outputs). */
import * as path from "node:path";
import { vi } from "vitest";
import { offlineOutputs } from "../../scripts/offline-outputs";
import { runOffline, type Registered } from "../../scripts/offline-program";
import { OFFLINE_ENV, SECRET_PLACEHOLDER } from "../../stacks/engine";
import { readStackFile, validateStack } from "../../stacks/load";
import { ROOT } from "../stacks/fixtures";

export async function registrationsOf(stack: "dev" | "prod" | "vrooli" | "cluster"): Promise<Registered[]> {
  const raw = readStackFile(path.join(ROOT, `Pulumi.${stack}.yaml`));
  const checked = validateStack(raw, { requireSecrets: false });
  if (checked.ok !== true) throw new Error(`Pulumi.${stack}.yaml does not validate`);
  const missing = [...new Set(checked.missingSecrets.map((s) => s.key))];
  const previous = process.env[OFFLINE_ENV];
  process.env[OFFLINE_ENV] = "1";
  try {
    const values = { ...raw.values, ...Object.fromEntries(missing.map((k) => [k, SECRET_PLACEHOLDER])) };
    const { resources } = await runOffline(
      { values, secretKeys: new Set([...raw.secretKeys, ...missing]) },
      {
        preview: false,
        outputsOf: offlineOutputs(checked.config),
        load: async () => {
          vi.resetModules();
          return (await import("../../index")) as Record<string, unknown>;
        },
      },
    );
    return resources;
  } finally {
    if (previous === undefined) delete process.env[OFFLINE_ENV];
    else process.env[OFFLINE_ENV] = previous;
  }
}
