/**
 * What a Portainer CE 2.x instance holds, as far as Phoenix touches it: users,
 * API keys, environments (endpoints), compose stacks, and the agents it can
 * reach. Shapes follow the JSON Portainer returns (api/portainer.go: Stack,
 * Endpoint, Pair; api/http/handler/users/user_create_access_token.go).
 */
import * as crypto from "node:crypto";

export const ADMINISTRATOR_ROLE = 1;
/** portainer.DockerComposeStack */
export const COMPOSE_STACK = 2;
/** portainer.AgentOnDockerEnvironment */
export const AGENT_ON_DOCKER = 2;
export const ENDPOINT_UP = 1;
export const ENDPOINT_DOWN = 2;

export interface Pair {
  name: string;
  value: string;
}

export interface SimUser {
  Id: number;
  Username: string;
  Role: number;
  password: string;
}

export interface SimApiKey {
  id: number;
  userId: number;
  description: string;
  prefix: string;
  dateCreated: number;
  lastUsed: number;
  digest: string;
}

export interface SimEndpoint {
  Id: number;
  Name: string;
  Type: number;
  URL: string;
  PublicURL: string;
  GroupId: number;
  Status: number;
  TLSConfig: { TLS: boolean; TLSSkipVerify: boolean };
  Agent: { Version: string };
}

export interface SimStack {
  Id: number;
  Name: string;
  Type: number;
  EndpointId: number;
  SwarmId: string;
  EntryPoint: string;
  Env: Pair[] | null;
  Status: number;
  ProjectPath: string;
  CreationDate: number;
  CreatedBy: string;
  UpdateDate: number;
  UpdatedBy: string;
  content: string;
}

/** A container on an environment, as the Docker Engine API lists it (only what Phoenix reads). */
export interface SimContainer {
  Id: string;
  EndpointId: number;
  Labels: Record<string, string>;
}

/** An agent Portainer can reach, by `host:port`. */
export interface SimAgent {
  version: string;
  up: boolean;
  /** The Portainer key a secretless agent paired with (agent-signature.ts); held in the agent's memory. */
  pairedKey?: string;
}

export class PortainerState {
  readonly users: SimUser[] = [];
  readonly apiKeys: SimApiKey[] = [];
  readonly endpoints: SimEndpoint[] = [];
  readonly stacks: SimStack[] = [];
  readonly agents = new Map<string, SimAgent>();
  readonly containers: SimContainer[] = [];
  private nextId = { user: 1, key: 1, endpoint: 1, stack: 1 };

  constructor(readonly instanceId = crypto.randomUUID()) {}

  addUser(username: string, password: string, role = ADMINISTRATOR_ROLE): SimUser {
    const user = { Id: this.nextId.user++, Username: username, Role: role, password };
    this.users.push(user);
    return user;
  }

  /** The raw key is returned once, as Portainer does; only its digest is kept. */
  addApiKey(userId: number, description: string): { raw: string; key: SimApiKey } {
    const raw = `ptr_${crypto.randomBytes(32).toString("base64")}`;
    const key = { id: this.nextId.key++, userId, description, prefix: raw.slice(0, 7), dateCreated: Math.floor(Date.now() / 1000), lastUsed: 0, digest: digest(raw) };
    this.apiKeys.push(key);
    return { raw, key };
  }

  apiKeyByRaw(raw: string): SimApiKey | undefined {
    const d = digest(raw);
    return this.apiKeys.find((k) => k.digest === d);
  }

  addEndpoint(e: Omit<SimEndpoint, "Id">): SimEndpoint {
    const endpoint = { Id: this.nextId.endpoint++, ...e };
    this.endpoints.push(endpoint);
    return endpoint;
  }

  /**
   * What `docker compose up -d` leaves running for a project: a container per service in the
   * file, the existing ones kept; containers of services no longer in the file are not touched
   * (Portainer runs up without --remove-orphans: libstack composeplugin Deploy).
   */
  composeUp(endpointId: number, project: string, services: string[]): void {
    for (const service of services) {
      const exists = this.containers.some((c) => c.EndpointId === endpointId && c.Labels["com.docker.compose.project"] === project && c.Labels["com.docker.compose.service"] === service);
      if (!exists) this.containers.push({ Id: crypto.randomBytes(32).toString("hex"), EndpointId: endpointId, Labels: { "com.docker.compose.project": project, "com.docker.compose.service": service } });
    }
  }

  /** `docker compose down --remove-orphans` (libstack composeplugin Remove): every container of the project goes. */
  composeDown(endpointId: number, project: string): void {
    for (let i = this.containers.length - 1; i >= 0; i--) {
      const c = this.containers[i]!;
      if (c.EndpointId === endpointId && c.Labels["com.docker.compose.project"] === project) this.containers.splice(i, 1);
    }
  }

  addStack(s: Omit<SimStack, "Id" | "ProjectPath">): SimStack {
    const id = this.nextId.stack++;
    const stack = { Id: id, ProjectPath: `/data/compose/${id}`, ...s };
    this.stacks.push(stack);
    return stack;
  }
}

function digest(raw: string): string {
  return crypto.createHash("sha256").update(raw).digest("hex");
}

/** ComposeStackManager.NormalizeStackName: lower case, then drop anything outside [-_a-z0-9]. */
export function normalizeStackName(name: string): string {
  return name.toLowerCase().replace(/[^-_a-z0-9]+/g, "");
}

/** The JSON Portainer returns for a stack: the compose text is only served by /stacks/{id}/file. */
export function stackJson(s: SimStack): Omit<SimStack, "content"> {
  const { content: _content, ...rest } = s;
  return rest;
}

export function userJson(u: SimUser): Omit<SimUser, "password"> {
  const { password: _password, ...rest } = u;
  return rest;
}
