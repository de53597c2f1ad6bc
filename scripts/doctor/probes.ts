/**
 * The probes: HTTP(S) through curl on the node or in a guest (which also tells a
 * refused TCP connect from a dropped one), HTTPS from here with the certificate
 * chain inspected against the CA root, and the in-guest state of a service.
 * Each turns raw output into findings; the commands are what an operator would run.
 */
import * as https from "node:https";
import type { TLSSocket } from "node:tls";
import { X509Certificate } from "node:crypto";
import { shellQuote } from "../../providers/ssh";
import type { ExecResult } from "./channels";
import type { Failure, Status } from "./diagnose";
import type { Address, Check } from "./plan";

export interface Result {
  check: string;
  status: Status;
  detail: string;
  failure?: Failure;
}

const ok = (check: string, detail: string): Result => ({ check, status: "ok", detail });
const fail = (check: string, failure: Failure, detail: string): Result => ({ check, status: "fail", detail, failure });

// --- curl -------------------------------------------------------------------------------

export interface CurlRequest {
  url: string;
  /** host:port:address:port, so the URL (Host header and SNI) stays the name clients use. */
  connectTo?: string;
  /** CA file to verify with, below the machine's root ("$R", empty outside tests); unverified when absent. */
  caFile?: string;
}

/** Prints "<http status> <curl exit code>": the command itself always succeeds, so its output is the verdict. */
export function curlCommand(req: CurlRequest): string {
  const tls = req.caFile ? `--cacert "$R"${shellQuote(req.caFile)}` : "-k";
  const connectTo = req.connectTo ? ` --connect-to ${shellQuote(req.connectTo)}` : "";
  return `R="\${PHOENIX_ROOT:-}"; curl -sS -o /dev/null --connect-timeout 3 --max-time 10 ${tls}${connectTo} -w '%{http_code}' ${shellQuote(req.url)}; echo " $?"`;
}

export type HttpOutcome = { status: number } | { failure: Failure; message: string };

// curl's exit codes (curl(1), "EXIT CODES").
const CURL_REFUSED = 7;
const CURL_TIMEOUT = 28;
const CURL_TLS = new Set([35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91]);

export function parseCurl(res: ExecResult): HttpOutcome {
  const m = /(\d{3}) (\d+)\s*$/.exec(res.stdout);
  const message = res.stderr.trim().split("\n").at(-1) ?? "";
  if (!m) return { failure: "probe-error", message: `curl did not run (exit ${res.code}): ${message || res.stdout.trim()}` };
  const exit = Number(m[2]);
  if (exit === 0) return { status: Number(m[1]) };
  if (exit === CURL_REFUSED) return { failure: "refused", message };
  if (exit === CURL_TIMEOUT) return { failure: "timeout", message };
  if (CURL_TLS.has(exit)) return { failure: "tls-error", message };
  return { failure: exit === 127 ? "probe-error" : "backend-down", message: message || `curl exit ${exit}` };
}

/** A status that shows the request reached what serves it: 401/403 only ask for credentials the doctor does not have. */
const reached = (status: number) => status < 400 || status === 401 || status === 403;

/** Host → service: TCP connect and the health path, read from one curl run. */
export function hostResults(check: Extract<Check, { layer: "host" }>, outcome: HttpOutcome): Result[] {
  const target = `${check.target.host}:${check.target.port}`;
  if ("failure" in outcome) {
    // A drop the declared firewall predicts is the stack working as written, not a fault.
    if (outcome.failure === "timeout" && check.nodeAdmission.verdict === "blocked") {
      return [{ check: "tcp", status: "skip", detail: `dropped as declared (${check.nodeAdmission.why})` }, { check: "health", status: "skip", detail: "not reachable from the node" }];
    }
    const tcp = outcome.failure === "refused" || outcome.failure === "timeout" ? fail("tcp", outcome.failure, `${target}: ${outcome.message}`) : ok("tcp", `${target} accepts connections`);
    return [tcp, fail("health", outcome.failure, `${check.scheme}://${target}${check.path}: ${outcome.message}`)];
  }
  const health = reached(outcome.status) ? ok("health", `${check.path} → ${outcome.status}`) : fail("health", "unhealthy", `${check.path} → HTTP ${outcome.status}`);
  return [ok("tcp", `${target} accepts connections`), health];
}

/** Gateway → Traefik → service: what Traefik answers for the service's host. */
export function traefikResults(check: Extract<Check, { layer: "traefik" }>, outcome: HttpOutcome): Result[] {
  const what = `https://${check.host}${check.path} via ${check.traefik.host}:${check.traefik.port}`;
  if ("failure" in outcome) return [fail("route", outcome.failure, `${what}: ${outcome.message}`)];
  return [routeResult(outcome.status, what, "Traefik")];
}

function routeResult(status: number, what: string, by: string): Result {
  if (reached(status)) return ok("route", `${what} → ${status}`);
  if (status === 404) return fail("route", "route-missing", `${what} → 404 from ${by}: no route matches`);
  if (status === 502 || status === 503 || status === 504) return fail("route", "backend-down", `${what} → ${status} from ${by}`);
  return fail("route", "unhealthy", `${what} → HTTP ${status}`);
}

// --- HTTPS from here, with the certificate inspected -----------------------------------

export interface HttpsOutcome {
  /** The presented chain, leaf first; empty when no handshake completed. */
  chain: X509Certificate[];
  result: HttpOutcome;
}

/**
 * GET over TLS with verification left to `inspectChain`: Node's own check stops at the
 * first problem, while the doctor wants to say which one it is (issuer, name, dates).
 */
export function httpsGet(connect: Address, servername: string, path: string, timeoutMs = 10_000): Promise<HttpsOutcome> {
  return new Promise((resolve) => {
    let chain: X509Certificate[] = [];
    const req = https.request({ host: connect.host, port: connect.port, servername, path, headers: { host: servername }, rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => resolve({ chain, result: { status: res.statusCode ?? 0 } }));
    });
    req.on("socket", (socket) => {
      socket.once("secureConnect", () => {
        chain = presentedChain(socket as TLSSocket);
      });
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => {
      const failure: Failure = err.code === "ECONNREFUSED" ? "refused" : err.code === "ETIMEDOUT" ? "timeout" : chain.length === 0 ? "tls-error" : "backend-down";
      resolve({ chain, result: { failure, message: err.message } });
    });
    req.end();
  });
}

function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert = socket.getPeerCertificate(true);
  while (cert && cert.raw && chain.length < 10) {
    const x = new X509Certificate(cert.raw);
    if (chain.some((c) => c.fingerprint256 === x.fingerprint256)) break;
    chain.push(x);
    cert = cert.issuerCertificate;
  }
  return chain;
}

const subjectCN = (c: X509Certificate) => /CN=([^\n,]+)/.exec(c.subject)?.[1] ?? c.subject.replace(/\n/g, ", ");
const issuerCN = (c: X509Certificate) => /CN=([^\n,]+)/.exec(c.issuer)?.[1] ?? c.issuer.replace(/\n/g, ", ");
const DAY = 86_400_000;

/**
 * Chain to the CA root, host name, and dates of every certificate on the path. A leaf
 * past two thirds of its lifetime is a warning: renewal should have happened by then.
 */
export function inspectChain(chain: readonly X509Certificate[], root: X509Certificate | undefined, host: string, now: Date): Result[] {
  const leaf = chain[0];
  if (!leaf) return [fail("certificate", "tls-error", "no certificate presented")];
  const path: X509Certificate[] = [leaf];
  let trusted = false;
  for (let current = leaf; path.length <= chain.length + 1; ) {
    if (root && current.checkIssued(root) && current.verify(root.publicKey)) {
      trusted = true;
      break;
    }
    const issuer = chain.find((c) => c !== current && current.checkIssued(c) && current.verify(c.publicKey));
    if (!issuer || path.includes(issuer)) break;
    path.push(issuer);
    current = issuer;
  }
  const results: Result[] = [];
  if (!root) results.push({ check: "certificate", status: "skip", detail: `issued by ${issuerCN(path.at(-1)!)}; no CA root given (caRootPem output or --ca) to verify it against` });
  else if (!trusted) results.push(fail("certificate", "cert-untrusted", `${subjectCN(leaf)} chains to ${issuerCN(path.at(-1)!)}, not to ${subjectCN(root)}`));
  else if (!leaf.checkHost(host)) results.push(fail("certificate", "cert-name", `${subjectCN(leaf)} does not cover ${host} (${leaf.subjectAltName ?? "no subjectAltName"})`));
  else results.push(ok("certificate", `${subjectCN(leaf)} ← ${path.slice(1).map(subjectCN).concat(subjectCN(root)).join(" ← ")}`));

  const expired = path.find((c) => now.getTime() > Date.parse(c.validTo));
  const early = path.find((c) => now.getTime() < Date.parse(c.validFrom));
  const left = Date.parse(leaf.validTo) - now.getTime();
  const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
  if (expired) results.push(fail("expiry", "cert-expired", `${subjectCN(expired)} expired ${expired.validTo}`));
  else if (early) results.push(fail("expiry", "cert-not-yet-valid", `${subjectCN(early)} is valid only from ${early.validFrom}`));
  else if (left < lifetime / 3) results.push({ check: "expiry", status: "warn", detail: `${subjectCN(leaf)} expires in ${(left / DAY).toFixed(1)} days (${leaf.validTo}): renewal is overdue` });
  else results.push(ok("expiry", `valid until ${leaf.validTo} (${(left / DAY).toFixed(1)} days)`));
  return results;
}

/** Through the gateway: certificate, dates, and whether the route answers. */
export function gatewayResults(check: Extract<Check, { layer: "gateway" }>, outcome: HttpsOutcome, root: X509Certificate | undefined, now: Date): Result[] {
  const what = `https://${check.host}${check.path}`;
  const tls = outcome.chain.length > 0 ? inspectChain(outcome.chain, root, check.host, now) : [];
  if ("failure" in outcome.result) return [...tls, fail(tls.length > 0 ? "route" : "connect", outcome.result.failure, `${what} at ${check.gateway.host}:${check.gateway.port}: ${outcome.result.message}`)];
  return [...tls, routeResult(outcome.result.status, what, "the gateway")];
}

// --- Inside the guest -------------------------------------------------------------------

/** One round trip: the unit's state, its main process, the listening sockets and, on GPU guests, nvidia-smi. */
export function guestScript(check: Extract<Check, { layer: "guest" }>): string {
  const lines: string[] = [];
  if (check.unit) {
    const u = shellQuote(check.unit);
    lines.push(
      `echo "active $(systemctl is-active ${u} 2>/dev/null)"`,
      `pid="$(systemctl show -p MainPID --value ${u} 2>/dev/null)"`,
      `if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -d "/proc/$pid" ]; then echo "process $pid"; else echo "process none"; fi`,
    );
  }
  lines.push(`ss -Hltn 2>/dev/null | awk '{print "listen " $4}'`);
  if (check.gpu) lines.push(`smi="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1)"; echo "smi $? $(printf '%s' "$smi" | head -n 1)"`);
  lines.push("exit 0");
  return lines.join("\n");
}

export function guestResults(check: Extract<Check, { layer: "guest" }>, res: ExecResult): Result[] {
  if (res.code !== 0) return [fail("exec", "guest-unreachable", `cannot run commands in guest ${check.guest.vmid}: ${(res.stderr || res.stdout).trim().split("\n").at(-1) ?? `exit ${res.code}`}`)];
  const lines = res.stdout.split("\n");
  const value = (key: string) => lines.find((l) => l.startsWith(`${key} `))?.slice(key.length + 1).trim();
  const results: Result[] = [];
  if (check.unit) {
    const active = value("active") || "unknown";
    results.push(active === "active" ? ok("unit", `${check.unit} is active`) : fail("unit", "unit-inactive", `${check.unit} is ${active}`));
    const pid = value("process");
    results.push(pid && pid !== "none" ? ok("process", `main process ${pid}`) : fail("process", "no-process", `${check.unit} has no running main process`));
  } else {
    results.push({ check: "unit", status: "skip", detail: `the role of guest ${check.guest.vmid} names no unit` });
  }
  const listening = lines.filter((l) => l.startsWith("listen ")).map((l) => l.slice(7).trim()).filter((a) => a.endsWith(`:${check.port}`));
  const loopback = (a: string) => /^(127\.|\[::1\]|::1)/.test(a);
  if (listening.length === 0) results.push(fail("listening", "not-listening", `nothing listens on tcp/${check.port}`));
  else if (listening.every(loopback)) results.push(fail("listening", "loopback-only", `tcp/${check.port} is bound to ${listening.join(", ")} only`));
  else results.push(ok("listening", `listening on ${listening.join(", ")}`));
  if (check.gpu) {
    const m = /^(\d+) ?(.*)$/.exec(value("smi") ?? "");
    const [code, text] = [Number(m?.[1] ?? 1), m?.[2] ?? ""];
    if (code !== 0) results.push(fail("gpu", "gpu-unavailable", `nvidia-smi failed: ${text}`));
    else if (check.gpu.shared && check.gpu.expectedDriver && text !== check.gpu.expectedDriver) results.push(fail("gpu", "driver-mismatch", `driver ${text} in the guest, ${check.gpu.expectedDriver} on the host`));
    else results.push(ok("gpu", `driver ${text}`));
  }
  return results;
}
