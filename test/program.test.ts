import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { runProgram } from "./mock-program";
import { prodWithSecrets } from "./stacks/fixtures";

async function failureOf(run: Promise<unknown>): Promise<Error> {
  return run.then(
    () => {
      throw new Error("the program ran");
    },
    (e: unknown) => e as Error,
  );
}

describe("index.ts", () => {
  it("loads the prod stack from the engine's config and exports what it describes", async () => {
    const { exports } = await runProgram(prodWithSecrets());
    const guests = exports.guests as Record<string, { name: string; role: string }>;
    expect(guests["103"]).toEqual({ name: "step-ca", kind: "lxc", ip: "10.0.0.10", role: "step-ca" });
    expect(guests["1002"]?.role).toBe("portainer-agent");
    expect((exports.models as { id: string; kind: string; engine: string }[]).map((m) => `${m.id}:${m.kind}:${m.engine}`)).toEqual([
      "granite-embedding-english-r2:embedding:vllm",
      "Qwen3-4B-FP8:chat:vllm",
      "llama3.1:8b:chat:ollama",
      "nomic-embed-text:embedding:ollama",
      "gemma-3-4b-it:chat:llamacpp",
    ]);
    expect((exports.gpuAllocation as { gpu: number; totalGiB: number }[]).map((g) => [g.gpu, Math.round(g.totalGiB * 10) / 10])).toEqual([
      [0, 14.4],
      [1, 13],
    ]);
  });

  it("stops with the full list of problems before registering any resource", async () => {
    const raw = prodWithSecrets();
    const guests = raw.values.guests as { vmid: number; name: string }[];
    guests[1]!.vmid = 103;
    guests[2]!.name = "bad_name";
    const registered: string[] = [];
    const failure = await failureOf(runProgram(raw, (name) => registered.push(name)));
    expect(failure).toBeInstanceOf(pulumi.RunError);
    expect(failure.message).toContain("The stack configuration has 2 problems; nothing was changed:");
    expect(failure.message).toContain("phoenix:guests[1].vmid: vmid 103 is already used by guests[0].vmid");
    expect(failure.message).toContain("phoenix:guests[2].name: must be a valid hostname");
    expect(registered).toEqual([]);
  });

  it("refuses a secret the engine holds in plain text", async () => {
    const raw = prodWithSecrets();
    const failure = await failureOf(runProgram({ values: raw.values, secretKeys: new Set([...raw.secretKeys].filter((k) => k !== "stepCaPassword")) }));
    expect(failure.message).toContain("phoenix:stepCaPassword is stored in plain text");
  });

  it("refuses a secret set to the offline placeholder, which renderers would take for a stand-in", async () => {
    const raw = prodWithSecrets();
    const failure = await failureOf(runProgram({ values: { ...raw.values, stepCaPassword: "[secret]" }, secretKeys: raw.secretKeys }));
    expect(failure.message).toContain("phoenix:stepCaPassword: is set to the offline placeholder [secret]");
  });
});
