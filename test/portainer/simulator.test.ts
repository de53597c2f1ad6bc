import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PortainerApiError, PortainerClient } from "../../providers/portainer/client";
import type { PortainerApi } from "../../providers/portainer/common";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { AGENT_URL, bootstrap, PASSWORD, registerAgent } from "./helpers";

let sim: PortainerSim;
let api: PortainerApi;
let client: PortainerClient;
let endpointId: number;
beforeAll(async () => {
  sim = await startPortainerSim({ agents: [AGENT_URL] });
  ({ api } = await bootstrap(sim));
  client = new PortainerClient(api, { kind: "apiKey", key: api.apiKey });
  endpointId = (await registerAgent(api)).endpointId;
});
afterAll(async () => {
  client.close();
  await sim.stop();
});

async function refused(p: Promise<unknown>): Promise<{ status: number; apiMessage: string; details: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PortainerApiError);
  const { status, apiMessage, details } = err as PortainerApiError;
  return { status, apiMessage, details };
}

const compose = "services:\n  web:\n    image: nginx:1.29\n";

describe("the Portainer simulator refuses what Portainer refuses", () => {
  it("a stack posted as JSON to the file route: Portainer reads the file with FormFile", async () => {
    const r = await refused(client.request("POST", `/api/stacks/create/standalone/file?endpointId=${endpointId}`, { json: { Name: "web", StackFileContent: compose } }));
    expect(r).toEqual({ status: 400, apiMessage: "Invalid request payload", details: "Invalid stack name" });
    const form = new FormData();
    form.append("Name", "web");
    form.append("file", compose);
    expect((await refused(client.request("POST", `/api/stacks/create/standalone/file?endpointId=${endpointId}`, { form }))).details).toMatch(/Invalid Compose file/);
  });

  it("stack creation and update without endpointId, and the pre-2.19 POST /api/stacks", async () => {
    expect(await refused(client.request("POST", "/api/stacks/create/standalone/string", { json: { Name: "web", StackFileContent: compose } }))).toMatchObject({ status: 400, apiMessage: "Invalid query parameter: endpointId" });
    const s = await client.createStack(endpointId, "web", compose, []);
    expect(await refused(client.request("PUT", `/api/stacks/${s.Id}`, { json: { StackFileContent: compose } }))).toMatchObject({ status: 400, apiMessage: "Invalid query parameter: endpointId" });
    expect(await refused(client.request("DELETE", `/api/stacks/${s.Id}`))).toMatchObject({ status: 404 });
    expect((await refused(client.request("POST", `/api/stacks?type=2&method=string&endpointId=${endpointId}`, { json: {} }))).status).toBe(405);
    await client.deleteStack(s.Id, endpointId);
  });

  it("an agent environment sent as JSON, or without TLSSkipClientVerify", async () => {
    expect(await refused(client.request("POST", "/api/endpoints", { json: { Name: "x", EndpointCreationType: 2, URL: AGENT_URL } }))).toMatchObject({ status: 400, details: "invalid environment name" });
    const form = new FormData();
    for (const [k, v] of Object.entries({ Name: "x", EndpointCreationType: "2", URL: AGENT_URL, TLS: "true", TLSSkipVerify: "true" })) form.append(k, v);
    expect((await refused(client.request("POST", "/api/endpoints", { form }))).details).toMatch(/invalid certificate file/);
  });

  it("a duplicate environment name, compared exactly", async () => {
    expect(await refused(client.createAgentEndpoint("drphoenix", AGENT_URL))).toMatchObject({ status: 409, apiMessage: "Name is not unique" });
  });

  it("an API token minted with an API token instead of the admin's JWT", async () => {
    expect(await refused(client.createApiKey(1, "other", PASSWORD))).toMatchObject({ status: 401, apiMessage: "Auth not supported" });
  });

  it("answers the health endpoints Phoenix watches", async () => {
    expect(await client.systemStatus()).toEqual({ Version: "2.33.2", InstanceID: sim.state.instanceId });
    expect((await client.endpoint(endpointId))?.Status).toBe(1);
    const anonymous = new PortainerClient(api);
    expect((await refused(anonymous.stacks(endpointId))).status).toBe(401);
    anonymous.close();
  });
});
