/**
 * PortainerEnvironment: a Portainer agent registered as an environment, at
 * the agent's own address (tcp://<docker host>:9001), never a proxy's.
 * Registration is idempotent: an environment of that name pointing at that
 * agent is adopted; one pointing elsewhere is an error, not a silent rename.
 */
import * as pulumi from "@pulumi/pulumi";
import { Checker, diffResult, same } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { AGENT_ENVIRONMENT, type PortainerEndpoint } from "./client";
import { apiClient, checkApi, portainerReplaces, type PortainerApi } from "./common";

export interface PortainerEnvironmentInputs {
  api: PortainerApi;
  name: string;
  /** tcp://host:port of the agent. */
  agentUrl: string;
}

export interface PortainerEnvironmentOutputs extends PortainerEnvironmentInputs {
  endpointId: number;
  /** 1 up, 2 down, as Portainer last saw the agent; `pulumi refresh` updates it. */
  status: number;
}

export interface PortainerEnvironmentArgs {
  /** Portainer's API with Phoenix's token (PortainerAdmin.apiToken). */
  api: pulumi.Input<PortainerApi>;
  /** Environment name shown in Portainer (role.environment). */
  name: pulumi.Input<string>;
  /** The agent's address, e.g. tcp://10.0.0.102:9001. */
  agentUrl: pulumi.Input<string>;
}

/**
 * What Portainer accepts as an environment name (endpoint_create.go, NameField.tsx): any
 * non-empty string not used by another environment, compared exactly. Hyphens, dots and
 * spaces are fine. Leading or trailing whitespace is refused here because it makes a name
 * that looks the same as another but never matches it.
 */
export const ENVIRONMENT_NAME_RE = /^\S(?:.*\S)?$/;
export const AGENT_URL_RE = /^tcp:\/\/[A-Za-z0-9.-]+:\d{1,5}$/;

export const portainerEnvironmentProvider = dynamicProvider<PortainerEnvironmentInputs, PortainerEnvironmentOutputs>("portainer/environment");

export class PortainerEnvironment extends DynamicResource {
  declare readonly endpointId: pulumi.Output<number>;
  declare readonly status: pulumi.Output<number>;

  constructor(name: string, args: PortainerEnvironmentArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      portainerEnvironmentProvider,
      name,
      { endpointId: undefined, status: undefined, ...args, api: pulumi.secret(args.api) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api"] }),
      "phoenix/portainer",
      "PortainerEnvironment",
    );
  }
}

function outputs(inputs: PortainerEnvironmentInputs, e: PortainerEndpoint): PortainerEnvironmentOutputs {
  return { ...inputs, name: e.Name, agentUrl: e.URL, endpointId: e.Id, status: e.Status };
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`Portainer environment ${String(news.name)}`);
    checkApi(c, news.api);
    c.string("name", news.name, ENVIRONMENT_NAME_RE, "a non-empty name without leading or trailing spaces");
    c.string("agentUrl", news.agentUrl, AGENT_URL_RE, "tcp://<agent address>:<port>, e.g. tcp://10.0.0.102:9001");
    return { inputs: news, failures: c.failures };
  },

  async diff(_id: string, olds: PortainerEnvironmentOutputs, news: PortainerEnvironmentInputs) {
    const replaces = [...portainerReplaces("api", olds.api, news.api), ...["name", "agentUrl"].filter((k) => !same((olds as unknown as Record<string, unknown>)[k], (news as unknown as Record<string, unknown>)[k]))];
    return diffResult(same(olds.api, news.api) ? [] : ["api"], replaces, true);
  },

  async create(inputs: PortainerEnvironmentInputs) {
    const c = apiClient(inputs.api);
    try {
      const existing = await c.endpointsNamed(inputs.name);
      const found = existing[0];
      if (found) {
        if (found.Type === AGENT_ENVIRONMENT && found.URL === inputs.agentUrl) return { id: String(found.Id), outs: outputs(inputs, found) };
        throw new Error(
          `Portainer already has an environment named "${inputs.name}" (id ${found.Id}, type ${found.Type}, URL ${found.URL}), not the agent at ${inputs.agentUrl}. ` +
            `Remove or rename it in Portainer, or choose another role.environment`,
        );
      }
      const created = await c.createAgentEndpoint(inputs.name, inputs.agentUrl);
      return { id: String(created.Id), outs: outputs(inputs, created) };
    } finally {
      c.close();
    }
  },

  async read(id: string, props: PortainerEnvironmentOutputs) {
    const c = apiClient(props.api);
    try {
      const e = await c.endpoint(Number(id));
      return e ? { id, props: outputs(props, e) } : { id: "", props: {} };
    } finally {
      c.close();
    }
  },

  async update(id: string, olds: PortainerEnvironmentOutputs, news: PortainerEnvironmentInputs) {
    // Only the token changed: check it reaches the same environment.
    const c = apiClient(news.api);
    try {
      const e = await c.endpoint(Number(id));
      if (!e) throw new Error(`Portainer environment ${olds.name} (id ${id}) no longer exists; run pulumi refresh so Phoenix registers it again`);
      return { outs: outputs(news, e) };
    } finally {
      c.close();
    }
  },

  async delete(id: string, props: PortainerEnvironmentOutputs) {
    const c = apiClient(props.api);
    try {
      await c.deleteEndpoint(Number(id));
    } finally {
      c.close();
    }
  },
};
