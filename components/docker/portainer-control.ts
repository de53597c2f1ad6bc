/**
 * PortainerControl: everything Phoenix does through Portainer's API once the
 * server VM answers: the administrator and Phoenix's token, one environment
 * per agent VM, and each agent's compose stacks. Data flows order it: stacks
 * need their environment's id, everything needs the token.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PortainerAccess } from "../../providers/portainer/client";
import { PortainerAdmin, type PortainerRestart } from "../../providers/portainer/admin";
import { PortainerEnvironment } from "../../providers/portainer/environment";
import { PortainerStack } from "../../providers/portainer/stack";
import type { VmGuest } from "../../stacks/schema";

export interface DockerStackSpec {
  name: string;
  /** The compose file's text. */
  compose: string;
  env: Record<string, string>;
  /** Variable → secret value. */
  secretEnv: Record<string, pulumi.Input<string>>;
}

export interface PortainerAgentSpec {
  vmid: number;
  /** Environment name in Portainer (role.environment). */
  environment: string;
  /** The agent VM's own address and port, e.g. tcp://10.0.0.102:9001. */
  agentUrl: string;
  stacks: DockerStackSpec[];
  /** The resource after which the agent runs. */
  ready?: pulumi.Resource;
  /** What the stacks wait for besides their environment, e.g. their data folders on the NFS server. */
  before?: pulumi.Resource[];
}

export interface PortainerControlArgs {
  /** Portainer's API and the CA root that signed its certificate. */
  access: pulumi.Input<PortainerAccess>;
  /** The administrator's user name (role.adminUser). */
  adminUser: string;
  /** The Pulumi secret portainerAdminPassword. */
  adminPassword: pulumi.Input<string>;
  /** Description of Phoenix's API token, unique per Pulumi stack, e.g. phoenix-prod. */
  tokenDescription: string;
  /** The server VM, restarted when Portainer has disabled itself waiting for an administrator. */
  restart?: pulumi.Input<PortainerRestart>;
  agents: PortainerAgentSpec[];
  /** The server VM and whatever installs Portainer and its certificate. */
  dependsOn?: pulumi.Input<pulumi.Resource>[];
}

/**
 * The stacks a VM declares, with each compose file read and each secret resolved.
 * @param readFile reads a path relative to the project directory (LoadedStack.projectFile)
 * @param secret a Docker stack secret by key (LoadedStack.dockerSecret, which refuses Phoenix's own secrets)
 */
export function dockerStackSpecs(guest: VmGuest, readFile: (file: string, configPath: string) => string, secret: (key: string) => pulumi.Input<string>, guestIndex: number): DockerStackSpec[] {
  return guest.dockerStacks.map((s, i) => ({
    name: s.name,
    compose: `${readFile(s.compose, `guests[${guestIndex}].dockerStacks[${i}].compose`)}\n`,
    env: s.env,
    secretEnv: Object.fromEntries(Object.entries(s.secretEnv).map(([variable, key]) => [variable, secret(key)])),
  }));
}

export class PortainerControl extends pulumi.ComponentResource {
  readonly admin: PortainerAdmin;
  readonly environments: Record<number, PortainerEnvironment> = {};
  /** By `<vmid>/<stack name>`. */
  readonly stacks: Record<string, PortainerStack> = {};

  constructor(name: string, args: PortainerControlArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("phoenix:docker:PortainerControl", name, {}, opts);
    this.admin = new PortainerAdmin(
      `${name}-admin`,
      { access: args.access, username: args.adminUser, password: args.adminPassword, tokenDescription: args.tokenDescription, ...(args.restart ? { restart: args.restart } : {}) },
      { parent: this, dependsOn: args.dependsOn },
    );
    const api = pulumi.all([args.access, this.admin.apiToken]).apply(([access, apiKey]) => ({ ...access, apiKey }));
    for (const agent of args.agents) {
      const environment = new PortainerEnvironment(
        `${name}-env-${agent.vmid}`,
        { api, name: agent.environment, agentUrl: agent.agentUrl },
        { parent: this, dependsOn: agent.ready ? [agent.ready] : [] },
      );
      this.environments[agent.vmid] = environment;
      for (const s of agent.stacks) {
        this.stacks[`${agent.vmid}/${s.name}`] = new PortainerStack(
          `${name}-stack-${agent.vmid}-${s.name}`,
          { api, endpointId: environment.endpointId, name: s.name, compose: s.compose, env: s.env, secretEnv: s.secretEnv },
          { parent: this, dependsOn: agent.before ?? [] },
        );
      }
    }
    this.registerOutputs({ environments: Object.fromEntries(Object.entries(this.environments).map(([vmid, e]) => [vmid, e.endpointId])) });
  }
}
