import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { phoenixOutput, PHOENIX_OUTPUT_KEYS, type PhoenixOutputs } from "../stacks/outputs";
import { MOCK_CA, runProgram } from "./mock-program";
import { prodWithSecrets } from "./stacks/fixtures";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const valueOf = (o: unknown) => new Promise((resolve) => (pulumi.output(o) as pulumi.Output<unknown>).apply(resolve));

/**
 * What a consuming project writes; type-checked with the rest of the suite, so
 * a contract change that breaks consumers fails `npm test`.
 */
export function consumer(ref: pulumi.StackReference): pulumi.Output<string> {
  const baseUrl: pulumi.Output<string | undefined> = phoenixOutput(ref, "openaiBaseUrl");
  const models: pulumi.Output<PhoenixOutputs["models"]> = phoenixOutput(ref, "models");
  return pulumi.all([baseUrl, models]).apply(([url, list]) => `${url}: ${list.filter((m) => m.kind === "chat").map((m) => m.id).join(", ")}`);
}

describe("the stack-output contract", () => {
  it("is exactly what the program exports, with the prod values", async () => {
    const { exports } = await runProgram(prodWithSecrets());
    expect(Object.keys(exports).sort()).toEqual([...PHOENIX_OUTPUT_KEYS].sort());
    const out = Object.fromEntries(await Promise.all(PHOENIX_OUTPUT_KEYS.map(async (k) => [k, await valueOf(exports[k])]))) as unknown as PhoenixOutputs;
    expect(out.gatewayUrl).toBe("https://internal.thinkheads.ai");
    expect(out.openaiBaseUrl).toBe("https://internal.thinkheads.ai/v1");
    expect(out.serviceUrls).toMatchObject({ qdrant: "https://internal.thinkheads.ai/qdrant/", portainer: "https://portainer.internal.thinkheads.ai/", n8n: "https://internal.thinkheads.ai/n8n/" });
    expect(out.qdrantUrl).toBe("https://internal.thinkheads.ai/qdrant/");
    expect(out.portainerUrl).toBe("https://portainer.internal.thinkheads.ai/");
    expect(out.caRootPem).toBe(MOCK_CA.rootPem);
    expect(out.caFingerprint).toBe(MOCK_CA.fingerprint);
    expect(out.acmeDirectoryUrl).toBe("https://ca.internal.thinkheads.ai:9000/acme/acme/directory");
    expect(out.guests["914"]).toEqual({ name: "ollama", kind: "lxc", ip: "10.0.0.155", role: "model-server" });
  });

  it("carries no secret: nothing exported is a secret, and no secret value appears in it", async () => {
    const { exports } = await runProgram(prodWithSecrets());
    for (const k of PHOENIX_OUTPUT_KEYS) {
      expect(await pulumi.isSecret(pulumi.output(exports[k])), k).toBe(false);
      const text = JSON.stringify(await valueOf(exports[k])) ?? "";
      expect(text, k).not.toContain(SECRET_SIG);
      expect(text, k).not.toMatch(/value-of-/);
    }
  });
});
