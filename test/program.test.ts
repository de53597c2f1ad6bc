import * as pulumi from "@pulumi/pulumi";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { RawStack } from "../stacks/load";
import { prodWithSecrets } from "./stacks/fixtures";

const registered: string[] = [];

pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      registered.push(`${args.type}::${args.name}`);
      return { id: `${args.name}-id`, state: args.inputs };
    },
    call: (args) => args.inputs,
  },
  "phoenix",
  "prod",
  false,
);

/** Hands a raw stack to the SDK the way the engine does: JSON strings, secret keys listed. */
function setEngineConfig(raw: RawStack): void {
  const all: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw.values)) all[`phoenix:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  pulumi.runtime.setAllConfig(all, [...raw.secretKeys].map((k) => `phoenix:${k}`));
}

describe("index.ts", () => {
  beforeEach(() => {
    registered.length = 0;
    vi.resetModules();
  });

  it("loads the prod stack from the engine's config and exports what it describes", async () => {
    setEngineConfig(prodWithSecrets());
    const program = await import("../index");
    expect(program.guests["103"]).toEqual({ name: "step-ca", kind: "lxc", ip: "10.0.0.10", role: "step-ca" });
    expect(program.guests["1002"]?.role).toBe("portainer-agent");
    expect(program.models.map((m) => `${m.id}:${m.kind}:${m.engine}`)).toEqual([
      "granite-embedding-english-r2:embedding:vllm",
      "Qwen3-4B-FP8:chat:vllm",
      "llama3.1:8b:chat:ollama",
      "nomic-embed-text:embedding:ollama",
      "gemma-3-4b-it:chat:llamacpp",
    ]);
    expect(program.gpuAllocation.map((g) => [g.gpu, Math.round(g.totalGiB * 10) / 10])).toEqual([
      [0, 14.4],
      [1, 13],
    ]);
  });

  it("stops with the full list of problems before registering any resource", async () => {
    const raw = prodWithSecrets();
    const guests = raw.values.guests as { vmid: number; name: string }[];
    guests[1]!.vmid = 103;
    guests[2]!.name = "bad_name";
    setEngineConfig(raw);
    const failure = await import("../index").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(pulumi.RunError);
    const message = (failure as Error).message;
    expect(message).toContain("The stack configuration has 2 problems; nothing was changed:");
    expect(message).toContain("phoenix:guests[1].vmid: vmid 103 is already used by guests[0].vmid");
    expect(message).toContain("phoenix:guests[2].name: must be a valid hostname");
    expect(registered).toEqual([]);
  });

  it("refuses a secret the engine holds in plain text", async () => {
    const raw = prodWithSecrets();
    setEngineConfig({ values: raw.values, secretKeys: new Set([...raw.secretKeys].filter((k) => k !== "stepCaPassword")) });
    const failure = await import("../index").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((failure as Error).message).toContain("phoenix:stepCaPassword is stored in plain text");
  });
});
