import * as https from "node:https";
import type { Simulator } from "./server";

export interface RawResponse {
  status: number;
  reason: string;
  body: { data?: unknown; message?: string; errors?: Record<string, string> };
}

export type RawAuth = "token" | "none" | { ticket: string; csrf?: string };

/** Sends one request to a simulator without the client, so tests see the wire as PVE's users do. */
export function rawCall(
  sim: Simulator,
  method: string,
  path: string,
  opts: { form?: string; json?: unknown; query?: string; auth?: RawAuth; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const auth = opts.auth ?? "token";
  const headers: Record<string, string> = { ...opts.headers };
  if (auth === "token") headers.Authorization = `PVEAPIToken=${sim.token.id}=${sim.token.secret}`;
  else if (auth !== "none") {
    headers.Cookie = `PVEAuthCookie=${encodeURIComponent(auth.ticket)}`;
    if (auth.csrf) headers.CSRFPreventionToken = auth.csrf;
  }
  let body = "";
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers["Content-Type"] = "application/json";
  } else if (opts.form !== undefined) {
    body = opts.form;
    headers["Content-Type"] = "application/x-www-form-urlencoded";
  }
  if (body !== "") headers["Content-Length"] = String(Buffer.byteLength(body));
  const url = `${sim.url}${path}${opts.query ? `?${opts.query}` : ""}`;
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca: sim.caPem, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, reason: res.statusMessage ?? "", body: text ? (JSON.parse(text) as RawResponse["body"]) : {} });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Logs in as root@pam with the simulator's password and returns the ticket and CSRF token. */
export async function rootTicket(sim: Simulator): Promise<{ ticket: string; csrf: string }> {
  const res = await rawCall(sim, "POST", "/access/ticket", {
    form: `username=root%40pam&password=${encodeURIComponent(sim.rootPassword)}`,
    auth: "none",
  });
  const data = res.body.data as { ticket: string; CSRFPreventionToken: string };
  return { ticket: data.ticket, csrf: data.CSRFPreventionToken };
}

/** Encodes a parameter object as a PVE form body (values percent-encoded, arrays as repeated keys). */
export function form(params: Record<string, string | number | string[]>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(item))}`);
  }
  return parts.join("&");
}

export const DEBIAN_TEMPLATE = "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst";

/** Puts the Debian template into `local`, as a previous `download` task would have. */
export function seedTemplate(sim: Simulator): string {
  const local = sim.state.storage("local");
  local.volumes.set(DEBIAN_TEMPLATE, { volid: DEBIAN_TEMPLATE, storage: "local", content: "vztmpl", format: "tzst", size: 130 * 1024 ** 2, ctime: 0 });
  return DEBIAN_TEMPLATE;
}

/** Resolves when every task the simulator started so far has stopped. */
export async function settle(sim: Simulator): Promise<void> {
  await Promise.all([...sim.tasks.tasks.values()].map((t) => t.done));
}
