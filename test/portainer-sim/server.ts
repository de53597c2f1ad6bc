/**
 * A Portainer CE 2.x API over HTTPS on 127.0.0.1, for the endpoints Phoenix
 * uses, answering the way Portainer's handlers do (api/http/handler/**, CE
 * develop, 2.19+ routes): status codes, `{message, details}` error bodies
 * (pkg/libhttp/error), multipart where Portainer reads form values
 * (RetrieveMultiPartFormValue / FormFile), JSON where it decodes a payload,
 * and `endpointId` where the handler requires it. It records every request
 * so tests can count mutating calls, and lets a test play the UI user who
 * edits a stack behind Phoenix's back.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { parse as parseYaml } from "yaml";
import { generateCertificates, type SimCertificates } from "../pve-sim/tls";
import {
  ADMINISTRATOR_ROLE,
  AGENT_ON_DOCKER,
  COMPOSE_STACK,
  ENDPOINT_DOWN,
  ENDPOINT_UP,
  normalizeStackName,
  PortainerState,
  stackJson,
  userJson,
  type Pair,
  type SimStack,
  type SimUser,
} from "./state";
import { agentAccepts, type Signer } from "./agent-signature";

export interface PortainerSimOptions {
  /** Reported by /api/system/status. */
  version?: string;
  /** Agents Portainer can reach, as `tcp://host:port`; others fail like an unreachable agent. */
  agents?: string[];
  /** Portainer's default minimum admin password length (InternalAuthSettings.RequiredPasswordLength). */
  requiredPasswordLength?: number;
  /** The server certificate to present; default a fresh one for 127.0.0.1 and localhost. */
  certificates?: SimCertificates;
  /** Milliseconds since the epoch; injectable so a test can let Portainer's five minutes pass. */
  clock?: () => number;
  /**
   * AGENT_SECRET as each process started with it (agent-signature.ts): the server's, and each
   * agent's by `host:port`. Asked at every signed request, so a caller returns what the running
   * process started with, not what a file holds now. Default: none set anywhere.
   */
  agentSecrets?: { server?: () => string | undefined; agent?: (agent: string) => string | undefined };
}

/** api/http/server.go: adminmonitor.New(5*time.Minute, ...). */
export const ADMIN_INIT_TIMEOUT_MS = 5 * 60_000;

export interface PortainerLogEntry {
  method: string;
  path: string;
  status: number;
  /** Anything but GET, except logging in: what a converged second run must not send. */
  mutating: boolean;
}

export interface PortainerSim {
  url: string;
  caPem: string;
  state: PortainerState;
  log: PortainerLogEntry[];
  mutating(): PortainerLogEntry[];
  /** What a user does in the UI's stack editor: new content and/or variables, no API trail in `log`. */
  editStack(id: number, change: { content?: string; env?: Pair[] }): void;
  setAgentUp(url: string, up: boolean): void;
  /** Another Portainer (or anyone) sending the agent a signed request: whether the agent accepts it. */
  signedRequestFrom(url: string, signer: Signer): boolean;
  /** Restarts the Portainer process: its data stays, the admin-initialisation monitor starts over. */
  restart(): void;
  stop(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: string = message,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Ctx {
  req: IncomingMessage;
  url: URL;
  params: string[];
  body: Buffer;
  user?: SimUser;
  via?: "jwt" | "apiKey";
}

type Access = "public" | "authenticated" | "admin";
interface Route {
  method: string;
  path: RegExp;
  access: Access;
  handle(ctx: Ctx): Promise<{ status: number; json?: unknown; headers?: Record<string, string> }>;
}

const JWT_KEY = crypto.randomBytes(32);

function b64url(v: Buffer | string): string {
  return Buffer.from(v).toString("base64url");
}

/** Portainer's JWT carries the user id, name and role (api/jwt: claims{id, username, role}). */
function issueJwt(u: SimUser): string {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ id: u.Id, username: u.Username, role: u.Role, exp: Math.floor(Date.now() / 1000) + 8 * 3600 }));
  const sig = b64url(crypto.createHmac("sha256", JWT_KEY).update(`${head}.${body}`).digest());
  return `${head}.${body}.${sig}`;
}

function verifyJwt(token: string): number | undefined {
  const [head, body, sig] = token.split(".");
  if (!head || !body || !sig) return undefined;
  const expected = b64url(crypto.createHmac("sha256", JWT_KEY).update(`${head}.${body}`).digest());
  if (expected !== sig) return undefined;
  return (JSON.parse(Buffer.from(body, "base64url").toString()) as { id: number }).id;
}

/** request.DecodeAndValidateJSONPayload: the body must be a JSON object, whatever the content type. */
function jsonPayload(ctx: Ctx): Record<string, unknown> {
  try {
    const v = JSON.parse(ctx.body.toString("utf8")) as unknown;
    if (v && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // falls through to Portainer's answer for an undecodable payload
  }
  throw new HttpError(400, "Invalid request payload", "Invalid JSON payload");
}

/** Go's r.FormValue: multipart or urlencoded body first, then the query string; anything else reads as empty. */
async function formOf(ctx: Ctx): Promise<{ value(name: string): string; file(name: string): Promise<string | undefined> }> {
  const type = ctx.req.headers["content-type"] ?? "";
  let form: FormData | undefined;
  if (/^multipart\/form-data|^application\/x-www-form-urlencoded/i.test(type)) {
    try {
      form = await new Response(new Uint8Array(ctx.body), { headers: { "content-type": type } }).formData();
    } catch {
      form = undefined;
    }
  }
  return {
    value: (name) => {
      const v = form?.get(name);
      if (typeof v === "string") return v;
      return ctx.url.searchParams.get(name) ?? "";
    },
    // FormFile needs a part with a file name: a plain field of the same name is "no such file".
    file: async (name) => {
      const v = form?.get(name);
      return v instanceof Blob && (v as Blob & { name?: string }).name ? await v.text() : undefined;
    },
  };
}

/** RetrieveNumericQueryParameter(r, name, false): missing → 400, not a number → 400. */
function requiredNumericQuery(ctx: Ctx, name: string): number {
  const raw = ctx.url.searchParams.get(name) ?? "";
  if (raw === "") throw new HttpError(400, `Invalid query parameter: ${name}`, "Missing query parameter");
  if (!/^-?\d+$/.test(raw)) throw new HttpError(400, `Invalid query parameter: ${name}`, `strconv.Atoi: parsing "${raw}": invalid syntax`);
  return Number(raw);
}

function routeId(ctx: Ctx): number {
  const raw = ctx.params[0] ?? "";
  if (!/^\d+$/.test(raw)) throw new HttpError(400, "Invalid identifier route variable", `strconv.Atoi: parsing "${raw}": invalid syntax`);
  return Number(raw);
}

function pairs(v: unknown, what: string): Pair[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || !v.every((p) => p && typeof p === "object" && typeof p.name === "string" && typeof p.value === "string")) {
    throw new HttpError(400, "Invalid request payload", `${what} must be an array of {name, value}`);
  }
  return v.map((p: Pair) => ({ name: p.name, value: p.value }));
}

/** Portainer parses the compose file before deploying; a file that is not a compose mapping is refused. Returns its services. */
function checkCompose(content: string): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(content);
  } catch (e) {
    throw new HttpError(400, "Invalid stack file", (e as Error).message);
  }
  if (!doc || typeof doc !== "object" || !("services" in doc)) throw new HttpError(400, "Invalid stack file", "services must be a mapping");
  const services = (doc as { services: unknown }).services;
  return services && typeof services === "object" ? Object.keys(services) : [];
}

export async function startPortainerSim(options: PortainerSimOptions = {}): Promise<PortainerSim> {
  const state = new PortainerState();
  for (const a of options.agents ?? []) state.agents.set(agentKey(a), { version: "2.33.2", up: true });
  const minPassword = options.requiredPasswordLength ?? 12;
  const log: PortainerLogEntry[] = [];
  const clock = options.clock ?? Date.now;
  // The server's key pair (main.go initKeyPair): generated once, kept in /data across restarts.
  const serverKey = crypto.randomBytes(32).toString("hex");
  const signedRequestFrom = (url: string, signer: Signer): boolean => {
    const agent = state.agents.get(agentKey(url));
    if (!agent?.up) return false;
    return agentAccepts(agent, options.agentSecrets?.agent?.(agentKey(url)), signer);
  };
  const acceptsServer = (url: string): boolean => signedRequestFrom(url, { key: serverKey, secret: options.agentSecrets?.server?.() });
  // adminmonitor.Monitor: started with the process; at the timeout it latches "disabled" if no admin exists then.
  const monitor = { startedAt: clock(), fired: false, disabled: false };
  const adminInitDisabled = (): boolean => {
    if (!monitor.fired && clock() - monitor.startedAt >= ADMIN_INIT_TIMEOUT_MS) {
      monitor.fired = true;
      monitor.disabled = admins().length === 0;
    }
    return monitor.disabled;
  };

  const admins = () => state.users.filter((u) => u.Role === ADMINISTRATOR_ROLE);
  const endpointById = (id: number) => {
    const e = state.endpoints.find((x) => x.Id === id);
    if (!e) throw new HttpError(404, "Unable to find an environment with the specified identifier inside the database", "Object not found inside the database");
    return e;
  };
  const stackById = (id: number) => {
    const s = state.stacks.find((x) => x.Id === id);
    if (!s) throw new HttpError(404, "Unable to find a stack with the specified identifier inside the database", "Object not found inside the database");
    return s;
  };
  const endpointJson = (e: (typeof state.endpoints)[number]) => {
    // A failed snapshot (agent down, or refusing the server's signature) marks it down (snapshot.go).
    return { ...e, Status: acceptsServer(e.URL) ? e.Status : ENDPOINT_DOWN };
  };

  const createStack = (ctx: Ctx, endpointId: number, rawName: string, content: string, env: Pair[] | null) => {
    endpointById(endpointId);
    const name = normalizeStackName(rawName);
    if (state.stacks.some((s) => s.EndpointId === endpointId && s.Name.toLowerCase() === name)) {
      throw new HttpError(409, `A stack with the normalized name '${name}' already exists`);
    }
    const services = checkCompose(content);
    state.composeUp(endpointId, name, services);
    const now = Math.floor(Date.now() / 1000);
    const stack = state.addStack({ Name: name, Type: COMPOSE_STACK, EndpointId: endpointId, SwarmId: "", EntryPoint: "docker-compose.yml", Env: env, Status: 1, CreationDate: now, CreatedBy: ctx.user!.Username, UpdateDate: 0, UpdatedBy: "", content });
    return { status: 200, json: stackJson(stack) };
  };

  const routes: Route[] = [
    {
      method: "GET",
      path: /^\/api\/system\/status$/,
      access: "public",
      handle: async () => ({ status: 200, json: { Version: options.version ?? "2.33.2", InstanceID: state.instanceId } }),
    },
    {
      // users/admin_check.go: 204 when an administrator exists, 404 otherwise.
      method: "GET",
      path: /^\/api\/users\/admin\/check$/,
      access: "public",
      handle: async () => {
        if (admins().length === 0) throw new HttpError(404, "No administrator account found inside the database", "Object not found inside the database");
        return { status: 204 };
      },
    },
    {
      // users/admin_init.go: {Username, Password}; 409 once an administrator exists.
      method: "POST",
      path: /^\/api\/users\/admin\/init$/,
      access: "public",
      handle: async (ctx) => {
        const p = jsonPayload(ctx);
        const username = typeof p.Username === "string" ? p.Username : "";
        const password = typeof p.Password === "string" ? p.Password : "";
        if (username === "" || username.includes(" ")) throw new HttpError(400, "Invalid request payload", "Invalid username. Must not contain any whitespace");
        if (password === "") throw new HttpError(400, "Invalid request payload", "Invalid password");
        if (admins().length > 0) throw new HttpError(409, "Unable to create administrator user", "An administrator user already exists");
        if (password.length < minPassword) throw new HttpError(400, "Password does not meet the requirements");
        return { status: 200, json: userJson(state.addUser(username, password)) };
      },
    },
    {
      // auth/authenticate.go: {Username, Password} → {jwt}; wrong credentials are 422.
      method: "POST",
      path: /^\/api\/auth$/,
      access: "public",
      handle: async (ctx) => {
        const p = jsonPayload(ctx);
        if (typeof p.Username !== "string" || p.Username === "") throw new HttpError(400, "Invalid request payload", "Invalid username");
        if (typeof p.Password !== "string" || p.Password === "") throw new HttpError(400, "Invalid request payload", "Invalid password");
        const user = state.users.find((u) => u.Username === p.Username);
        if (!user || user.password !== p.Password) throw new HttpError(422, "Invalid credentials", "Unauthorized");
        return { status: 200, json: { jwt: issueJwt(user) } };
      },
    },
    {
      // users/user_create_access_token.go: JWT only, own user only, password re-checked.
      method: "POST",
      path: /^\/api\/users\/([^/]+)\/tokens$/,
      access: "authenticated",
      handle: async (ctx) => {
        if (ctx.via !== "jwt") throw new HttpError(401, "Auth not supported", "Authentication required");
        const p = jsonPayload(ctx);
        const description = typeof p.description === "string" ? p.description : "";
        if (description === "") throw new HttpError(400, "Invalid request payload", "invalid description: cannot be empty");
        if (description.length > 128) throw new HttpError(400, "Invalid request payload", "invalid description: cannot be longer than 128 characters");
        const id = routeId(ctx);
        if (ctx.user!.Id !== id) throw new HttpError(403, "Permission denied to create user access token", "Unauthorized");
        if (typeof p.password !== "string" || p.password === "") throw new HttpError(400, "Invalid request payload", "invalid password: cannot be empty");
        if (p.password !== ctx.user!.password) throw new HttpError(403, "Current password doesn't match", "Current password does not match the password provided. Please try again");
        const { raw, key } = state.addApiKey(id, description);
        const { digest: _digest, ...apiKey } = key;
        // response.JSONWithStatus(w, accessTokenResponse{...}, http.StatusCreated)
        return { status: 201, json: { rawAPIKey: raw, apiKey } };
      },
    },
    {
      method: "GET",
      path: /^\/api\/users\/([^/]+)\/tokens$/,
      access: "authenticated",
      handle: async (ctx) => {
        const id = routeId(ctx);
        if (ctx.user!.Id !== id && ctx.user!.Role !== ADMINISTRATOR_ROLE) throw new HttpError(403, "Permission denied to get user access tokens", "Unauthorized");
        return { status: 200, json: state.apiKeys.filter((k) => k.userId === id).map(({ digest: _d, ...k }) => k) };
      },
    },
    {
      // users/user_remove_access_token.go: the caller or an administrator; the user must exist (404);
      // a missing key is GetAPIKey's error as 500 "API Key not found"; another user's key is 403.
      method: "DELETE",
      path: /^\/api\/users\/([^/]+)\/tokens\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => {
        const id = routeId(ctx);
        const rawKeyId = ctx.params[1] ?? "";
        if (!/^\d+$/.test(rawKeyId)) throw new HttpError(400, "Invalid api-key identifier route variable", `strconv.Atoi: parsing "${rawKeyId}": invalid syntax`);
        const keyId = Number(rawKeyId);
        if (ctx.user!.Role !== ADMINISTRATOR_ROLE && ctx.user!.Id !== id) throw new HttpError(403, "Permission denied to get user access tokens", "Unauthorized");
        if (!state.users.some((u) => u.Id === id)) throw new HttpError(404, "Unable to find a user with the specified identifier inside the database", "Object not found inside the database");
        const key = state.apiKeys.find((k) => k.id === keyId);
        if (!key) throw new HttpError(500, "API Key not found", "Object not found inside the database");
        if (key.userId !== id) throw new HttpError(403, "Permission denied to remove api-key", "Unauthorized");
        state.apiKeys.splice(state.apiKeys.indexOf(key), 1);
        return { status: 204 };
      },
    },
    {
      // endpoints/endpoint_list.go: `name` filters by exact name; the total is in X-Total-Count.
      method: "GET",
      path: /^\/api\/endpoints$/,
      access: "authenticated",
      handle: async (ctx) => {
        const name = ctx.url.searchParams.get("name") ?? "";
        const found = state.endpoints.filter((e) => name === "" || e.Name === name).map(endpointJson);
        return { status: 200, json: found, headers: { "X-Total-Count": String(found.length) } };
      },
    },
    {
      method: "GET",
      path: /^\/api\/endpoints\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => ({ status: 200, json: endpointJson(endpointById(routeId(ctx))) }),
    },
    {
      // endpoints/endpoint_create.go: multipart form; an agent is contacted before it is saved.
      method: "POST",
      path: /^\/api\/endpoints$/,
      access: "admin",
      handle: async (ctx) => {
        const form = await formOf(ctx);
        const name = form.value("Name");
        if (name === "") throw new HttpError(400, "Invalid request payload", "invalid environment name");
        const type = Number(form.value("EndpointCreationType"));
        if (!Number.isInteger(type) || type < 1 || type > 5) {
          throw new HttpError(400, "Invalid request payload", "invalid environment type value. Value must be one of: 1 (Docker environment), 2 (Agent environment), 3 (Azure environment), 4 (Edge Agent environment) or 5 (Local Kubernetes environment)");
        }
        const tls = form.value("TLS") === "true";
        const skipVerify = tls && form.value("TLSSkipVerify") === "true";
        const skipClientVerify = tls && form.value("TLSSkipClientVerify") === "true";
        if (tls && !skipVerify && (await form.file("TLSCACertFile")) === undefined) throw new HttpError(400, "Invalid request payload", "invalid CA certificate file. Ensure that the file is uploaded correctly");
        if (tls && !skipClientVerify && (await form.file("TLSCertFile")) === undefined) throw new HttpError(400, "Invalid request payload", "invalid certificate file. Ensure that the file is uploaded correctly");
        if (state.endpoints.some((e) => e.Name === name)) throw new HttpError(409, "Name is not unique");
        if (type !== AGENT_ON_DOCKER) throw new HttpError(501, "portainer-sim models agent environments only");
        const url = form.value("URL");
        const agent = state.agents.get(agentKey(url));
        // The agent only speaks TLS: Portainer's version probe fails on anything else.
        if (!agent || !agent.up || !tls) throw new HttpError(500, "Unable to get environment type", `Get "https://${agentKey(url)}/ping": dial tcp ${agentKey(url)}: connect: connection refused`);
        // The snapshot that follows the ping is signed (agent-signature.ts).
        if (!acceptsServer(url)) throw new HttpError(500, "Unable to initiate communications with environment", "agent already paired with another Portainer instance");
        const groupId = Number(form.value("GroupID") || "1");
        const endpoint = state.addEndpoint({ Name: name, Type: AGENT_ON_DOCKER, URL: url, PublicURL: form.value("PublicURL"), GroupId: groupId, Status: ENDPOINT_UP, TLSConfig: { TLS: tls, TLSSkipVerify: skipVerify }, Agent: { Version: agent.version } });
        return { status: 200, json: endpointJson(endpoint) };
      },
    },
    {
      method: "DELETE",
      path: /^\/api\/endpoints\/([^/]+)$/,
      access: "admin",
      handle: async (ctx) => {
        const e = endpointById(routeId(ctx));
        state.endpoints.splice(state.endpoints.indexOf(e), 1);
        return { status: 204 };
      },
    },
    {
      // stacks/stack_list.go: filters is a JSON query parameter.
      method: "GET",
      path: /^\/api\/stacks$/,
      access: "authenticated",
      handle: async (ctx) => {
        let filters: { EndpointID?: number } = {};
        const raw = ctx.url.searchParams.get("filters");
        if (raw) {
          try {
            filters = JSON.parse(raw) as typeof filters;
          } catch (e) {
            throw new HttpError(400, "Invalid query parameter: filters", (e as Error).message);
          }
        }
        return { status: 200, json: state.stacks.filter((s) => !filters.EndpointID || s.EndpointId === filters.EndpointID).map(stackJson) };
      },
    },
    {
      method: "GET",
      path: /^\/api\/stacks\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => ({ status: 200, json: stackJson(stackById(routeId(ctx))) }),
    },
    {
      method: "GET",
      path: /^\/api\/stacks\/([^/]+)\/file$/,
      access: "authenticated",
      handle: async (ctx) => ({ status: 200, json: { StackFileContent: stackById(routeId(ctx)).content } }),
    },
    {
      // stacks/create_compose_stack.go, StackCreateDockerStandaloneFile: multipart Name, file, Env (JSON).
      method: "POST",
      path: /^\/api\/stacks\/create\/standalone\/file$/,
      access: "authenticated",
      handle: async (ctx) => {
        const endpointId = requiredNumericQuery(ctx, "endpointId");
        const form = await formOf(ctx);
        const name = form.value("Name");
        if (name === "") throw new HttpError(400, "Invalid request payload", "Invalid stack name");
        const content = await form.file("file");
        if (content === undefined) throw new HttpError(400, "Invalid request payload", "Invalid Compose file. Ensure that the Compose file is uploaded correctly");
        let env: Pair[] | null = null;
        const rawEnv = form.value("Env");
        if (rawEnv !== "") {
          try {
            env = pairs(JSON.parse(rawEnv), "Env");
          } catch {
            throw new HttpError(400, "Invalid request payload", "Invalid Env parameter");
          }
        }
        return createStack(ctx, endpointId, name, content, env);
      },
    },
    {
      // StackCreateDockerStandaloneString: JSON {Name, StackFileContent, Env}.
      method: "POST",
      path: /^\/api\/stacks\/create\/standalone\/string$/,
      access: "authenticated",
      handle: async (ctx) => {
        const endpointId = requiredNumericQuery(ctx, "endpointId");
        const p = jsonPayload(ctx);
        if (typeof p.Name !== "string" || p.Name === "") throw new HttpError(400, "Invalid request payload", "Invalid stack name");
        if (typeof p.StackFileContent !== "string" || p.StackFileContent === "") throw new HttpError(400, "Invalid request payload", "Invalid stack file content");
        return createStack(ctx, endpointId, p.Name, p.StackFileContent, pairs(p.Env, "Env"));
      },
    },
    {
      // stacks/stack_update.go: JSON {StackFileContent, Env, Prune, PullImage}; endpointId is required.
      method: "PUT",
      path: /^\/api\/stacks\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => {
        const id = routeId(ctx);
        const endpointId = requiredNumericQuery(ctx, "endpointId");
        const stack = stackById(id);
        endpointById(endpointId);
        const p = jsonPayload(ctx);
        if (typeof p.StackFileContent !== "string" || p.StackFileContent === "") throw new HttpError(400, "Invalid request payload", "Invalid stack file content");
        // updateComposeStackPayload has no Prune (only updateSwarmStackPayload): a Prune sent here is ignored.
        state.composeUp(endpointId, stack.Name, checkCompose(p.StackFileContent));
        stack.Env = pairs(p.Env, "Env");
        stack.content = p.StackFileContent;
        stack.EndpointId = endpointId;
        stack.UpdateDate = Math.floor(Date.now() / 1000);
        stack.UpdatedBy = ctx.user!.Username;
        return { status: 200, json: stackJson(stack) };
      },
    },
    {
      // stacks/stack_delete.go: without endpointId the stack counts as orphaned and environment 0 is not found.
      method: "DELETE",
      path: /^\/api\/stacks\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => {
        const stack = stackById(routeId(ctx));
        const endpointId = Number(ctx.url.searchParams.get("endpointId") ?? "0");
        if (!state.endpoints.some((e) => e.Id === endpointId)) throw new HttpError(404, "Unable to find the endpoint associated to the stack inside the database", "Object not found inside the database");
        state.composeDown(endpointId, stack.Name);
        state.stacks.splice(state.stacks.indexOf(stack), 1);
        return { status: 204 };
      },
    },
    {
      // The Docker proxy (api/http/proxy/factory/docker): GET /containers/json with a label filter, as the Engine API reads it.
      method: "GET",
      path: /^\/api\/endpoints\/([^/]+)\/docker\/containers\/json$/,
      access: "authenticated",
      handle: async (ctx) => {
        const endpoint = endpointById(routeId(ctx));
        let labels: string[] = [];
        const raw = ctx.url.searchParams.get("filters");
        if (raw) labels = (JSON.parse(raw) as { label?: string[] }).label ?? [];
        const matches = (c: (typeof state.containers)[number]) => labels.every((l) => { const [k, v] = l.split("="); return v === undefined ? k! in c.Labels : c.Labels[k!] === v; });
        return { status: 200, json: state.containers.filter((c) => c.EndpointId === endpoint.Id && matches(c)).map((c) => ({ Id: c.Id, Labels: c.Labels })) };
      },
    },
    {
      // DELETE /containers/{id}?force=true: 204, or 404 "No such container".
      method: "DELETE",
      path: /^\/api\/endpoints\/([^/]+)\/docker\/containers\/([^/]+)$/,
      access: "authenticated",
      handle: async (ctx) => {
        const endpoint = endpointById(routeId(ctx));
        const i = state.containers.findIndex((c) => c.EndpointId === endpoint.Id && c.Id === ctx.params[1]);
        if (i < 0) throw new HttpError(404, `No such container: ${ctx.params[1]}`);
        state.containers.splice(i, 1);
        return { status: 204 };
      },
    },
    {
      // The pre-2.19 create route is gone: POST /api/stacks is not a creation route any more.
      method: "POST",
      path: /^\/api\/stacks$/,
      access: "authenticated",
      handle: async () => {
        throw new HttpError(405, "Method Not Allowed");
      },
    },
  ];

  const authenticate = (ctx: Ctx): void => {
    const apiKey = ctx.req.headers["x-api-key"];
    const bearer = /^Bearer (.+)$/.exec(ctx.req.headers.authorization ?? "")?.[1];
    if (typeof apiKey === "string") {
      const key = state.apiKeyByRaw(apiKey);
      ctx.user = key ? state.users.find((u) => u.Id === key.userId) : undefined;
      ctx.via = "apiKey";
    } else if (bearer) {
      const id = verifyJwt(bearer);
      ctx.user = state.users.find((u) => u.Id === id);
      ctx.via = "jwt";
    }
    if (!ctx.user) throw new HttpError(401, "A valid authorisation token is missing", "Unauthorized");
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const method = req.method ?? "GET";
    let status: number;
    let body: string | undefined;
    const headers: Record<string, string> = {};
    try {
      // adminmonitor WithRedirect wraps every handler: compares the raw RequestURI, query included.
      const requestUri = req.url ?? "/";
      if (adminInitDisabled() && requestUri.startsWith("/api") && requestUri !== "/api/status" && requestUri !== "/api/settings/public") {
        throw new HttpError(303, "Administrator initialization timeout", "Administrator initialization timeout", { "redirect-reason": "AdminInitTimeout" });
      }
      const onPath = routes.filter((r) => r.path.test(url.pathname));
      const route = onPath.find((r) => r.method === method);
      if (!route) throw onPath.length > 0 ? new HttpError(405, "Method Not Allowed") : new HttpError(404, "404 page not found");
      const ctx: Ctx = { req, url, params: (route.path.exec(url.pathname) ?? []).slice(1), body: Buffer.concat(chunks) };
      if (route.access !== "public") authenticate(ctx);
      if (route.access === "admin" && ctx.user!.Role !== ADMINISTRATOR_ROLE) throw new HttpError(403, "Access denied", "Forbidden");
      const out = await route.handle(ctx);
      status = out.status;
      Object.assign(headers, out.headers);
      if (out.json !== undefined) body = JSON.stringify(out.json);
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, "Internal server error", (e as Error).message);
      status = err.status;
      Object.assign(headers, err.headers);
      body = JSON.stringify({ message: err.message, details: err.details });
    }
    log.push({ method, path: url.pathname, status, mutating: method !== "GET" && url.pathname !== "/api/auth" });
    if (body !== undefined) headers["Content-Type"] = "application/json";
    res.writeHead(status, headers);
    res.end(body);
  };

  const certs = options.certificates ?? (await generateCertificates());
  const server = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    handle(req, res).catch((e: Error) => {
      res.writeHead(500);
      res.end(e.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `https://127.0.0.1:${port}`,
    caPem: certs.caPem,
    state,
    log,
    mutating: () => log.filter((e) => e.mutating),
    editStack(id, change) {
      const stack = state.stacks.find((s) => s.Id === id) as SimStack;
      if (change.content !== undefined) stack.content = change.content;
      if (change.env !== undefined) stack.Env = change.env;
    },
    restart() {
      monitor.startedAt = clock();
      monitor.fired = false;
      monitor.disabled = false;
    },
    signedRequestFrom,
    setAgentUp(url, up) {
      const agent = state.agents.get(agentKey(url));
      if (agent) agent.up = up;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(certs.dir, { recursive: true, force: true });
    },
  };
}

function agentKey(url: string): string {
  return url.replace(/^tcp:\/\//, "").replace(/^https?:\/\//, "");
}
