import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PortainerApi } from "../../providers/portainer/common";
import { ENVIRONMENT_NAME_RE, implementation as environment } from "../../providers/portainer/environment";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { AGENT_URL, bootstrap, registerAgent } from "./helpers";

let sim: PortainerSim;
let api: PortainerApi;
beforeAll(async () => {
  sim = await startPortainerSim({ agents: [AGENT_URL] });
  ({ api } = await bootstrap(sim));
});
afterAll(() => sim.stop());

const creates = () => sim.log.filter((e) => e.method === "POST" && e.path === "/api/endpoints");

describe("PortainerEnvironment against the Portainer simulator", () => {
  it("registers the agent as an agent environment at the agent's own address, once", async () => {
    const first = await registerAgent(api);
    expect(first).toMatchObject({ name: "drphoenix", agentUrl: AGENT_URL, status: 1 });
    expect(sim.state.endpoints).toEqual([expect.objectContaining({ Name: "drphoenix", Type: 2, URL: AGENT_URL, TLSConfig: { TLS: true, TLSSkipVerify: true } })]);
    const again = await registerAgent(api);
    expect(again.endpointId).toBe(first.endpointId);
    expect(creates()).toHaveLength(1);
  });

  it("refuses to adopt an environment of that name that points somewhere else", async () => {
    sim.state.addEndpoint({ Name: "gateway", Type: 2, URL: "tcp://10.0.0.153:9001", PublicURL: "", GroupId: 1, Status: 1, TLSConfig: { TLS: true, TLSSkipVerify: true }, Agent: { Version: "2.33.2" } });
    await expect(environment.create({ api, name: "gateway", agentUrl: AGENT_URL })).rejects.toThrow(/already has an environment named "gateway" \(id \d+, type 2, URL tcp:\/\/10\.0\.0\.153:9001\)/);
  });

  it("reports an unreachable agent with Portainer's own message", async () => {
    await expect(environment.create({ api, name: "ghost", agentUrl: "tcp://10.0.0.199:9001" })).rejects.toThrow(/500 Unable to get environment type/);
  });

  it("read reports the agent down, and the environment gone once deleted", async () => {
    const env = await registerAgent(api);
    sim.setAgentUp(AGENT_URL, false);
    expect((await environment.read(String(env.endpointId), env)).props).toMatchObject({ status: 2 });
    sim.setAgentUp(AGENT_URL, true);
    await environment.delete(String(env.endpointId), env);
    expect((await environment.read(String(env.endpointId), env)).id).toBe("");
  });

  it("accepts what Portainer accepts as a name, hyphens included, and refuses padded names", async () => {
    for (const ok of ["drphoenix", "docker-prod01", "Dr Phoenix", "a.b_c-d"]) expect(ENVIRONMENT_NAME_RE.test(ok)).toBe(true);
    for (const bad of ["", " drphoenix", "drphoenix ", "\t"]) expect(ENVIRONMENT_NAME_RE.test(bad)).toBe(false);
    const hyphen = await registerAgent(api, "docker-prod01");
    expect(hyphen.name).toBe("docker-prod01");
    const bad = await environment.check({}, { api, name: " drphoenix", agentUrl: "http://10.0.0.102:9001" });
    expect(bad.failures?.map((f) => f.property)).toEqual(["name", "agentUrl"]);
  });
});
