import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { PortainerApi } from "../../providers/portainer/common";
import { implementation as stack, type PortainerStackInputs, type PortainerStackOutputs } from "../../providers/portainer/stack";
import { requiredVariables } from "../../stacks/compose-vars";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { AGENT_URL, bootstrap, registerAgent } from "./helpers";

const COMPOSE = "services:\n  qdrant:\n    image: qdrant/qdrant:v1.15.5\n    environment:\n      QDRANT__SERVICE__API_KEY: ${QDRANT__SERVICE__API_KEY:?set}\n";
let sim: PortainerSim;
let api: PortainerApi;
let endpointId: number;
let inputs: PortainerStackInputs;
beforeAll(async () => {
  sim = await startPortainerSim({ agents: [AGENT_URL] });
  ({ api } = await bootstrap(sim));
  endpointId = (await registerAgent(api)).endpointId;
});
afterAll(() => sim.stop());
beforeEach(() => {
  sim.state.stacks.length = 0;
  inputs = { api, endpointId, name: "qdrant", compose: COMPOSE, env: { LOG_LEVEL: "info" }, secretEnv: { QDRANT__SERVICE__API_KEY: "s3cret" } };
});

const stackCalls = () => sim.mutating().filter((e) => e.path.startsWith("/api/stacks"));

async function created(): Promise<{ id: string; outs: PortainerStackOutputs }> {
  const { id, outs } = await stack.create(inputs);
  return { id, outs: outs as PortainerStackOutputs };
}

describe("PortainerStack against the Portainer simulator", () => {
  it("creates the stack by multipart upload with its variables, secret ones kept apart", async () => {
    const before = stackCalls().length;
    const { outs } = await created();
    expect(stackCalls().slice(before).map((e) => `${e.method} ${e.path}`)).toEqual(["POST /api/stacks/create/standalone/file"]);
    expect(sim.state.stacks[0]).toMatchObject({ Name: "qdrant", EndpointId: endpointId, content: COMPOSE, Env: [{ name: "LOG_LEVEL", value: "info" }, { name: "QDRANT__SERVICE__API_KEY", value: "s3cret" }] });
    expect(outs).toMatchObject({ env: { LOG_LEVEL: "info" }, secretEnv: { QDRANT__SERVICE__API_KEY: "s3cret" }, status: 1 });
  });

  it("is a no-op when nothing changed: diff finds nothing and a retried create adopts", async () => {
    const { id, outs } = await created();
    expect((await stack.diff(id, outs, inputs)).changes).toBe(false);
    const before = stackCalls().length;
    expect((await stack.create(inputs)).id).toBe(id);
    expect(stackCalls().length).toBe(before);
  });

  it("updates in place when the file or a variable changes", async () => {
    const { id, outs } = await created();
    const next = { ...inputs, compose: COMPOSE.replace("v1.15.5", "v1.15.6"), secretEnv: { QDRANT__SERVICE__API_KEY: "rotated" } };
    const d = await stack.diff(id, outs, next);
    expect(d).toMatchObject({ changes: true, replaces: [] });
    await stack.update(id, outs, next);
    expect(stackCalls().filter((e) => e.method === "PUT").map((e) => e.path)).toEqual([`/api/stacks/${id}`]);
    expect(sim.state.stacks[0]).toMatchObject({ content: next.compose, Env: [{ name: "LOG_LEVEL", value: "info" }, { name: "QDRANT__SERVICE__API_KEY", value: "rotated" }] });
  });

  it("reports an edit made in the Portainer UI as drift on read", async () => {
    const { id, outs } = await created();
    sim.editStack(Number(id), { content: COMPOSE.replace("v1.15.5", "latest"), env: [{ name: "LOG_LEVEL", value: "debug" }, { name: "QDRANT__SERVICE__API_KEY", value: "s3cret" }, { name: "EXTRA", value: "1" }] });
    const { props } = await stack.read(id, outs);
    const read = props as PortainerStackOutputs;
    expect(read.compose).toContain("qdrant/qdrant:latest");
    expect(read.env).toEqual({ LOG_LEVEL: "debug", EXTRA: "1" });
    expect((await stack.diff(id, read, inputs)).changes).toBe(true);
  });

  it("refuses to adopt a stack of that name with other content", async () => {
    sim.state.addStack({ Name: "qdrant", Type: 2, EndpointId: endpointId, SwarmId: "", EntryPoint: "docker-compose.yml", Env: null, Status: 1, CreationDate: 0, CreatedBy: "admin", UpdateDate: 0, UpdatedBy: "", content: "services: {}\n" });
    await expect(stack.create(inputs)).rejects.toThrow(/already has a stack "qdrant" \(id \d+\) with another compose file or variables/);
  });

  it("deletes the stack, and read then reports it gone", async () => {
    const { id, outs } = await created();
    await stack.delete(id, outs);
    expect(sim.state.stacks).toHaveLength(0);
    expect(sim.log.at(-1)).toMatchObject({ method: "DELETE", status: 204 });
    expect((await stack.read(id, outs)).id).toBe("");
  });

  it("a new name, environment or Portainer replaces the stack; a token unknown in preview does not", async () => {
    const { id, outs } = await created();
    expect((await stack.diff(id, outs, { ...inputs, name: "vectors" })).replaces).toEqual(["name"]);
    expect((await stack.diff(id, outs, { ...inputs, api: { ...api, url: "https://10.0.0.112:9443" } })).replaces).toEqual(["api"]);
    const preview = { ...inputs, api: { ...api, apiKey: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" } };
    expect(await stack.diff(id, outs, preview)).toMatchObject({ changes: true, replaces: [] });
  });

  it("check names the variables the compose file requires but nobody provides", async () => {
    expect(requiredVariables("a: ${A:?x}\nb: ${B?y}\nc: ${C:-d}\nd: $${E:?no}")).toEqual(["A", "B"]);
    const res = await stack.check({}, { ...inputs, secretEnv: {} });
    expect(res.failures?.map((f) => f.reason)).toEqual([expect.stringContaining("requires QDRANT__SERVICE__API_KEY")]);
    const both = await stack.check({}, { ...inputs, env: { QDRANT__SERVICE__API_KEY: "x" } });
    expect(both.failures?.map((f) => f.property)).toEqual(["env.QDRANT__SERVICE__API_KEY"]);
  });
});
