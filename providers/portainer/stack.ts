/**
 * PortainerStack: a compose stack on one Portainer environment, created by
 * uploading the compose file (multipart, as Portainer requires), updated in
 * place when the file or its variables change, and read back from Portainer
 * so that an edit made in the UI shows up as drift on `pulumi refresh`.
 * Variables Phoenix sends as secrets stay in `secretEnv`, a secret output.
 */
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { parseFailure } from "../../stacks/errors";
import { changedKeys, Checker, diffResult, isUnknown } from "../common";
import { dynamicProvider, type Implementation } from "../dynamic";
import { DynamicResource } from "../dynamic-resource";
import { requiredVariables } from "../../stacks/compose-vars";
import type { Pair, PortainerClient } from "./client";
import { apiClient, checkApi, portainerReplaces, type PortainerApi } from "./common";

export interface PortainerStackInputs {
  api: PortainerApi;
  endpointId: number;
  name: string;
  /** The compose file's text, exactly as Portainer stores it. */
  compose: string;
  env: Record<string, string>;
  secretEnv: Record<string, string>;
}

export interface PortainerStackOutputs extends PortainerStackInputs {
  stackId: number;
  /** 1 active, 2 inactive (portainer.StackStatus). */
  status: number;
}

export interface PortainerStackArgs {
  /** Portainer's API with Phoenix's token (PortainerAdmin.apiToken). */
  api: pulumi.Input<PortainerApi>;
  /** The environment the stack runs on (PortainerEnvironment.endpointId). */
  endpointId: pulumi.Input<number>;
  /** Compose project name: lower case letters, digits, '-', '_' (Portainer normalises anything else away). */
  name: pulumi.Input<string>;
  /** The compose file's text. */
  compose: pulumi.Input<string>;
  /** Plain variables for ${VAR} substitution. */
  env?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Variables whose values are secrets. */
  secretEnv?: pulumi.Input<Record<string, pulumi.Input<string>>>;
}

/** A name Portainer keeps as given (ComposeStackManager.NormalizeStackName), so reads find it again. */
export const STACK_NAME_RE = /^[a-z0-9][-_a-z0-9]*$/;
const VARIABLE_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const portainerStackProvider = dynamicProvider<PortainerStackInputs, PortainerStackOutputs>("portainer/stack");

export class PortainerStack extends DynamicResource {
  declare readonly stackId: pulumi.Output<number>;
  declare readonly status: pulumi.Output<number>;
  declare readonly compose: pulumi.Output<string>;
  declare readonly env: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: PortainerStackArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      portainerStackProvider,
      name,
      { stackId: undefined, status: undefined, ...args, env: args.env ?? {}, secretEnv: pulumi.secret(args.secretEnv ?? {}), api: pulumi.secret(args.api) },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["api", "secretEnv"] }),
      "phoenix/portainer",
      "PortainerStack",
    );
  }
}

function envPairs(i: PortainerStackInputs): Pair[] {
  return Object.entries({ ...i.env, ...i.secretEnv })
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => ({ name, value }));
}

/** Portainer keeps one list: a variable is secret when Phoenix sent it as one. */
function splitEnv(pairs: Pair[] | null, secretKeys: Set<string>): { env: Record<string, string>; secretEnv: Record<string, string> } {
  const env: Record<string, string> = {};
  const secretEnv: Record<string, string> = {};
  for (const p of pairs ?? []) (secretKeys.has(p.name) ? secretEnv : env)[p.name] = p.value;
  return { env, secretEnv };
}

async function current(c: PortainerClient, id: number, like: PortainerStackInputs): Promise<PortainerStackOutputs | undefined> {
  const s = await c.stack(id);
  if (!s) return undefined;
  const compose = await c.stackFile(id);
  return { ...like, endpointId: s.EndpointId, name: s.Name, compose, ...splitEnv(s.Env, new Set(Object.keys(like.secretEnv))), stackId: s.Id, status: s.Status };
}

function sameContent(a: PortainerStackInputs, b: PortainerStackInputs): boolean {
  return a.compose === b.compose && JSON.stringify(envPairs(a)) === JSON.stringify(envPairs(b));
}

async function withApi<T>(api: PortainerApi, run: (c: PortainerClient) => Promise<T>): Promise<T> {
  const c = apiClient(api);
  try {
    return await run(c);
  } finally {
    c.close();
  }
}

function checkVariables(c: Checker, property: string, v: unknown): void {
  if (isUnknown(v)) return;
  if (typeof v !== "object" || v === null || Array.isArray(v)) return c.require(property, false, `${property} must map variable names to values`);
  for (const [k, value] of Object.entries(v)) {
    c.require(`${property}.${k}`, VARIABLE_RE.test(k), `"${k}" is not a variable name`);
    c.require(`${property}.${k}`, isUnknown(value) || typeof value === "string", `${property}.${k} must be a string`);
  }
}

export const implementation: Implementation = {
  async check(_olds: unknown, news: Record<string, unknown>) {
    const c = new Checker(`Portainer stack ${String(news.name)}`);
    checkApi(c, news.api);
    c.string("name", news.name, STACK_NAME_RE, "a compose project name: lower case letters, digits, '-', '_'");
    if (!isUnknown(news.endpointId)) c.require("endpointId", Number.isInteger(news.endpointId) && (news.endpointId as number) > 0, "endpointId must be a Portainer environment id");
    const env = news.env ?? {};
    const secretEnv = news.secretEnv ?? {};
    checkVariables(c, "env", env);
    checkVariables(c, "secretEnv", secretEnv);
    const known = [env, secretEnv].every((e) => !isUnknown(e) && typeof e === "object" && e !== null);
    if (known) {
      for (const k of Object.keys(env as object).filter((k) => k in (secretEnv as object))) c.require(`env.${k}`, false, `${k} is both a plain and a secret variable; keep it in one`);
    }
    if (!isUnknown(news.compose)) {
      let doc: unknown;
      try {
        doc = parseYaml(String(news.compose));
      } catch (err) {
        // Never the parser's message: it quotes the file, which preview prints.
        c.require("compose", false, `the compose file is ${parseFailure(err)}`);
      }
      c.require("compose", typeof doc === "object" && doc !== null && "services" in doc, "compose must be a compose file with a services mapping");
      if (known) {
        const missing = requiredVariables(String(news.compose)).filter((v) => !(v in (env as object)) && !(v in (secretEnv as object)));
        c.require("env", missing.length === 0, `the compose file requires ${missing.join(", ")}: add them to the stack's env or secretEnv`);
      }
    }
    return { inputs: { ...news, env, secretEnv }, failures: c.failures };
  },

  async diff(_id: string, olds: PortainerStackOutputs, news: PortainerStackInputs) {
    const replaces = [...portainerReplaces("api", olds.api, news.api), ...changedKeys(olds, news, ["endpointId", "name"])];
    return diffResult(changedKeys(olds, news, ["api", "compose", "env", "secretEnv"]), replaces);
  },

  async create(inputs: PortainerStackInputs) {
    return withApi(inputs.api, async (c) => {
      const existing = (await c.stacks(inputs.endpointId)).find((s) => s.Name === inputs.name);
      if (existing) {
        const found = await current(c, existing.Id, inputs);
        if (found && sameContent(found, inputs)) return { id: String(existing.Id), outs: found };
        throw new Error(
          `Portainer environment ${inputs.endpointId} already has a stack "${inputs.name}" (id ${existing.Id}) with another compose file or variables. ` +
            `Phoenix adopts a stack only when it matches: delete it in Portainer (its volumes stay) or make the configuration match, then run pulumi up`,
        );
      }
      const created = await c.createStack(inputs.endpointId, inputs.name, inputs.compose, envPairs(inputs));
      const outs = await current(c, created.Id, inputs);
      if (!outs) throw new Error(`Portainer created stack ${inputs.name} (id ${created.Id}) but does not list it; check Portainer's log`);
      return { id: String(created.Id), outs };
    });
  },

  async read(id: string, props: PortainerStackOutputs) {
    return withApi(props.api, async (c) => {
      const found = await current(c, Number(id), props);
      return found ? { id, props: found } : { id: "", props: {} };
    });
  },

  async update(id: string, _olds: PortainerStackOutputs, news: PortainerStackInputs) {
    return withApi(news.api, async (c) => {
      await c.updateStack(Number(id), news.endpointId, news.compose, envPairs(news));
      await removeOrphans(c, news);
      const outs = await current(c, Number(id), news);
      if (!outs) throw new Error(`Portainer stack ${news.name} (id ${id}) disappeared during the update; run pulumi refresh`);
      return { outs };
    });
  },

  async delete(id: string, props: PortainerStackOutputs) {
    // Named volumes and bind-mounted data survive: Portainer runs `compose down` without -v.
    await withApi(props.api, (c) => c.deleteStack(Number(id), props.endpointId));
  },
};

/**
 * Portainer redeploys a compose stack without --remove-orphans and ignores Prune for it
 * (client.updateStack), so the containers of services gone from the file are removed here,
 * found by the labels compose gives them (com.docker.compose.project / .service).
 */
async function removeOrphans(c: PortainerClient, stack: PortainerStackInputs): Promise<void> {
  const doc = parseYaml(stack.compose) as { services?: Record<string, unknown> };
  const declared = new Set(Object.keys(doc.services ?? {}));
  for (const container of await c.projectContainers(stack.endpointId, stack.name)) {
    const service = container.Labels["com.docker.compose.service"];
    if (service !== undefined && !declared.has(service)) await c.removeContainer(stack.endpointId, container.Id);
  }
}
