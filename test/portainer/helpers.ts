import { implementation as admin, type PortainerAdminInputs, type PortainerAdminOutputs } from "../../providers/portainer/admin";
import type { PortainerApi } from "../../providers/portainer/common";
import { implementation as environment, type PortainerEnvironmentOutputs } from "../../providers/portainer/environment";
import type { PortainerSim } from "../portainer-sim/server";

export const AGENT_URL = "tcp://10.0.0.102:9001";
export const PASSWORD = "correct-horse-battery";

export function adminInputs(sim: PortainerSim, over: Partial<PortainerAdminInputs> = {}): PortainerAdminInputs {
  return { access: { url: sim.url, caPem: sim.caPem }, username: "admin", password: PASSWORD, tokenDescription: "phoenix-test", ...over };
}

/** An initialised Portainer and Phoenix's token, the way the stack builds it. */
export async function bootstrap(sim: PortainerSim): Promise<{ admin: PortainerAdminOutputs; api: PortainerApi }> {
  const { outs } = await admin.create(adminInputs(sim));
  const out = outs as PortainerAdminOutputs;
  return { admin: out, api: { url: sim.url, caPem: sim.caPem, apiKey: out.apiToken } };
}

export async function registerAgent(api: PortainerApi, name = "drphoenix"): Promise<PortainerEnvironmentOutputs> {
  return (await environment.create({ api, name, agentUrl: AGENT_URL })).outs as PortainerEnvironmentOutputs;
}
