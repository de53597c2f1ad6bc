import * as crypto from "node:crypto";
import * as fs from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { Authority, cookieValue, parseTokenHeader } from "./auth";
import type { Handler, Sim, SimTiming } from "./core";
import { Faults, type FaultRule } from "./faults";
import { backupHandlers } from "./backup";
import { clusterHandlers, offlineProxyError } from "./cluster";
import { cloneTargetHandlers } from "./clone-target";
import { haHandlers } from "./ha";
import { guestHandlers } from "./guests";
import { miscHandlers } from "./misc";
import { loadApiSchema, type ApiSchema, type PveVersion, type Route } from "./schema";
import { seedInstallerStorages, seedProdLike, SimState } from "./state";
import { snapshotHandlers } from "./snapshots";
import { SimError, TaskRunner } from "./tasks";
import { generateCertificates } from "./tls";
import { checkObject, type ParamErrors, type ParamValue } from "./validate";

export interface SimulatorOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  version?: PveVersion;
  nodeName?: string;
  /** `prod`: the prod host's node, GPUs, disks and storages. `empty`: one bare node with `local` and `local-zfs`. */
  seed?: "prod" | "empty";
  tokenId?: string;
  tokenSecret?: string;
  rootPassword?: string;
  /** Clock for tickets and timestamps, so tests can age a ticket without waiting. */
  now?: () => number;
  timing?: Partial<SimTiming>;
  /** PVE delays every 401 by 3 s; tests set 0. */
  authFailureDelayMs?: number;
  faults?: FaultRule[];
  /** Source of randomness for probabilistic faults. */
  random?: () => number;
  /** Answer errors the pre-5.2 pve-http-server way: the text only in the reason phrase, no `message` in the body. */
  legacyErrorBody?: boolean;
  /**
   * The node's configuration files, when tools on the node (the sshd rig's `pct`) share them:
   * `pull` takes in what those tools changed before a handler runs, `push` writes out what the
   * API changed after it, as pmxcfs makes both see one /etc/pve.
   */
  nodeFiles?: { pull(state: SimState): void; push(state: SimState): void };
}

export interface LogEntry {
  seq: number;
  method: string;
  path: string;
  /** The schema route that matched, e.g. `/nodes/{node}/lxc`. */
  template?: string;
  params: Record<string, ParamValue>;
  status: number;
  user?: string;
  /** Anything but GET, except logging in: what a converged second `pulumi up` must not send. */
  mutating: boolean;
}

export class RequestLog {
  readonly entries: LogEntry[] = [];

  clear(): void {
    this.entries.length = 0;
  }

  mutating(): LogEntry[] {
    return this.entries.filter((e) => e.mutating);
  }

  find(method: string, template: string): LogEntry[] {
    return this.entries.filter((e) => e.method === method && e.template === template);
  }
}

export interface Simulator {
  /** Base URL including `/api2/json`. */
  url: string;
  /** Host and port, e.g. `https://127.0.0.1:8006`. */
  endpoint: string;
  caPem: string;
  caPath: string;
  token: { id: string; secret: string };
  rootPassword: string;
  log: RequestLog;
  faults: Faults;
  state: SimState;
  tasks: TaskRunner;
  schema: ApiSchema;
  /** Task, allocation and lock timings; tests may change them while the simulator runs. */
  timing: SimTiming;
  stop(): Promise<void>;
}

const PUBLIC_ROUTES = new Set(["GET /access/domains", "GET /access/ticket", "POST /access/ticket", "POST /access/vncticket"]);

function normaliseJson(value: unknown): ParamValue | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "boolean") return value ? "1" : "0";
  if (Array.isArray(value)) return value.map((v) => String(normaliseJson(v) ?? ""));
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** pve-http-server decode_urlencoded: pairs split on `&` and `;`, only the first `=` counts, `+` is a space, repeated keys become arrays. */
export function decodeForm(text: string): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  const unescape = (s: string): string => {
    try {
      return decodeURIComponent(s.replace(/\+/g, " "));
    } catch {
      return s;
    }
  };
  for (const pair of text.split(/[&;]/)) {
    if (pair === "") continue;
    const [rawK, rawV] = pair.split("=");
    const k = unescape(rawK ?? "");
    const v = unescape(rawV ?? "");
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

function genericAnswer(route: Route): unknown {
  switch (route.info.returns?.type) {
    case "array":
      return [];
    case "object":
      return {};
    case "string":
      return "";
    case "integer":
    case "number":
    case "boolean":
      return 0;
    default:
      return null;
  }
}

/** Starts a Proxmox VE API simulator over HTTPS on 127.0.0.1. Call `stop()` when done. */
export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const version = opts.version ?? 9;
  const now = opts.now ?? Date.now;
  const schema = loadApiSchema(version);
  const nodeName = opts.nodeName ?? "pve";
  const state = new SimState(now);
  if ((opts.seed ?? "prod") === "prod") seedProdLike(state, nodeName, version);
  else {
    state.addNode(nodeName);
    seedInstallerStorages(state, version);
  }
  const timing: SimTiming = { taskDurationMs: 20, allocationMs: 10, lockTimeoutMs: 10_000, ...opts.timing };
  const tasks = new TaskRunner(now, () => timing.taskDurationMs);
  const sim: Sim = { state, tasks, schema, timing };
  const faults = new Faults(opts.random);
  for (const rule of opts.faults ?? []) faults.add(rule);
  const log = new RequestLog();
  const authority = new Authority(now);
  const token = { id: opts.tokenId ?? "root@pam!phoenix", secret: opts.tokenSecret ?? crypto.randomUUID() };
  const rootPassword = opts.rootPassword ?? crypto.randomBytes(12).toString("base64url");
  const handlers: Record<string, Handler> = { ...guestHandlers(), ...miscHandlers(), ...backupHandlers(), ...clusterHandlers(), ...haHandlers(), ...cloneTargetHandlers() };
  Object.assign(handlers, snapshotHandlers(handlers));
  const authDelay = opts.authFailureDelayMs ?? 0;
  const certs = await generateCertificates();
  let seq = 0;

  const send = (res: ServerResponse, status: number, data: unknown, message?: string, errors?: ParamErrors): void => {
    const reason = status === 200 ? "OK" : (message ?? "").split("\n")[0]?.replace(/[^\x20-\x7e]/g, "") || "Error";
    const body =
      status === 200
        ? { data }
        : { data: null, ...(opts.legacyErrorBody ? {} : { message }), ...(errors ? { errors } : {}) };
    const text = JSON.stringify(body);
    res.writeHead(status, reason, { "Content-Type": "application/json;charset=UTF-8", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  };

  const authenticate = (req: IncomingMessage, method: string): { user: string; kind: "token" | "ticket" } => {
    const header = req.headers.authorization;
    const tok = parseTokenHeader(header);
    if (tok) {
      if (tok.tokenId === token.id && tok.secret === token.secret) return { user: tok.tokenId, kind: "token" };
      throw new SimError(401, "Authentication failed!\n");
    }
    const ticket = cookieValue(req.headers.cookie, "PVEAuthCookie") ?? /PVEAuthCookie=([^;\s]+)/.exec(header ?? "")?.[1];
    if (!ticket) throw new SimError(401, "No ticket\n");
    const user = authority.verifyTicket(ticket);
    if (!user) throw new SimError(401, "Authentication failed!\n");
    if (method !== "GET") {
      const csrf = req.headers.csrfpreventiontoken;
      if (typeof csrf !== "string" || !authority.verifyCsrf(csrf, user)) {
        throw new SimError(401, "Permission denied - invalid csrf token\n");
      }
    }
    return { user, kind: "ticket" };
  };

  const login: Handler = (ctx) => {
    const realm = typeof ctx.params.realm === "string" ? ctx.params.realm : undefined;
    let username = String(ctx.params.username);
    if (!username.includes("@") && realm) username = `${username}@${realm}`;
    const password = String(ctx.params.password);
    const ok = (username === "root@pam" && password === rootPassword) || authority.verifyTicket(password) === username;
    if (!ok) throw new SimError(401, "authentication failure\n");
    const { ticket, csrf } = authority.issueTicket(username);
    return { ticket, CSRFPreventionToken: csrf, username, cap: {} };
  };

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      req.on("error", reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const entry: LogEntry = { seq: ++seq, method, path: url.pathname, params: {}, status: 0, mutating: method !== "GET" && !url.pathname.endsWith("/access/ticket") };
    log.entries.push(entry);
    const reply = (status: number, data: unknown, message?: string, errors?: ParamErrors): void => {
      entry.status = status;
      send(res, status, data, message, errors);
    };
    const body = await readBody(req);
    const m = /^\/api2\/json(\/.*)?$/.exec(url.pathname);
    if (!m) return reply(501, null, "no such uri\n");
    let segments: string[];
    try {
      segments = (m[1] ?? "").split("/").filter((s) => s !== "").map((s) => decodeURIComponent(s));
    } catch {
      return reply(400, null, "invalid URI escape\n");
    }
    const apiPath = `/${segments.join("/")}`;
    const matched = schema.match(method, segments);
    const route = "route" in matched ? matched.route : undefined;
    if (route) entry.template = route.template;
    const template = route?.template ?? apiPath;
    for (const f of faults.take("latency", method, template, apiPath)) {
      await new Promise((r) => setTimeout(r, f.latencyMs ?? 0));
    }
    if (faults.take("drop", method, template, apiPath).length > 0) {
      entry.status = -1;
      req.socket.destroy();
      return;
    }
    if (body.length > 0 && (method === "GET" || method === "DELETE")) {
      return reply(501, null, `Unexpected content for method '${method}'\n`);
    }
    if (!route) return reply(501, null, `Method '${method} ${apiPath}' not implemented\n`);

    let params: Record<string, ParamValue> = {};
    if (body.length > 0) {
      if ((req.headers["content-type"] ?? "").startsWith("application/json")) {
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          return reply(400, null, "malformed JSON body\n");
        }
        for (const [k, v] of Object.entries((json ?? {}) as Record<string, unknown>)) {
          const n = normaliseJson(v);
          if (n !== undefined) params[k] = n;
        }
      } else params = decodeForm(body);
    }
    Object.assign(params, decodeForm(url.search.slice(1)));
    const logged = { ...params };
    for (const k of ["password", "cipassword"]) if (k in logged) logged[k] = "********";
    entry.params = logged;

    const key = `${method} ${route.template}`;
    let user = "";
    if (!PUBLIC_ROUTES.has(key)) {
      let auth: { user: string; kind: "token" | "ticket" };
      try {
        auth = authenticate(req, method);
      } catch (e) {
        if (authDelay > 0) await new Promise((r) => setTimeout(r, authDelay));
        const err = e as SimError;
        return reply(err.status, null, err.message);
      }
      user = auth.user;
      entry.user = user;
      if (auth.kind === "token" && route.info.allowtoken === 0) {
        return reply(403, null, `Permission check failed (URI '${apiPath}' not available with API token, need proper ticket.)\n`);
      }
    }

    const errors: ParamErrors = {};
    for (const [k, v] of Object.entries("uriParams" in matched ? matched.uriParams : {})) {
      if (params[k] !== undefined && params[k] !== v) {
        errors[k] = "duplicate parameter (already defined in URI) with conflicting values!";
      }
      params[k] = v;
    }
    checkObject(route.params, params, route.additionalProperties, errors);
    if (Object.keys(errors).length > 0) return reply(400, null, "Parameter verification failed.\n", errors);

    const unreachable = offlineProxyError(sim, route, params);
    if (unreachable) return reply(unreachable.status, null, unreachable.message);
    const fault5xx = faults.take("http5xx", method, template, apiPath)[0];
    // By default a 500 that PVE gives while a condition lasts (pve-cluster PVE/Cluster.pm
    // check_cfs_quorum), raised before the handler changes anything.
    if (fault5xx) return reply(fault5xx.status ?? 500, null, fault5xx.message ?? "cluster not ready - no quorum?\n");
    const lockFault = faults.take("lockTimeout", method, template, apiPath)[0];
    if (lockFault) {
      const vmid = params.vmid;
      const file = typeof vmid !== "string"
        ? `/var/lock/pve-manager/pve-storage-${String(params.storage ?? "local")}`
        : template.includes("/qemu/")
          ? `/var/lock/qemu-server/lock-${vmid}.conf`
          : `/run/lock/lxc/pve-config-${vmid}.lock`;
      return reply(500, null, lockFault.message ?? `can't lock file '${file}' - got timeout\n`);
    }
    const failTask = faults.take("failTask", method, template, apiPath)[0];
    const dropReply = faults.take("dropReply", method, template, apiPath).length > 0;

    try {
      const handler = key === "POST /access/ticket" ? login : handlers[key];
      opts.nodeFiles?.pull(state);
      let data: unknown;
      try {
        data = handler
          ? await handler({ sim, route, params, user, failTask: failTask ? (failTask.message ?? "injected task failure") : undefined })
          : genericAnswer(route);
      } finally {
        opts.nodeFiles?.push(state);
      }
      if (dropReply) {
        entry.status = -1;
        req.socket.destroy();
        return;
      }
      reply(200, data ?? null);
    } catch (e) {
      if (e instanceof SimError) {
        if (e.status === 401 && authDelay > 0) await new Promise((r) => setTimeout(r, authDelay));
        return reply(e.status, null, e.message, e.errors);
      }
      const msg = e instanceof Error ? e.message : String(e);
      reply(500, null, `${msg}\n`);
    }
  };

  const server = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, 500, null, `pve-sim internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const endpoint = `https://127.0.0.1:${port}`;
  return {
    url: `${endpoint}/api2/json`,
    endpoint,
    caPem: certs.caPem,
    caPath: certs.caPath,
    token,
    rootPassword,
    log,
    faults,
    state,
    tasks,
    schema,
    timing,
    stop: async () => {
      tasks.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(certs.dir, { recursive: true, force: true });
    },
  };
}
