/**
 * The Nginx gateway's files (LXC 101): the TLS entry point in front of Traefik.
 * Pure: typed config plus explicit inputs in, file list out.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { assertModelApiKey } from "../../stacks/placeholder";
import { CONTROL_CHARS } from "../../stacks/patterns";
import { GATEWAY_API_KEY_RE, GATEWAY_API_KEY_RULE, gatewayApiKeySecret } from "../../stacks/secrets";
import { SECRET_PLACEHOLDER } from "../../stacks/placeholder";
import type { Route, Service } from "../../stacks/schema";
import { renderHostsBlock } from "../render/hosts";
import { renderCertRenewal, RENEW_AT_PERCENT_USED } from "../render/cert-timer";
import { fileList, indent, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { adminSourceRange, gatewayHost, guestOfRole, internalHosts, isApiRoute, keyedModelServices, servesApi, modelRoutes, serviceHost, type ModelRoute, type RoutingConfig } from "../../stacks/routing";
import { TRAEFIK_INTERNAL_PORT } from "../../stacks/scrape";
import { TRAEFIK_SERVICES_API } from "./traefik.render";

/** Where the gateway's files live. Production uses GATEWAY_LAYOUT; tests move it into a temp dir and high ports. */
export interface GatewayLayout {
  /** nginx's configuration directory. */
  confDir: string;
  /** The gateway's certificate chain and key, issued by Step-CA. */
  certFile: string;
  keyFile: string;
  /** The Step-CA root, trusted for the hop to Traefik. */
  caRootFile: string;
  /** Web root that ACME http-01 challenge files are served from. */
  acmeRoot: string;
  logDir: string;
  /** Parent of nginx's temporary directories (request bodies, proxied responses). */
  varDir: string;
  /** User the worker processes run as. */
  user: string;
  httpPort: number;
  httpsPort: number;
  /** Loopback port of nginx's stub_status, read by nginx-prometheus-exporter on the gateway; none when absent. */
  stubStatusPort?: number;
}

export const GATEWAY_LAYOUT: GatewayLayout = {
  confDir: "/etc/nginx",
  certFile: "/etc/nginx/tls/gateway.crt",
  keyFile: "/etc/nginx/tls/gateway.key",
  caRootFile: "/etc/nginx/tls/step-ca-root.pem",
  acmeRoot: "/var/lib/phoenix/acme",
  logDir: "/var/log/nginx",
  varDir: "/var/lib/nginx",
  user: "www-data",
  httpPort: 80,
  httpsPort: 443,
  stubStatusPort: 8081,
};

export interface GatewayInputs {
  /**
   * Traefik's HTTPS entry point, which the gateway proxies every request to, and the port of its
   * internal entry point, where the status page reads Traefik's API (TRAEFIK_INTERNAL_PORT unless given).
   */
  traefik: { address: string; port: number; apiPort?: number };
  /** The Step-CA root certificate (PEM). */
  caRootPem: string;
  /** Each API client's key (phoenix:gatewayApiKey-<client>), while the role's apiKeys are on: only their SHA-256 is rendered. */
  apiKeys?: Record<string, string>;
  /**
   * phoenix:modelApiKey, while the apiKeys are on and a proxied vLLM server requires it
   * (keyedModelServices): the gateway sends it to those servers in place of the client's key.
   */
  modelApiKey?: string;
  layout?: GatewayLayout;
}

export const NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so";

const ROUTER_SOURCE = path.join(__dirname, "nginx", "openai-router.js");
const STATUS_SOURCE = path.join(__dirname, "nginx", "status.js");

/** The admin-only status page (components/core/nginx/status.js). */
export const STATUS_PATH = "/_phoenix/status";
/** The status page's own probes: a short connect and answer budget, so one dead backend cannot hold the page. */
const STATUS_PROBE = { connectSeconds: 2, readSeconds: 3 };
/**
 * The gateway's connect budget to Traefik, the passive failure limit it has: nginx's max_fails and
 * fail_timeout do nothing with one server in the group (nginx release-1.24.0
 * src/http/ngx_http_upstream_round_robin.c: ngx_http_upstream_get_round_robin_peer takes a `single`
 * peer without looking at its fails, and ngx_http_upstream_free_round_robin_peer returns before
 * counting them, setting pc->tries = 0), and every upstream here holds exactly one, Traefik. The same
 * timer bounds the TLS handshake (ngx_http_upstream_ssl_init_connection).
 */
export const CONNECT_TIMEOUT_SECONDS = 3;
const API_KEYS_SOURCE = path.join(__dirname, "nginx", "api-keys.js");

function gatewayRole(config: RoutingConfig) {
  return guestOfRole(config, "nginx-gateway").role;
}

const upstreamName = (service: string) => `traefik_${service}`;

/**
 * One nginx config token holding exactly `value`. nginx's tokenizer
 * (nginx release-1.31.4 src/core/ngx_conf_file.c, ngx_conf_read_token) ends a
 * bare word at a space, ';' or '{', opens a quoted one at '"' or "'", and in a
 * quoted word turns \" \' \\ into the character: so a double-quoted word with
 * those escaped holds any text. Plain words stay bare, so configs read as
 * before; control characters are refused (\n and \t would be unescaped into a
 * different value).
 */
export function nginxWord(value: string): string {
  if (/^[A-Za-z0-9/_.~:@+-]+$/.test(value)) return value;
  if (value === "" || CONTROL_CHARS.test(value)) throw new Error(`nginx word ${JSON.stringify(value)} is empty or holds control characters`);
  return `"${value.replace(/[\\"']/g, "\\$&")}"`;
}

/** Services the gateway sends requests to: route targets and the model servers. */
function proxiedServices(config: RoutingConfig, models: ModelRoute[]): Service[] {
  const names = new Set([...config.routes.flatMap((r) => (r.service === undefined ? [] : [r.service])), ...models.map((m) => m.service)]);
  return config.services.filter((s) => names.has(s.name));
}

function serviceByName(config: RoutingConfig, name: string): Service {
  const s = config.services.find((x) => x.name === name);
  if (!s) throw new Error(`service '${name}' is not declared in services`);
  return s;
}

/** Lines every location that proxies to Traefik carries: the target service's host, on the wire and in SNI. */
function proxyTo(config: RoutingConfig, layout: GatewayLayout, service: Service, opts: { websocket: boolean; uri?: string; api?: boolean }): string {
  const host = serviceHost(config, service);
  return [
    `include ${layout.confDir}/phoenix/proxy-headers.conf;`,
    // On /v1, the client's gateway key is the gateway's business: the backends never see it (an empty value is not sent).
    // A vLLM server that requires its own key gets that one instead, from a file only root reads (modelKeyFile).
    ...(opts.api && apiKeysOn(config) ? [keyedModelServices(config).has(service.name) ? `include ${layout.confDir}/${MODEL_KEY_INCLUDE};` : 'proxy_set_header Authorization "";'] : []),
    `proxy_set_header Host ${host};`,
    `proxy_ssl_name ${host};`,
    ...(opts.websocket ? ["proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;"] : ['proxy_set_header Connection "";']),
    `proxy_pass https://${upstreamName(service.name)}${opts.uri ?? ""};`,
  ].join("\n");
}

function routeLocation(config: RoutingConfig, layout: GatewayLayout, route: Route & { service: string }): string {
  const service = serviceByName(config, route.service);
  const api = isApiRoute(config, route) && apiKeysOn(config);
  const websocket = route.websocket;
  const auth = api ? `    include ${layout.confDir}/${API_AUTH_INCLUDE};\n` : "";
  const path = nginxWord(route.path);
  if (!route.stripPrefix || route.path === "/") {
    return `location ${path} {\n${auth}${indent(proxyTo(config, layout, service, { websocket, api }), "    ")}\n}`;
  }
  if (route.path.endsWith("/")) {
    // proxy_pass with a URI replaces the matched prefix, keeping the client's encoding.
    return `location ${path} {\n${auth}${indent(proxyTo(config, layout, service, { websocket, uri: "/", api }), "    ")}\n}`;
  }
  const escaped = route.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return `location ${path} {\n${auth}    rewrite ${nginxWord(`^${escaped}/?(.*)$`)} /$1 break;\n${indent(proxyTo(config, layout, service, { websocket, api }), "    ")}\n}`;
}

function modelLocations(config: RoutingConfig, layout: GatewayLayout, maxBodyMiB: number, routes: Route[], models: ModelRoute[]): string {
  const services = [...new Set(models.map((m) => m.service))].map((n) => serviceByName(config, n));
  const api = apiKeysOn(config);
  const auth = api ? `    include ${layout.confDir}/${API_AUTH_INCLUDE};\n` : "";
  const blocks: string[] = [];
  for (const route of routes) {
    const listing = /\/models\/?$/.test(route.path);
    const base = route.path.replace(/\/$/, "");
    blocks.push(
      listing
        ? `location = ${nginxWord(base)} {\n${auth}    js_content openai.models;\n}\n\nlocation ${nginxWord(`${base}/`)} {\n${auth}    js_content openai.models;\n}`
        : `location ${nginxWord(route.path)} {
${auth}    # njs reads the whole body to find "model": keep it in one memory buffer.
    client_body_buffer_size ${maxBodyMiB}m;
    client_body_in_single_buffer on;
    js_content openai.route;
}`,
    );
  }
  for (const s of services) {
    blocks.push(`location @model_${s.name} {
    # 502/503/504 from Traefik or nginx itself answer in OpenAI's shape (@openai_unavailable).
    proxy_intercept_errors on;
    error_page 502 503 504 @openai_unavailable;
${indent(proxyTo(config, layout, s, { websocket: false, api }), "    ")}
}`);
    blocks.push(`location = /_phoenix/models/${s.name} {
    internal;
    # njs reads the list from memory: a subrequest's answer must be buffered whole.
    proxy_buffering on;
    subrequest_output_buffer_size 1m;
    proxy_method GET;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
${indent(proxyTo(config, layout, s, { websocket: false, uri: "/v1/models", api }), "    ")}
}`);
  }
  blocks.push(`# Traefik's 502/503/504 (503: every server of the service DOWN) and nginx's own (Traefik unreachable: 502;
# silent past proxy_connect_timeout: 504) as an OpenAI-shaped error. Only those codes: the backend's own
# errors pass unchanged, and a 200 stream is never touched (nginx release-1.24.0 src/http/ngx_http_upstream.c
# ngx_http_upstream_process_header: intercepted only for status >= 300 with an error_page for it). Without
# "=" the error page keeps the original status, which $status reads (ngx_http_special_response.c err_status).
location @openai_unavailable {
    default_type application/json;
    return 200 '{"error":{"message":"The model server did not answer through the gateway (HTTP $status); try again shortly.","type":"server_error","param":null,"code":"upstream_unavailable"}}\\n';
}`);
  return blocks.join("\n\n");
}

function serverBlock(layout: GatewayLayout, host: string, locations: string, defaultServer: boolean): string {
  return `server {
    listen ${layout.httpsPort} ssl http2${defaultServer ? " default_server" : ""};
    server_name ${host};
    include ${layout.confDir}/phoenix/security-headers.conf;

${indent(locations, "    ")}
}`;
}

/** The njs model table: model id → service, and the services to ask for /v1/models. */
function renderModelTable(models: ModelRoute[]): string {
  const table = { models: Object.fromEntries(models.map((m) => [m.id, m.service])), services: [...new Set(models.map((m) => m.service))] };
  return `// Generated by Phoenix from the stack's model servers.\nexport default ${JSON.stringify(table, null, 4)};\n`;
}

/** One row of the status page: a route (or the model routes together), the service behind it, the path that says it is healthy. */
interface StatusRow {
  route: string | null;
  service: string;
  /** Whether the gateway proxies to it, so can probe it through its own upstream. */
  proxied: boolean;
}

/**
 * The status page's table: every route with its service, the model routes once per model server,
 * and every other service Traefik routes (gateway: not proxied). Generated as an njs module.
 */
function statusRows(config: RoutingConfig, models: ModelRoute[]): StatusRow[] {
  const domainHost = gatewayHost(config);
  const rows: StatusRow[] = config.routes.flatMap((r) => (r.service === undefined ? [] : [{ route: `${r.host ?? domainHost}${r.path}`, service: r.service, proxied: true }]));
  const modelPaths = config.routes.filter((r) => r.byModel).map((r) => `${r.host ?? domainHost}${r.path}`);
  for (const service of new Set(models.map((m) => m.service))) rows.push({ route: `${modelPaths.join(" ")} (model: ${models.filter((m) => m.service === service).map((m) => m.id).join(", ")})`, service, proxied: true });
  for (const s of config.services) if (!rows.some((r) => r.service === s.name)) rows.push({ route: null, service: s.name, proxied: false });
  return rows;
}

/**
 * The status page's locations, in the gateway's own server: the page (admin networks only, like
 * Traefik's dashboard: host.adminNetworks, else the gateway's subnet), Traefik's service list from its
 * API, and each proxied service's health path through the gateway's own upstream, each with a short budget.
 */
function statusLocations(config: RoutingConfig, layout: GatewayLayout, traefik: GatewayInputs["traefik"], services: Service[]): string {
  const allow = adminSourceRange(config, guestOfRole(config, "nginx-gateway"), "the gateway's status page");
  const probe = [
    "internal;",
    "# njs reads the answer from memory: buffered whole, a GET without the page request's body.",
    "proxy_buffering on;",
    "subrequest_output_buffer_size 1m;",
    `proxy_connect_timeout ${STATUS_PROBE.connectSeconds}s;`,
    `proxy_read_timeout ${STATUS_PROBE.readSeconds}s;`,
    "proxy_method GET;",
    "proxy_pass_request_body off;",
    'proxy_set_header Content-Length "";',
    // The admin's own credentials stay with the page: a health probe sends none (an empty value is not sent).
    'proxy_set_header Authorization "";',
    'proxy_set_header Cookie "";',
  ];
  const blocks = [
    `location = ${STATUS_PATH} {
${indent([...allow.map((a) => `allow ${a};`), "deny all;", "js_content status.page;"].join("\n"), "    ")}
}`,
    `location = ${STATUS_PATH}/traefik {
${indent([...probe, 'proxy_set_header Connection "";', `proxy_pass http://${traefik.address}:${traefik.apiPort ?? TRAEFIK_INTERNAL_PORT}${TRAEFIK_SERVICES_API};`].join("\n"), "    ")}
}`,
    ...services.map((s) => `location = ${STATUS_PATH}/health/${s.name} {
${indent([...probe, proxyTo(config, layout, s, { websocket: false, uri: s.healthPath })].join("\n"), "    ")}
}`),
  ];
  return `# The status page (${STATUS_PATH}): every route and backend with its health as Traefik and the gateway see it.\n${blocks.join("\n\n")}\n`;
}

/**
 * OpenAI's error body. The shape and codes are what api.openai.com answers, as its clients
 * quote it (unverified against an OpenAI document, none being stored here):
 * 401 {"error":{"message":"Incorrect API key provided: …","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}
 * (vivekuppal/transcribe#179, Taiko3615/RenPyChatGPTExample#2);
 * 429 {"error":{"message":"Rate limit reached for … on requests per min (RPM) …","type":"requests","param":null,"code":"rate_limit_exceeded"}}
 * (Huanshere/VideoLingo#34).
 */
function openAiError(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

/** Whether this gateway checks API keys: they are on and it serves /v1. */
function apiKeysOn(config: RoutingConfig): boolean {
  return gatewayRole(config).apiKeys.enabled && servesApi(config);
}

/**
 * SHA-256 (hex) of each client's key → client. The keys are checked here, where they are
 * hashed, and never echoed; two clients may not share a key (the digest would name one).
 * Offline synth passes SECRET_PLACEHOLDER for each, which is shown as its digest.
 */
export function apiKeyDigests(config: RoutingConfig, keys: Record<string, string> | undefined): Record<string, string> {
  const table: Record<string, string> = {};
  for (const { name } of gatewayRole(config).apiKeys.clients) {
    const key = keys && Object.hasOwn(keys, name) ? keys[name] : undefined;
    const secret = `phoenix:${gatewayApiKeySecret(name)}`;
    if (key === undefined) throw new Error(`the gateway's API client ${name} has no key: pass ${secret} to the renderer`);
    if (key !== SECRET_PLACEHOLDER && !GATEWAY_API_KEY_RE.test(key)) throw new Error(`${secret} must be ${GATEWAY_API_KEY_RULE}: set a new one with pulumi config set --secret ${secret} <value>`);
    const digest = createHash("sha256").update(key, "utf8").digest("hex");
    if (Object.hasOwn(table, digest) && key !== SECRET_PLACEHOLDER) throw new Error(`${secret} holds the same key as phoenix:${gatewayApiKeySecret(table[digest]!)}: give each client its own key`);
    table[digest] = name;
  }
  return table;
}

/**
 * Words a `map` block reads as its own parameters (nginx release-1.24.0 ngx_http_map_module.c
 * ngx_http_map: "default", "hostnames", "include", "volatile"); a source value that is one of them
 * is written with a leading backslash, which ngx_http_map drops. Only these: in a bare word
 * ngx_conf_read_token turns \n, \t and \r into control characters, so escaping every name would
 * break a client named n8n.
 */
const MAP_PARAMETERS = new Set(["default", "hostnames", "include", "volatile"]);

const API_AUTH_INCLUDE = "phoenix/api-auth.conf";
const MODEL_KEY_INCLUDE = "phoenix/model-api-key.conf";

/**
 * The header that carries phoenix:modelApiKey to the vLLM servers that require it (vLLM checks
 * `Authorization: Bearer <key>` on /v1: components/models/vllm.render.ts). Its characters are
 * checked as vLLM's renderer checks them; nginxWord quotes it.
 */
function modelKeyFile(config: RoutingConfig, layout: GatewayLayout, key: string | undefined): RenderedFile[] {
  if (!apiKeysOn(config) || keyedModelServices(config).size === 0) return [];
  if (key === undefined) throw new Error("the gateway proxies to a vLLM server with requireApiKey: pass phoenix:modelApiKey to the renderer");
  assertModelApiKey(key);
  return [{ path: `${layout.confDir}/${MODEL_KEY_INCLUDE}`, content: `# Generated by Phoenix: the key the vLLM servers behind this gateway require.\nproxy_set_header Authorization ${nginxWord(`Bearer ${key}`)};\n`, mode: "0600", owner: "root:root" }];
}

/**
 * The API keys' files: the key digests for njs, the client variable and the rate-limit zones
 * (http level), the lines every /v1 location includes, and the 401/429 answers.
 *
 * limit_req (nginx release-1.24.0 src/http/modules/ngx_http_limit_req_module.c): the rate
 * belongs to the zone (limit_req_zone rate=, ctx->rate) and burst to each limit_req, so there
 * is a zone and a limit_req per distinct rate and burst, keyed by a variable that holds the
 * client's name only for that zone's clients: "if (key.len == 0) continue" leaves every
 * other request uncounted there. The handler returns at once when r->main->limit_req_status
 * is set, so a request is counted once: the /v1/models subrequests and the internal
 * redirect to a model's location are not counted again. A burst of 0 is nginx's default and
 * is left out ("burst=0" is refused: burst <= 0 is an invalid burst value).
 */
function renderApiKeyFiles(config: RoutingConfig, layout: GatewayLayout, keys: Record<string, string> | undefined): RenderedFile[] {
  const c = layout.confDir;
  const digests = apiKeyDigests(config, keys);
  const groups = new Map<string, { rate: string; burst: number; clients: string[] }>();
  for (const client of gatewayRole(config).apiKeys.clients) {
    const id = `${client.rate} ${client.burst}`;
    groups.set(id, { rate: client.rate, burst: client.burst, clients: [...(groups.get(id)?.clients ?? []), client.name] });
  }
  const zones = [...groups.values()];
  const http = `# API keys on /v1: $phoenix_api_client is the client whose key the request carries, or "" (njs/api-keys.js).
js_import apikeys from api-keys.js;
js_set $phoenix_api_client apikeys.client;

# One zone per rate and burst, each counting its own clients only (an empty key is not counted).
# A client named like a map parameter is escaped (MAP_PARAMETERS).
${zones
  .map(
    (z, i) => `map $phoenix_api_client $phoenix_api_limit_${i} {
    default "";
${z.clients.map((n) => `    ${MAP_PARAMETERS.has(n) ? "\\" : ""}${n} ${n};`).join("\n")}
}
limit_req_zone $phoenix_api_limit_${i} zone=phoenix_api_${i}:1m rate=${z.rate};`,
  )
  .join("\n\n")}
`;
  const include = `# Included by every /v1 location: a request needs a client's key, then stays within the client's rate.
# The if only returns (nginx's "if is evil" note: return and rewrite ... last are safe inside it).
if ($phoenix_api_client = "") {
    return 401;
}
error_page 401 = @phoenix_api_unauthorized;
limit_req_status 429;
error_page 429 = @phoenix_api_rate_limited;
${zones.map((z, i) => `limit_req zone=phoenix_api_${i}${z.burst > 0 ? ` burst=${z.burst}` : ""} nodelay;`).join("\n")}
`;
  // A location with add_header of its own inherits none from the server: the security headers come along.
  const errors = `# The answers to a missing or unknown API key and to a client over its rate, in OpenAI's shape.
location @phoenix_api_unauthorized {
    default_type application/json;
    include ${c}/phoenix/security-headers.conf;
    add_header WWW-Authenticate 'Bearer realm="${gatewayHost(config)}"' always;
    return 401 '${openAiError("Missing or unknown API key: send Authorization: Bearer <key> with a key this gateway issued.", "invalid_request_error", "invalid_api_key")}\n';
}

location @phoenix_api_rate_limited {
    default_type application/json;
    return 429 '${openAiError("Rate limit reached for this API key: retry after a short wait.", "requests", "rate_limit_exceeded")}\n';
}
`;
  return [
    { path: `${c}/conf.d/_api-keys.conf`, content: http },
    { path: `${c}/${API_AUTH_INCLUDE}`, content: include },
    { path: `${c}/routes.d/_api-errors.conf`, content: errors },
    { path: `${c}/njs/api-keys.js`, content: fs.readFileSync(API_KEYS_SOURCE, "utf8") },
    { path: `${c}/njs/phoenix-api-keys.js`, content: `// Generated by Phoenix: SHA-256 of each API client's key → the client. No key is stored here.\nexport default ${JSON.stringify(digests, null, 4)};\n`, mode: "0600", owner: "root:root" },
  ];
}

export function renderGatewayConfig(config: RoutingConfig, inputs: GatewayInputs): RenderedFile[] {
  const layout = inputs.layout ?? GATEWAY_LAYOUT;
  const role = gatewayRole(config);
  const byModel = config.routes.filter((r) => r.byModel);
  const models = byModel.length > 0 ? modelRoutes(config) : [];
  const domainHost = gatewayHost(config);
  const c = layout.confDir;

  const nginxConf = `# Phoenix gateway. Generated; changes made here are overwritten on the next apply.
load_module ${NJS_MODULE};

user ${layout.user};
worker_processes auto;
error_log ${layout.logDir}/error.log warn;

events {
    worker_connections 4096;
}

http {
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    server_tokens off;
    keepalive_timeout 65s;

    client_body_temp_path ${layout.varDir}/body;
    proxy_temp_path ${layout.varDir}/proxy;
    fastcgi_temp_path ${layout.varDir}/fastcgi;
    uwsgi_temp_path ${layout.varDir}/uwsgi;
    scgi_temp_path ${layout.varDir}/scgi;

    log_format phoenix_json escape=json '{"time":"$time_iso8601","request_id":"$request_id","remote_addr":"$remote_addr","host":"$host","method":"$request_method","uri":"$request_uri","protocol":"$server_protocol","status":$status,"body_bytes_sent":$body_bytes_sent,"request_length":$request_length,"request_time":$request_time,"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time","user_agent":"$http_user_agent"}';
    access_log ${layout.logDir}/access.json phoenix_json;

    # LLM requests carry long prompts and embedding batches, and generation takes minutes.
    client_max_body_size ${role.maxBodyMiB}m;
    proxy_read_timeout ${role.readTimeoutSeconds}s;
    proxy_send_timeout ${role.readTimeoutSeconds}s;
    send_timeout ${role.readTimeoutSeconds}s;
    # Passive failure limits with one upstream server (Traefik): a bounded connect, no retries (nginx
    # would retry the same Traefik: tries is 0 for a single peer), and health failover left to Traefik's
    # health checks, which take a DOWN backend out and answer 503 (components/core/traefik.render.ts).
    proxy_connect_timeout ${CONNECT_TIMEOUT_SECONDS}s;
    proxy_next_upstream off;
    proxy_http_version 1.1;
    # Streamed completions (SSE) and WebSocket frames go out as they arrive.
    proxy_buffering off;

    ssl_certificate ${layout.certFile};
    ssl_certificate_key ${layout.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:phoenix_tls:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets off;

    # The hop to Traefik is TLS too, verified against the Step-CA root, with the service host as SNI.
    proxy_ssl_protocols TLSv1.2 TLSv1.3;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 2;
    proxy_ssl_trusted_certificate ${layout.caRootFile};
    proxy_ssl_server_name on;
    proxy_ssl_session_reuse on;

    # The gateway sets these itself; a backend's copy would duplicate them.
    proxy_hide_header Strict-Transport-Security;
    proxy_hide_header X-Content-Type-Options;
    proxy_hide_header X-Frame-Options;
    proxy_hide_header Referrer-Policy;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        "" "";
    }

    js_path ${c}/njs;
${byModel.length > 0 ? "    js_import openai from openai-router.js;\n" : ""}    js_import status from status.js;

    include ${c}/conf.d/*.conf;
}
`;

  const proxyHeaders = `# Included by every location that proxies; proxy_set_header does not inherit once a location sets its own.
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto https;
proxy_set_header X-Forwarded-Host $host;
proxy_set_header X-Request-ID $request_id;
`;

  const securityHeaders = `# Included by every HTTPS server; locations add no headers of their own, so these always apply.
add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;
add_header X-Content-Type-Options "nosniff" always;
add_header Content-Security-Policy "frame-ancestors 'self'" always;
add_header X-Frame-Options "SAMEORIGIN" always;
add_header Referrer-Policy "strict-origin-when-cross-origin" always;
`;

  const gatewayConf = `# The entry point: HTTP only for ACME challenges, everything else over HTTPS.
server {
    listen ${layout.httpPort} default_server;
    server_name _;

    location ^~ /.well-known/acme-challenge/ {
        root ${layout.acmeRoot};
        default_type text/plain;
        try_files $uri =404;
    }

    location / {
        return 301 https://$host$request_uri;
    }
}

${serverBlock(
  layout,
  domainHost,
  `location = /healthz {
    access_log off;
    default_type application/json;
    return 200 '{"status":"ok"}\\n';
}

include ${c}/phoenix/status.conf;
include ${c}/routes.d/*.conf;`,
  true,
)}
${
  layout.stubStatusPort === undefined
    ? ""
    : `
# Connection and request counters for nginx-prometheus-exporter on this guest: loopback only
# (nginx 1.24 ngx_http_stub_status_module; nginx-prometheus-exporter@v1.5.3 exporter.go --nginx.scrape-uri).
server {
    listen 127.0.0.1:${layout.stubStatusPort};
    server_name _;
    access_log off;

    location = /stub_status {
        stub_status;
        allow 127.0.0.1;
        deny all;
    }

    location / {
        return 404;
    }
}
`
}`;

  const files: RenderedFile[] = [
    { path: `${c}/nginx.conf`, content: nginxConf },
    { path: `${c}/phoenix/proxy-headers.conf`, content: proxyHeaders },
    { path: `${c}/phoenix/security-headers.conf`, content: securityHeaders },
    { path: `${c}/conf.d/gateway.conf`, content: gatewayConf },
    { path: `${c}/phoenix/status.conf`, content: statusLocations(config, layout, inputs.traefik, proxiedServices(config, models)) },
    { path: `${c}/njs/status.js`, content: fs.readFileSync(STATUS_SOURCE, "utf8") },
    { path: `${c}/njs/phoenix-status.js`, content: `// Generated by Phoenix from the stack's routes and services.\nexport default ${JSON.stringify({ rows: statusRows(config, models) }, null, 4)};\n` },
    { path: layout.caRootFile, content: inputs.caRootPem.endsWith("\n") ? inputs.caRootPem : `${inputs.caRootPem}\n` },
  ];

  if (byModel.length > 0) {
    files.push({ path: `${c}/routes.d/openai.conf`, content: `# OpenAI-compatible API: routed by the request's model.\n${modelLocations(config, layout, role.maxBodyMiB, byModel, models)}\n` });
    files.push({ path: `${c}/njs/openai-router.js`, content: fs.readFileSync(ROUTER_SOURCE, "utf8") });
    files.push({ path: `${c}/njs/phoenix-models.js`, content: renderModelTable(models) });
  }
  if (apiKeysOn(config)) files.push(...renderApiKeyFiles(config, layout, inputs.apiKeys), ...modelKeyFile(config, layout, inputs.modelApiKey));

  // Routes on other hosts get their own server, in the file of the host's first service.
  const hostRoutes = new Map<string, (Route & { service: string })[]>();
  for (const r of config.routes) {
    if (r.service === undefined || r.host === undefined || r.host === domainHost) continue;
    hostRoutes.set(r.host, [...(hostRoutes.get(r.host) ?? []), r as Route & { service: string }]);
  }

  for (const service of proxiedServices(config, models)) {
    const gatewayRoutes = config.routes.filter((r): r is Route & { service: string } => r.service === service.name && (r.host === undefined || r.host === domainHost));
    const servers = [...hostRoutes.entries()]
      .filter(([, routes]) => routes[0]!.service === service.name)
      .map(([host, routes]) => serverBlock(layout, host, routes.map((r) => routeLocation(config, layout, r)).join("\n\n"), false));
    const upstream = `upstream ${upstreamName(service.name)} {\n    server ${inputs.traefik.address}:${inputs.traefik.port};\n    keepalive 16;\n}`;
    files.push({ path: `${c}/conf.d/${service.name}.conf`, content: `# ${service.name}: reached through Traefik as ${serviceHost(config, service)}.\n${[upstream, ...servers].join("\n\n")}\n` });
    if (gatewayRoutes.length > 0) {
      files.push({ path: `${c}/routes.d/${service.name}.conf`, content: `# ${service.name} on ${domainHost}.\n${gatewayRoutes.map((r) => routeLocation(config, layout, r)).join("\n\n")}\n` });
    }
  }
  return fileList(files);
}

/** Every host name the gateway answers on: its certificate must cover them all. */
export function gatewayHostNames(config: RoutingConfig): string[] {
  return [...new Set([gatewayHost(config), ...config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host]))])];
}

export interface GatewayCertInputs {
  /** Step-CA's URL, e.g. https://ca.internal.example:9000. */
  caUrl: string;
  /** The step CLI release installed on the gateway to obtain and renew the certificate. */
  stepCli: PinnedRelease;
}


/**
 * The gateway certificate: issued by Step-CA's ACME provisioner over HTTP-01
 * (served from the ACME web root by the port-80 server), reissued when the host
 * names change or a third of its life is left (RENEW_AT_PERCENT_USED), then nginx reloads.
 */
export function renderGatewayCertFiles(config: RoutingConfig, cert: GatewayCertInputs, layout: GatewayLayout = GATEWAY_LAYOUT): RenderedFile[] {
  const hosts = gatewayHostNames(config);
  const [subject, ...sans] = hosts;
  const script = `#!/usr/bin/env bash
# Phoenix: obtains or renews the gateway certificate from Step-CA (ACME HTTP-01), then reloads nginx.
set -euo pipefail
cert=${layout.certFile}
key=${layout.keyFile}
names=${JSON.stringify(hosts.join(" "))}
# A certificate for other names than the ones routed now is replaced, whatever its age.
if [ -s "$cert" ] && [ "$(cat "$cert.names" 2>/dev/null || true)" = "$names" ]; then
  # needs-renewal exits 1 for "not yet"; 0 (renew) and anything else (unreadable) fall through to issuance.
  due=0
  step certificate needs-renewal "$cert" --expires-in ${RENEW_AT_PERCENT_USED} >/dev/null 2>&1 || due=$?
  if [ "$due" -eq 1 ]; then exit 0; fi
fi
mkdir -p ${layout.acmeRoot}
step ca certificate ${subject} "$cert.new" "$key.new" \\
  ${sans.map((s) => `--san ${s} `).join("")}--san ${subject} \\
  --provisioner acme --webroot ${layout.acmeRoot} \\
  --ca-url ${cert.caUrl} --root ${layout.caRootFile} --force
chmod 0600 "$key.new"
mv -f "$key.new" "$key"
mv -f "$cert.new" "$cert"
echo "$names" >"$cert.names"
if systemctl is-active --quiet nginx; then
  nginx -t -q
  systemctl reload nginx
fi
`;
  return fileList(renderCertRenewal("gateway", "the gateway certificate", "nginx.service", script));
}

/**
 * On Ubuntu, njs is in universe: noble ships libnginx-mod-http-js 0.8.2-1ubuntu1 [universe]
 * (packages.ubuntu.com/noble/njs, source libnginx-mod-js). A template whose apt sources name
 * main only cannot install it, so universe is added beside main on the sources' own lines
 * (one-line .list and deb822 .sources), keeping their mirror. Debian has it in main.
 */
export function renderUbuntuUniverse(): string {
  return `if grep -qsx 'ID=ubuntu' /etc/os-release && ! grep -Eqs '^(deb .* universe( |$)|Components:.* universe( |$))' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    if [ -f "$f" ]; then sed -i -E '/^deb(-src)? /s/ main( |$)/ main universe\\1/' "$f"; fi
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ]; then sed -i -E '/^Components:/s/ main( |$)/ main universe\\1/' "$f"; fi
  done
  echo "nginx-gateway: enabled Ubuntu's universe component, where libnginx-mod-http-js is"
fi`;
}

/**
 * The gateway's install script: nginx and njs from Debian or Ubuntu (universe), the step CLI pinned,
 * a stand-in certificate until Step-CA issues the real one (nginx cannot start
 * without one, and ACME needs nginx running), then the staged config swap with
 * `nginx -t` before any reload.
 */
export function renderGatewayInstallScript(config: RoutingConfig, inputs: GatewayInputs, cert: GatewayCertInputs): string {
  const layout = inputs.layout ?? GATEWAY_LAYOUT;
  const files = [...renderGatewayConfig(config, inputs), ...renderGatewayCertFiles(config, cert, layout)];
  return renderInstallScript({
    name: "nginx-gateway",
    description: "the Nginx gateway: config, njs router, certificate renewal",
    prepare: `${renderUbuntuUniverse()}
${renderAptEnsure(["nginx", "libnginx-mod-http-js", "curl", "ca-certificates", "openssl"])}
${renderHostsBlock(internalHosts(config, "nginx-gateway"))}
${renderReleaseInstalls([cert.stepCli])}
mkdir -p ${layout.acmeRoot} "$(dirname ${layout.certFile})"
if [ ! -s ${layout.certFile} ]; then
  # Stand-in until the first issuance: short-lived, never trusted by clients.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=${gatewayHost(config)}" -keyout ${layout.keyFile} -out ${layout.certFile} 2>/dev/null
  chmod 0600 ${layout.keyFile}
fi`,
    files,
    validate: "nginx -t -q",
    reload: "systemctl daemon-reload\nsystemctl enable --quiet nginx phoenix-gateway-cert.timer\nsystemctl reload-or-restart nginx",
    // -k: until the first issuance the gateway serves its self-signed stand-in; this only asks whether nginx answers.
    verify: `curl -fsS --max-time 3 -k --resolve ${gatewayHost(config)}:${layout.httpsPort}:127.0.0.1 https://${gatewayHost(config)}:${layout.httpsPort}/healthz >/dev/null`,
    finish: "systemctl start --quiet phoenix-gateway-cert.timer\nsystemctl start phoenix-gateway-cert.service",
  });
}
