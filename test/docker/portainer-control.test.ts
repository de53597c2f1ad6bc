import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { dockerStackSpecs, PortainerControl } from "../../components/docker/portainer-control";
import { guestSchema, type VmGuest } from "../../stacks/schema";

const PROD = parse(fs.readFileSync("Pulumi.prod.yaml", "utf8")) as { config: Record<string, unknown[]> };
const guests = PROD.config["phoenix:guests"]!.map((g) => guestSchema.parse(g));
const drphoenixIndex = guests.findIndex((g) => g.vmid === 1002);
const drphoenix = guests[drphoenixIndex] as VmGuest;

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

describe("PortainerControl", () => {
  it("reads each declared stack's compose file and resolves its secrets by config key", () => {
    const asked: string[] = [];
    const specs = dockerStackSpecs(drphoenix, (file) => fs.readFileSync(file, "utf8").trim(), (key) => (asked.push(key), `<${key}>`), drphoenixIndex);
    expect(specs.map((s) => s.name)).toEqual(["qdrant", "webapp", "n8n"]);
    expect(specs[0]!.compose).toBe(fs.readFileSync("docker/qdrant/compose.yaml", "utf8"));
    expect(specs[0]!.secretEnv).toEqual({ QDRANT__SERVICE__API_KEY: "<qdrantApiKey>" });
    expect(asked).toEqual(["qdrantApiKey", "webappSessionSecret"]);
    expect(() => dockerStackSpecs(drphoenix, (_f, p) => { throw new Error(`missing ${p}`); }, () => "", drphoenixIndex)).toThrow(`missing guests[${drphoenixIndex}].dockerStacks[0].compose`);
  });

  it("builds admin → environment per agent → stacks on that environment, all with Phoenix's token", async () => {
    const registered: Registered[] = [];
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          registered.push({ type: args.type, name: args.name, inputs: args.inputs });
          const state = args.type.endsWith("PortainerAdmin") ? { apiToken: "ptr_token" } : args.type.endsWith("PortainerEnvironment") ? { endpointId: 7 } : {};
          return { id: `${args.name}-id`, state: { ...args.inputs, ...state } };
        },
        call: () => ({}),
      },
      "phoenix",
      "test",
    );
    const control = new PortainerControl("portainer", {
      access: { url: "https://10.0.0.111:9443", caPem: "-----BEGIN CERTIFICATE-----\n" },
      adminUser: "admin",
      adminPassword: pulumi.secret("correct-horse-battery"),
      tokenDescription: "phoenix-test",
      agents: [{ vmid: 1002, environment: "drphoenix", agentUrl: "tcp://10.0.0.102:9001", stacks: [{ name: "qdrant", compose: "services: {}\n", env: {}, secretEnv: { K: "v" } }] }],
    });
    const endpointId = await new Promise((resolve) => control.stacks["1002/qdrant"]!.stackId.apply(() => control.environments[1002]!.endpointId.apply(resolve)));
    expect(endpointId).toBe(7);
    expect(registered.map((r) => `${r.type.split(":").pop()} ${r.name}`)).toEqual([
      "PortainerControl portainer",
      "PortainerAdmin portainer-admin",
      "PortainerEnvironment portainer-env-1002",
      "PortainerStack portainer-stack-1002-qdrant",
    ]);
    const stack = registered[3]!.inputs;
    // The token travels only as a secret: the engine stores it encrypted in every resource that uses it.
    const secretApi = { [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value: { url: "https://10.0.0.111:9443", apiKey: "ptr_token" } };
    expect(stack).toMatchObject({ endpointId: 7, name: "qdrant", api: secretApi });
    expect(registered[2]!.inputs).toMatchObject({ name: "drphoenix", agentUrl: "tcp://10.0.0.102:9001", api: secretApi });
  });
});
