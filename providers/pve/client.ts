import * as https from "node:https";
import { processConcurrency, type PveConcurrency } from "./concurrency";
import { PveApiError, PveConnectionError } from "./errors";
import { encodeForm, type FormParams } from "./form";

export type PveAuth =
  | { kind: "token"; /** `USER@REALM!TOKENID` */ tokenId: string; secret: string }
  | { kind: "ticket"; /** `root@pam` */ username: string; password: string };

export interface PveClientOptions {
  /** `https://host:8006` (a trailing `/api2/json` is accepted). */
  endpoint: string;
  auth: PveAuth;
  /** TLS is verified by default; `caPem` adds a trusted CA, `insecure` turns verification off. */
  tls?: { caPem?: string; insecure?: boolean };
  retry?: {
    /** Total tries of one call, including the first (default 4). */
    attempts?: number;
    /** First backoff; doubles per retry (default 1000 ms). */
    baseDelayMs?: number;
    maxDelayMs?: number;
  };
  /** Per HTTP request (default 60 s). */
  requestTimeoutMs?: number;
  task?: {
    /** Default 1000 ms, as bpg polls. */
    pollIntervalMs?: number;
    /** Default 30 min, bpg's create/clone default. */
    timeoutMs?: number;
    /** Log lines put into a task error (default 20). */
    logTailLines?: number;
  };
  /** Renew a ticket after this age; PVE tickets expire after 2 h (default 1 h). */
  ticketRenewAfterMs?: number;
  /** Clone/allocation operations per storage at once (default 2). */
  perStorageConcurrency?: number;
  /** Coordination of clones and allocations; by default shared by all clients of the endpoint in this process. */
  concurrency?: PveConcurrency;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface RequestOptions {
  /**
   * `false`: one try. `"unapplied"`, for calls that must not run twice (a firewall rule POST
   * inserts one more rule each time): tried again only after an answer that proves the first
   * try changed nothing (see `neverApplied`).
   */
  retry?: boolean | "unapplied";
  /**
   * For creates: a retried call that fails with "already exists" succeeds
   * when this says the existing object is the one asked for (the first try
   * went through but its answer was lost).
   */
  adoptExisting?: () => Promise<boolean>;
}

/**
 * 500s that name a passing condition. PVE answers every `die` of a handler with 500 (pve-http-server),
 * so most 500s are deterministic ("Linked clone feature for '…' is not available", "disk is already
 * at specified size") and repeating the call cannot change them. These can pass: a busy config or
 * storage lock (pve-common PVE/Tools.pm lock_file: "can't lock file '…' - got timeout"), a guest
 * held by another task ("CT 100 is locked (disk)"), a cluster without quorum (pve-cluster
 * check_cfs_quorum: "cluster not ready - no quorum?"), a worker that did not start.
 */
const TRANSIENT_500 = /got timeout|can't lock file|is locked \(|no quorum|got no worker upid/;

/** Why a failed call may be tried again: a lost connection, a gateway/proxy 5xx, or a transient 500. */
export function isTransient(err: unknown): boolean {
  if (err instanceof PveConnectionError) return true;
  if (err instanceof PveApiError) {
    if (err.status === 500) return TRANSIENT_500.test(err.detail);
    // 501 is "not implemented"; 502-504 and pveproxy's 595/596 (no connection to the daemon) pass.
    return err.status > 501;
  }
  return false;
}

/**
 * The failed try certainly changed nothing: PVE refused it before its handler ran (a lock it
 * could not take, no quorum), or the connection was refused before the request was sent. A
 * reset or timed-out connection does not qualify: the call may have been applied.
 */
export function neverApplied(err: unknown): boolean {
  if (err instanceof PveConnectionError) return err.cause.code === "ECONNREFUSED";
  return err instanceof PveApiError && err.status === 500 && /got timeout|can't lock file|no quorum/.test(err.detail);
}

const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Ticket {
  ticket: string;
  csrf: string;
  obtainedAt: number;
}

/** One client per endpoint and credential: HTTP, auth, retries, and the coordination state. */
export class PveClient {
  readonly baseUrl: string;
  readonly concurrency: PveConcurrency;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  private readonly agent: https.Agent;
  private ticket?: Ticket;
  private login?: Promise<Ticket>;

  constructor(readonly options: PveClientOptions) {
    const url = new URL(options.endpoint);
    if (url.protocol !== "https:") throw new Error(`PVE endpoint ${options.endpoint} must use https`);
    this.baseUrl = `${url.origin}${url.pathname.replace(/\/+$/, "").replace(/\/api2\/json$/, "")}/api2/json`;
    this.agent = new https.Agent({
      keepAlive: true,
      ca: options.tls?.caPem,
      rejectUnauthorized: options.tls?.insecure !== true,
    });
    this.concurrency = options.concurrency ?? processConcurrency(this.baseUrl, options.perStorageConcurrency);
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? realSleep;
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  get<T = unknown>(path: string, params: FormParams = {}, opts?: RequestOptions): Promise<T> {
    return this.request<T>("GET", path, params, opts);
  }

  post<T = unknown>(path: string, params: FormParams = {}, opts?: RequestOptions): Promise<T> {
    return this.request<T>("POST", path, params, opts);
  }

  put<T = unknown>(path: string, params: FormParams = {}, opts?: RequestOptions): Promise<T> {
    return this.request<T>("PUT", path, params, opts);
  }

  delete<T = unknown>(path: string, params: FormParams = {}, opts?: RequestOptions): Promise<T> {
    return this.request<T>("DELETE", path, params, opts);
  }

  /**
   * One API call with bounded retries and exponential backoff on transient
   * failures; 4xx answers are never retried.
   */
  async request<T = unknown>(method: string, path: string, params: FormParams = {}, opts: RequestOptions = {}): Promise<T> {
    const attempts = opts.retry === false ? 1 : Math.max(1, this.options.retry?.attempts ?? 4);
    const base = this.options.retry?.baseDelayMs ?? 1000;
    const max = this.options.retry?.maxDelayMs ?? 30_000;
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.once(method, path, params)) as T;
      } catch (err) {
        if (attempt > 1 && opts.adoptExisting && err instanceof PveApiError && /already exists/.test(err.detail)) {
          if (await opts.adoptExisting()) return null as T;
          throw new Error(
            `${err.message}\n  (an earlier try of this call may have created it, but the existing object differs from the one requested: remove it or adopt it explicitly)`,
            { cause: err },
          );
        }
        if (attempt >= attempts || !(opts.retry === "unapplied" ? neverApplied(err) : isTransient(err))) throw err;
        await this.sleep(Math.min(max, base * 2 ** (attempt - 1)));
      }
    }
  }

  private async once(method: string, path: string, params: FormParams): Promise<unknown> {
    const headers: Record<string, string> = {};
    const auth = this.options.auth;
    if (auth.kind === "token") {
      headers.Authorization = `PVEAPIToken=${auth.tokenId}=${auth.secret}`;
    } else {
      const t = await this.currentTicket();
      headers.Cookie = `PVEAuthCookie=${encodeURIComponent(t.ticket)}`;
      if (method !== "GET") headers.CSRFPreventionToken = t.csrf;
    }
    try {
      return await this.send(method, path, params, headers);
    } catch (err) {
      // A ticket can be refused before we would have renewed it (server restart, clock skew): log in once more.
      if (auth.kind === "ticket" && err instanceof PveApiError && err.status === 401) {
        this.ticket = undefined;
        const t = await this.currentTicket();
        headers.Cookie = `PVEAuthCookie=${encodeURIComponent(t.ticket)}`;
        if (method !== "GET") headers.CSRFPreventionToken = t.csrf;
        return this.send(method, path, params, headers);
      }
      throw err;
    }
  }

  private currentTicket(): Promise<Ticket> {
    const auth = this.options.auth;
    if (auth.kind !== "ticket") throw new Error("ticket requested for token auth");
    const renewAfter = this.options.ticketRenewAfterMs ?? 3600_000;
    const t = this.ticket;
    if (t && this.now() - t.obtainedAt < renewAfter) return Promise.resolve(t);
    if (!this.login) {
      this.login = (async () => {
        try {
          let fresh: Ticket | undefined;
          // Renew with the old ticket as password while it is still valid (PVE allows it), else log in.
          if (t && this.now() - t.obtainedAt < 2 * 3600_000) {
            fresh = await this.fetchTicket(auth.username, t.ticket).catch(() => undefined);
          }
          fresh ??= await this.fetchTicket(auth.username, auth.password);
          this.ticket = fresh;
          return fresh;
        } finally {
          this.login = undefined;
        }
      })();
    }
    return this.login;
  }

  private async fetchTicket(username: string, password: string): Promise<Ticket> {
    const obtainedAt = this.now();
    const data = (await this.send("POST", "/access/ticket", { username, password }, {})) as {
      ticket: string;
      CSRFPreventionToken: string;
    };
    return { ticket: data.ticket, csrf: data.CSRFPreventionToken, obtainedAt };
  }

  private send(method: string, path: string, params: FormParams, headers: Record<string, string>): Promise<unknown> {
    const form = encodeForm(params);
    const hasBody = method === "POST" || method === "PUT";
    const url = `${this.baseUrl}${path}${!hasBody && form ? `?${form}` : ""}`;
    const body = hasBody ? form : "";
    const reqHeaders: Record<string, string | number> = { ...headers, Accept: "application/json" };
    if (hasBody) {
      reqHeaders["Content-Type"] = "application/x-www-form-urlencoded";
      reqHeaders["Content-Length"] = Buffer.byteLength(body);
    }
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, agent: this.agent, headers: reqHeaders, timeout: this.options.requestTimeoutMs ?? 60_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => reject(new PveConnectionError(method, path, e)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: { data?: unknown; message?: string; errors?: Record<string, string> } = {};
          try {
            json = text ? (JSON.parse(text) as typeof json) : {};
          } catch {
            json = {};
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            resolve(json.data ?? null);
            return;
          }
          reject(new PveApiError(method, path, status, json.message ?? res.statusMessage ?? "", json.errors ?? {}));
        });
      });
      req.on("timeout", () => req.destroy(Object.assign(new Error("request timed out"), { code: "ETIMEDOUT" })));
      req.on("error", (e) => reject(new PveConnectionError(method, path, e)));
      req.end(body);
    });
  }
}
