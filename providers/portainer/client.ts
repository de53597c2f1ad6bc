/**
 * Portainer CE 2.x API client for what Phoenix does: admin initialisation,
 * API tokens, agent environments and compose stacks. Routes and payloads are
 * the ones in Portainer's handlers (portainer/portainer, api/http/handler):
 *   GET  /api/users/admin/check               204 admin exists, 404 none (admin_check.go)
 *   POST /api/users/admin/init                JSON {Username, Password} (admin_init.go)
 *   POST /api/auth                            JSON {Username, Password} → {jwt}; 422 bad credentials (authenticate.go)
 *   POST /api/users/{id}/tokens               JWT only; JSON {description, password} → 201 {rawAPIKey, apiKey} (user_create_access_token.go)
 *   DELETE /api/users/{id}/tokens/{keyID}     caller or an admin; 204; a missing key is 500 "API Key not found" (user_remove_access_token.go)
 *   POST /api/endpoints                       multipart: Name, EndpointCreationType=2, URL, TLS, TLSSkipVerify, TLSSkipClientVerify (endpoint_create.go)
 *   POST /api/stacks/create/standalone/file   ?endpointId=N, multipart: Name, file, Env as a JSON [{name, value}] (create_compose_stack.go)
 *   PUT  /api/stacks/{id}                     ?endpointId=N, JSON {StackFileContent, Env, PullImage}; Prune is Swarm's only (stack_update.go)
 *   DELETE /api/stacks/{id}                   ?endpointId=N, else the stack counts as orphaned (stack_delete.go)
 * Errors are `{message, details}` (pkg/libhttp/error/error.go).
 * Five minutes after start without an administrator, every /api path but
 * /api/status and /api/settings/public answers 303 "Administrator initialization
 * timeout" with the header redirect-reason: AdminInitTimeout, until Portainer
 * restarts (api/adminmonitor/admin_monitor.go, WithRedirect; api/http/server.go
 * starts it with 5*time.Minute). Read at portainer/portainer cc75167 (API 2.23.0):
 * the mirror holds no 2.33 tag; unverified that 2.33.2 differs.
 * TLS is verified by default: Portainer's certificate comes from Step-CA, whose root is `caPem`.
 */
import * as https from "node:https";

export interface PortainerAccess {
  /** https://host:9443 */
  url: string;
  /** PEM of the CA that signed Portainer's certificate. */
  caPem?: string;
  /** Only for a first bootstrap before the Step-CA certificate is in place. */
  insecure?: boolean;
}

export type PortainerAuth = { kind: "none" } | { kind: "jwt"; jwt: string } | { kind: "apiKey"; key: string };

export interface Pair {
  name: string;
  value: string;
}

export interface PortainerEndpoint {
  Id: number;
  Name: string;
  Type: number;
  URL: string;
  /** 1 up, 2 down (portainer.EndpointStatus). */
  Status: number;
}

export interface PortainerStack {
  Id: number;
  Name: string;
  Type: number;
  EndpointId: number;
  Env: Pair[] | null;
  Status: number;
}

export interface PortainerApiKey {
  id: number;
  userId: number;
  description: string;
}

/** EndpointCreationType 2: an agent on a Docker host (endpoint_create.go, agentEnvironment). */
export const AGENT_ENVIRONMENT = 2;
export const ENDPOINT_STATUS_UP = 1;

export class PortainerApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly apiMessage: string,
    readonly details: string,
    /** The redirect-reason header, set with Portainer's 303s. */
    readonly redirectReason?: string,
  ) {
    super(`Portainer ${method} ${path}: ${status} ${apiMessage}${details && details !== apiMessage ? ` (${details})` : ""}`);
  }
}

/** adminmonitor.RedirectReasonAdminInitTimeout */
export const ADMIN_INIT_TIMEOUT = "AdminInitTimeout";

/** Portainer disabled its API because nobody initialised it within five minutes of its start. */
export function isAdminInitTimeout(err: unknown): boolean {
  return err instanceof PortainerApiError && err.status === 303 && err.redirectReason === ADMIN_INIT_TIMEOUT;
}

type Body = { json: unknown } | { form: FormData } | undefined;

/**
 * What an unexpected answer may show in an error: Portainer's own error fields
 * (pkg/libhttp/error: {message, details}), or a short plain-text line (the mux's
 * "404 page not found", a proxy's reason). Any other body stays out: an answer with an
 * unexpected status can still carry a secret (a created API key's rawAPIKey).
 */
export function errorText(text: string): { message: string; details: string } {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      const { message, details } = parsed as { message?: unknown; details?: unknown };
      if (typeof message === "string") return { message, details: typeof details === "string" ? details : "" };
    }
    return { message: `(a JSON answer of ${text.length} bytes, not shown)`, details: "" };
  } catch {
    const line = text.trim();
    return { message: line.length <= 200 && !line.includes("\n") ? line : `(an answer of ${text.length} bytes, not shown)`, details: "" };
  }
}

export class PortainerClient {
  private readonly agent: https.Agent;
  private readonly base: URL;

  constructor(
    readonly access: PortainerAccess,
    private auth: PortainerAuth = { kind: "none" },
  ) {
    this.base = new URL(access.url);
    if (this.base.protocol !== "https:") throw new Error(`Portainer URL ${access.url} must use https: the API carries the admin password and API token`);
    this.agent = new https.Agent({ keepAlive: true, ca: access.caPem, rejectUnauthorized: access.insecure !== true });
  }

  close(): void {
    this.agent.destroy();
  }

  withAuth(auth: PortainerAuth): PortainerClient {
    return new PortainerClient(this.access, auth);
  }

  async request<T>(method: string, path: string, body?: Body, expect: number[] = [200]): Promise<{ status: number; data: T }> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.auth.kind === "jwt") headers.Authorization = `Bearer ${this.auth.jwt}`;
    if (this.auth.kind === "apiKey") headers["X-API-Key"] = this.auth.key;
    let payload: Buffer | undefined;
    if (body && "json" in body) {
      payload = Buffer.from(JSON.stringify(body.json));
      headers["Content-Type"] = "application/json";
    } else if (body) {
      // Response serializes FormData to multipart/form-data with its boundary, as fetch would send it.
      const encoded = new Response(body.form);
      payload = Buffer.from(await encoded.arrayBuffer());
      headers["Content-Type"] = encoded.headers.get("content-type")!;
    }
    if (payload) headers["Content-Length"] = String(payload.length);
    const url = new URL(path, this.base);
    const { status, text, redirectReason } = await new Promise<{ status: number; text: string; redirectReason?: string }>((resolve, reject) => {
      const req = https.request(url, { method, headers, agent: this.agent, timeout: 60_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        const reason = res.headers["redirect-reason"];
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8"), ...(typeof reason === "string" ? { redirectReason: reason } : {}) }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`Portainer ${method} ${url.pathname}: no answer within 60 s`)));
      req.on("error", (e) => reject(new Error(`Portainer ${method} ${url.pathname} at ${this.base.origin}: ${e.message}`, { cause: e })));
      req.end(payload);
    });
    if (!expect.includes(status)) {
      const { message, details } = errorText(text);
      throw new PortainerApiError(method, url.pathname, status, message, details, redirectReason);
    }
    return { status, data: (text === "" ? undefined : JSON.parse(text)) as T };
  }

  async systemStatus(): Promise<{ Version: string; InstanceID: string }> {
    return (await this.request<{ Version: string; InstanceID: string }>("GET", "/api/system/status")).data;
  }

  /** The only reliable probe: 204 means an administrator exists, 404 means none; anything else is an error. */
  async adminExists(): Promise<boolean> {
    const { status } = await this.request("GET", "/api/users/admin/check", undefined, [204, 404]);
    return status === 204;
  }

  async initAdmin(username: string, password: string): Promise<{ Id: number; Username: string }> {
    return (await this.request<{ Id: number; Username: string }>("POST", "/api/users/admin/init", { json: { Username: username, Password: password } })).data;
  }

  /** Logs in; returns the JWT and the user id it carries (Portainer's claims: {id, username, role}). */
  async login(username: string, password: string): Promise<{ jwt: string; userId: number }> {
    const { jwt } = (await this.request<{ jwt: string }>("POST", "/api/auth", { json: { Username: username, Password: password } })).data;
    const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { id?: unknown };
    if (typeof claims.id !== "number") throw new Error(`Portainer at ${this.base.origin} returned a token without a user id; is this Portainer CE 2.x?`);
    return { jwt, userId: claims.id };
  }

  /** Needs JWT auth: Portainer refuses to mint an API key with an API key. 201 (user_create_access_token.go: response.JSONWithStatus(..., http.StatusCreated)). */
  async createApiKey(userId: number, description: string, password: string): Promise<{ raw: string; key: PortainerApiKey }> {
    const { data } = await this.request<{ rawAPIKey: string; apiKey: PortainerApiKey }>("POST", `/api/users/${userId}/tokens`, { json: { description, password } }, [201]);
    return { raw: data.rawAPIKey, key: data.apiKey };
  }

  async apiKeys(userId: number): Promise<PortainerApiKey[]> {
    return (await this.request<PortainerApiKey[]>("GET", `/api/users/${userId}/tokens`)).data;
  }

  /**
   * Deletes a key; one already gone is not an error. Portainer answers a missing key with
   * 500 "API Key not found" (user_remove_access_token.go: GetAPIKey's error becomes
   * InternalServerError), and a missing user with 404.
   */
  async deleteApiKey(userId: number, keyId: number): Promise<void> {
    try {
      await this.request("DELETE", `/api/users/${userId}/tokens/${keyId}`, undefined, [204, 404]);
    } catch (err) {
      if (!(err instanceof PortainerApiError && err.status === 500 && err.apiMessage === "API Key not found")) throw err;
    }
  }

  async endpointsNamed(name: string): Promise<PortainerEndpoint[]> {
    const { data } = await this.request<PortainerEndpoint[]>("GET", `/api/endpoints?${new URLSearchParams({ name })}`);
    // Older releases ignore `name` and list everything: filter here as well.
    return data.filter((e) => e.Name === name);
  }

  /** undefined when Portainer has no such environment. */
  async endpoint(id: number): Promise<PortainerEndpoint | undefined> {
    const { status, data } = await this.request<PortainerEndpoint>("GET", `/api/endpoints/${id}`, undefined, [200, 404]);
    return status === 404 ? undefined : data;
  }

  /**
   * Registers an agent. The agent serves TLS with its own certificate and Portainer authenticates
   * to it by signature, so Portainer neither verifies the agent's certificate nor presents one:
   * TLSSkipVerify and TLSSkipClientVerify must both be set, or Portainer asks for the files.
   */
  async createAgentEndpoint(name: string, agentUrl: string): Promise<PortainerEndpoint> {
    const form = new FormData();
    form.append("Name", name);
    form.append("EndpointCreationType", String(AGENT_ENVIRONMENT));
    form.append("URL", agentUrl);
    form.append("TLS", "true");
    form.append("TLSSkipVerify", "true");
    form.append("TLSSkipClientVerify", "true");
    return (await this.request<PortainerEndpoint>("POST", "/api/endpoints", { form })).data;
  }

  async deleteEndpoint(id: number): Promise<void> {
    await this.request("DELETE", `/api/endpoints/${id}`, undefined, [204, 404]);
  }

  async stacks(endpointId: number): Promise<PortainerStack[]> {
    const { data } = await this.request<PortainerStack[] | null>("GET", `/api/stacks?${new URLSearchParams({ filters: JSON.stringify({ EndpointID: endpointId }) })}`);
    return (data ?? []).filter((s) => s.EndpointId === endpointId);
  }

  async stack(id: number): Promise<PortainerStack | undefined> {
    const { status, data } = await this.request<PortainerStack>("GET", `/api/stacks/${id}`, undefined, [200, 404]);
    return status === 404 ? undefined : data;
  }

  async stackFile(id: number): Promise<string> {
    return (await this.request<{ StackFileContent: string }>("GET", `/api/stacks/${id}/file`)).data.StackFileContent;
  }

  /** A standalone (compose) stack from an uploaded file: Portainer reads it with FormFile("file"). */
  async createStack(endpointId: number, name: string, compose: string, env: Pair[]): Promise<PortainerStack> {
    const form = new FormData();
    form.append("Name", name);
    form.append("file", new Blob([compose], { type: "application/x-yaml" }), "docker-compose.yml");
    form.append("Env", JSON.stringify(env));
    return (await this.request<PortainerStack>("POST", `/api/stacks/create/standalone/file?endpointId=${endpointId}`, { form })).data;
  }

  /**
   * Redeploys a compose stack with `docker compose up -d` (updateComposeStack; libstack's composeplugin
   * Deploy adds no --remove-orphans), so services gone from the file keep running: removeOrphans
   * takes them away. Prune is read for Swarm stacks only, so none is sent.
   */
  async updateStack(id: number, endpointId: number, compose: string, env: Pair[]): Promise<PortainerStack> {
    return (await this.request<PortainerStack>("PUT", `/api/stacks/${id}?endpointId=${endpointId}`, { json: { StackFileContent: compose, Env: env, PullImage: false } })).data;
  }

  /**
   * The containers of a compose project on an environment, through Portainer's Docker proxy
   * (GET /api/endpoints/{id}/docker/containers/json, the Docker Engine API's list with a label
   * filter on com.docker.compose.project, the label compose puts on every container it creates).
   */
  async projectContainers(endpointId: number, project: string): Promise<{ Id: string; Labels: Record<string, string> }[]> {
    const filters = JSON.stringify({ label: [`com.docker.compose.project=${project}`] });
    return (await this.request<{ Id: string; Labels: Record<string, string> }[]>("GET", `/api/endpoints/${endpointId}/docker/containers/json?${new URLSearchParams({ all: "1", filters })}`)).data;
  }

  /** DELETE /containers/{id}?force=true through the Docker proxy: stops and removes it. */
  async removeContainer(endpointId: number, containerId: string): Promise<void> {
    await this.request("DELETE", `/api/endpoints/${endpointId}/docker/containers/${encodeURIComponent(containerId)}?force=true`, undefined, [204, 404]);
  }

  async deleteStack(id: number, endpointId: number): Promise<void> {
    await this.request("DELETE", `/api/stacks/${id}?endpointId=${endpointId}`, undefined, [204, 404]);
  }
}
