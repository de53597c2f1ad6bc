import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PortainerAdmin, portainerAdminProvider } from "../../providers/portainer/admin";
import { portainerEnvironmentProvider } from "../../providers/portainer/environment";
import { portainerAgentSecretProvider } from "../../providers/portainer/agent-secret";
import { serviceHealthProvider } from "../../providers/portainer/health";
import { PortainerStack, portainerStackProvider } from "../../providers/portainer/stack";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { adminInputs } from "./helpers";

/** What the engine's dynamic-provider process does with the serialized text, in a plain Node. */
const ENGINE_LIKE_HOST = `
const fs = require("fs");
const provider = require("require-from-string")(fs.readFileSync(process.argv[1], "utf8")).handler();
const inputs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
(async () => {
  const checked = await provider.check({}, inputs);
  const created = await provider.create(checked.inputs);
  console.log(JSON.stringify({ failures: checked.failures, initialized: created.outs.initializedByPhoenix }));
})().catch((e) => { console.error(e.stack); process.exit(1); });
`;

let sim: PortainerSim;
let dir: string;
beforeAll(async () => {
  sim = await startPortainerSim();
  dir = mkdtempSync(join(tmpdir(), "phoenix-portainer-serialize-"));
});
afterAll(async () => {
  await sim.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("Portainer provider serialization", () => {
  it.each(Object.entries({ portainerAdminProvider, portainerEnvironmentProvider, portainerStackProvider, serviceHealthProvider, portainerAgentSecretProvider }))("%s captures no module", async (_name, provider) => {
    const { text } = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
    expect(text).toContain("loadImplementation");
    expect(text).not.toMatch(/PortainerClient|createAgentEndpoint|FormData|waitHealthy/);
  });

  it("the serialized admin provider initialises Portainer where the engine runs it", async () => {
    const { text } = await pulumi.runtime.serializeFunction(() => portainerAdminProvider, { allowSecrets: true });
    writeFileSync(join(dir, "provider.js"), text);
    writeFileSync(join(dir, "inputs.json"), JSON.stringify(adminInputs(sim)));
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", ENGINE_LIKE_HOST, join(dir, "provider.js"), join(dir, "inputs.json")], { cwd: process.cwd(), env: { PATH: process.env.PATH ?? "" } });
    expect(JSON.parse(stdout)).toEqual({ failures: [], initialized: true });
    expect(sim.state.users.map((u) => u.Username)).toEqual(["admin"]);
  });
});

describe("resource classes", () => {
  it("register as phoenix/portainer dynamic resources with the password, token and secret variables secret", async () => {
    const registered: { type: string; name: string }[] = [];
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          registered.push({ type: args.type, name: args.name });
          return { id: `${args.name}-id`, state: { ...args.inputs, apiToken: "ptr_mock" } };
        },
        call: () => ({}),
      },
      "phoenix",
      "test",
    );
    const admin = new PortainerAdmin("portainer-admin", { access: { url: "https://10.0.0.111:9443" }, username: "admin", password: "correct-horse-battery", tokenDescription: "phoenix-test" });
    const stack = new PortainerStack("stack-qdrant", { api: admin.apiToken.apply((apiKey) => ({ url: "https://10.0.0.111:9443", apiKey })), endpointId: 1, name: "qdrant", compose: "services: {}", secretEnv: { K: "v" } });
    const secret = (o: pulumi.Output<unknown>) => (o as unknown as { isSecret: Promise<boolean> }).isSecret;
    // additionalSecretOutputs is applied by the engine, which mocks do not run: check what the SDK itself sends.
    expect(await secret((admin as unknown as { password: pulumi.Output<unknown> }).password)).toBe(true);
    expect(await secret((stack as unknown as { secretEnv: pulumi.Output<unknown> }).secretEnv)).toBe(true);
    expect(await secret(stack.env)).toBe(false);
    expect(registered.map((r) => r.type)).toEqual(["pulumi-nodejs:dynamic/phoenix/portainer:PortainerAdmin", "pulumi-nodejs:dynamic/phoenix/portainer:PortainerStack"]);
  });
});
