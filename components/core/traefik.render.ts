/**
 * Traefik's files (LXC 102): internal routing from service host names to the
 * guests serving them, with certificates from Step-CA's ACME directory.
 * Pure: typed config plus explicit inputs in, file list out.
 */
import { createHmac } from "node:crypto";
import { encodeBase64, hashSync, truncates } from "bcryptjs";
import { stringify } from "yaml";
import { renderHostsBlock } from "../render/hosts";
import { sandboxLines } from "../render/systemd-sandbox";
import { fileList, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { adminSourceRange, backends, dashboardHost, guestIp, guestOfRole, internalHosts, type RoutingConfig } from "../../stacks/routing";
import { TRAEFIK_INTERNAL_PORT } from "../../stacks/scrape";

export const TRAEFIK_PATHS = {
  static: "/etc/traefik/traefik.yml",
  dynamic: "/etc/traefik/dynamic/phoenix.yml",
  caRoot: "/etc/traefik/step-ca-root.pem",
  acmeStorage: "/var/lib/traefik/acme.json",
  /** The dashboard's basicAuth users (htpasswd lines): root:traefik 0640. */
  dashboardUsers: "/etc/traefik/dashboard-users",
  unit: "/etc/systemd/system/traefik.service",
  binary: "/usr/local/bin/traefik",
} as const;

/** Traefik's API path listing services with their servers' health, which the gateway's status page reads. */
export const TRAEFIK_SERVICES_API = "/api/http/services";

/** Where the gateway reaches Traefik. */
export const TRAEFIK_HTTPS_PORT = 443;
/** The dashboard, ping and metrics entry point (stacks/scrape.ts, where the ops guest's scrape and its firewall ACCEPT read it too). */
export { TRAEFIK_INTERNAL_PORT };

const RESOLVER = "step-ca";

export interface TraefikInputs {
  /** The Step-CA root certificate (PEM): trusted for ACME and for HTTPS backends. */
  caRootPem: string;
  /** Step-CA's ACME directory URL. */
  acmeDirectoryUrl: string;
  /** SHA-256 of the release archive; without it, the release's published checksums file is the reference. */
  sha256?: string;
  /** phoenix:traefikDashboardPassword: required while the dashboard is served. */
  dashboardPassword?: string;
}

/** The one user the dashboard's basicAuth knows. */
export const DASHBOARD_USER = "admin";
const BCRYPT_COST = 10;

/**
 * The dashboard's users file line, `admin:<bcrypt>`. Traefik's basicAuth takes MD5, SHA1 or
 * bcrypt hashes (traefik v3.5.3 docs/content/middlewares/http/basicauth.md) and compares
 * through go-http-auth's CheckSecret, which sends $2b$ to golang.org/x/crypto/bcrypt
 * (abbot/go-http-auth basic.go compareFuncs, "$2b$" since 7eb3526, 2016; traefik's go.mod
 * replaces it with the containous fork of 2020).
 * The hash is made here, not in the guest: the line is part of the install script, whose hash
 * decides whether it runs again, so it must be the same on every `pulumi up`. A random salt
 * would change it every run; the salt is therefore derived from the password itself (HMAC-SHA256
 * keyed with it over the stack's domain), so the same secret always yields the same line and a
 * new secret a new one. What that gives up is only that two stacks with the same password and
 * domain share a hash; bcrypt's cost is unchanged. The line travels inside the secret install
 * script (it is computed from a Pulumi secret, so Pulumi keeps it encrypted).
 */
export function dashboardUsersLine(config: RoutingConfig, password: string): string {
  if (password.length === 0) throw new Error("phoenix:traefikDashboardPassword is empty: set it with `pulumi config set --secret phoenix:traefikDashboardPassword <password>`");
  // bcrypt reads at most 72 bytes; a longer password would be accepted by its first 72 alone.
  if (truncates(password)) throw new Error("phoenix:traefikDashboardPassword is longer than bcrypt's 72 bytes: choose a shorter one");
  const saltBytes = createHmac("sha256", password).update(`phoenix traefik dashboard ${config.host.domain}`).digest().subarray(0, 16);
  const salt = `$2b$${String(BCRYPT_COST).padStart(2, "0")}$${encodeBase64([...saltBytes], 16)}`;
  // The hash is a function of (password, salt) alone and costs tens of milliseconds at cost 10;
  // an evaluation asks for it more than once (the users file and the install script carrying it).
  // The salt's alphabet has no ':', so the key is unambiguous. Kept in this process only.
  const key = `${salt}:${password}`;
  let hash = bcryptMemo.get(key);
  if (hash === undefined) bcryptMemo.set(key, (hash = hashSync(password, salt)));
  return `${DASHBOARD_USER}:${hash}`;
}
const bcryptMemo = new Map<string, string>();

/**
 * Who may open the dashboard: host.adminNetworks, or, with none declared, Traefik's own
 * subnet (PVE likewise admits its own local network when no admin network is declared). ipAllowList
 * refuses to start with an empty sourceRange (traefik v3.5.3 pkg/middlewares/ipallowlist/
 * ip_allowlist.go, New) and matches the connection's remote address when no ipStrategy is set
 * (docs/content/middlewares/http/ipallowlist.md): admins reach port 8080 directly, not
 * through the gateway, so the remote address is theirs.
 */
export function dashboardSourceRange(config: RoutingConfig): string[] {
  return adminSourceRange(config, guestOfRole(config, "traefik"), "the dashboard");
}

function traefikRole(config: RoutingConfig) {
  return guestOfRole(config, "traefik").role;
}

export function renderTraefikStatic(config: RoutingConfig, inputs: TraefikInputs): RenderedFile {
  const role = traefikRole(config);
  const gateway = guestOfRole(config, "nginx-gateway");
  const doc = {
    global: { checkNewVersion: false, sendAnonymousUsage: false },
    log: { level: "INFO", format: "json" },
    accessLog: { format: "json" },
    // The dashboard is served by a TLS router on the internal entry point, never through api.insecure.
    api: { dashboard: role.dashboard, insecure: false },
    ping: { entryPoint: "traefik" },
    // Prometheus metrics at /metrics on the internal entry point, per entry point, router and service, which the ops guest
    // scrapes (traefik@v3.5.3 pkg/types/metrics.go: Prometheus.SetDefaults sets entryPoint "traefik", entry point and service labels on).
    metrics: { prometheus: { entryPoint: "traefik", addEntryPointsLabels: true, addRoutersLabels: true, addServicesLabels: true } },
    entryPoints: {
      web: { address: ":80", http: { redirections: { entryPoint: { to: "websecure", scheme: "https", permanent: true } } } },
      websecure: {
        address: `:${TRAEFIK_HTTPS_PORT}`,
        // Only the gateway's X-Forwarded-* are believed: it is the one client that terminates outside TLS.
        forwardedHeaders: { trustedIPs: [guestIp(gateway)] },
        transport: { respondingTimeouts: { readTimeout: `${gateway.role.readTimeoutSeconds}s`, writeTimeout: "0s", idleTimeout: "180s" } },
        http: { tls: { certResolver: RESOLVER } },
      },
      traefik: { address: `:${TRAEFIK_INTERNAL_PORT}` },
    },
    providers: { file: { directory: TRAEFIK_PATHS.dynamic.slice(0, TRAEFIK_PATHS.dynamic.lastIndexOf("/")), watch: true } },
    certificatesResolvers: {
      [RESOLVER]: {
        acme: {
          // Without an email the stored account is taken for none and a new one registered at every start
          // (traefik v3.5.3 pkg/provider/acme/provider.go, initAccount: account == nil || len(account.Email) == 0).
          email: `phoenix@${config.host.domain}`,
          caServer: inputs.acmeDirectoryUrl,
          caCertificates: [TRAEFIK_PATHS.caRoot],
          storage: TRAEFIK_PATHS.acmeStorage,
          // Step-CA issues for 24 hours by default; for a 24 h duration Traefik renews 6 h before expiry, trying every
          // 10 minutes (pkg/provider/acme/provider.go, getCertificateRenewDurations).
          certificatesDuration: 24,
          tlsChallenge: {},
        },
      },
    },
    serversTransport: { rootCAs: [TRAEFIK_PATHS.caRoot] },
  };
  return { path: TRAEFIK_PATHS.static, content: `# Phoenix: Traefik static configuration. Generated; changes made here are overwritten.\n${stringify(doc)}` };
}

export function renderTraefikDynamic(config: RoutingConfig): RenderedFile {
  const role = traefikRole(config);
  const routers: Record<string, unknown> = {};
  const services: Record<string, unknown> = {};
  const transports: Record<string, unknown> = {};
  for (const b of backends(config)) {
    const name = b.service.name;
    routers[name] = { rule: `Host(\`${b.host}\`)`, entryPoints: ["websecure"], service: name, tls: { certResolver: RESOLVER } };
    const transport = b.tlsServerName === undefined ? undefined : `${name}-tls`;
    if (transport) transports[transport] = { serverName: b.tlsServerName, rootCAs: [TRAEFIK_PATHS.caRoot] };
    services[name] = {
      loadBalancer: {
        servers: [{ url: b.url }],
        passHostHeader: true,
        // Every service is health-checked: a GET of its healthPath every 10 s, healthy on 2xx/3xx, DOWN servers
        // taken out of the pool and Traefik answering 503 "no available server" while none is left (traefik v3.5.3
        // pkg/config/dynamic/http_config.go ServerHealthCheck: path, interval, timeout; pkg/healthcheck/healthcheck.go;
        // pkg/server/service/loadbalancer/wrr/wrr.go ServeHTTP), through the service's own serversTransport
        // (pkg/server/service/service.go:402-407). The paths are each product's own (test/core/health-checks.test.ts).
        healthCheck: { path: b.service.healthPath, interval: "10s", timeout: "3s" },
        ...(transport ? { serversTransport: transport } : {}),
      },
    };
  }
  const middlewares: Record<string, unknown> = {};
  if (role.dashboard) {
    // The dashboard and API answer only the admin networks, and only with the password: the allow-list
    // first, so other hosts never reach the password check (the router's list becomes one alice chain
    // in its order: traefik v3.5.3 pkg/server/middleware/middlewares.go BuildChain).
    middlewares["dashboard-allow"] = { ipAllowList: { sourceRange: dashboardSourceRange(config) } };
    middlewares["dashboard-auth"] = { basicAuth: { usersFile: TRAEFIK_PATHS.dashboardUsers, removeHeader: true } };
    routers.dashboard = {
      rule: `Host(\`${dashboardHost(config)}\`)`,
      entryPoints: ["traefik"],
      service: "api@internal",
      middlewares: ["dashboard-allow", "dashboard-auth"],
      tls: { certResolver: RESOLVER },
    };
  }
  // The gateway's status page reads every service's server states from Traefik's API (GET /api/http/services:
  // traefik v3.5.3 pkg/api/handler_http.go getServices, serverStatus {url: "UP"|"DOWN"} from
  // pkg/config/runtime/runtime.go). It gets that one read-only path on the internal entry point, in plain HTTP
  // and from the gateway's address alone: no password to hand the gateway, nothing but health and backend URLs
  // exposed. api@internal exists whenever the static `api` section does (pkg/server/service/managerfactory.go).
  middlewares["gateway-status-allow"] = { ipAllowList: { sourceRange: [guestIp(guestOfRole(config, "nginx-gateway"))] } };
  routers["gateway-status"] = { rule: `Path(\`${TRAEFIK_SERVICES_API}\`)`, entryPoints: ["traefik"], service: "api@internal", middlewares: ["gateway-status-allow"] };
  const doc = {
    http: { routers, ...(Object.keys(middlewares).length > 0 ? { middlewares } : {}), services, ...(Object.keys(transports).length > 0 ? { serversTransports: transports } : {}) },
    tls: { options: { default: { minVersion: "VersionTLS12", sniStrict: true } } },
  };
  return { path: TRAEFIK_PATHS.dynamic, content: `# Phoenix: one router and service per declared service. Generated; changes made here are overwritten.\n${stringify(doc)}` };
}

export function traefikRelease(config: RoutingConfig, sha256?: string): PinnedRelease {
  const v = traefikRole(config).version;
  const base = `https://github.com/traefik/traefik/releases/download/v${v}`;
  return {
    name: "traefik",
    version: v,
    url: `${base}/traefik_v${v}_linux_amd64.tar.gz`,
    ...(sha256 ? { sha256 } : { checksumsUrl: `${base}/traefik_v${v}_checksums.txt` }),
    binary: "traefik",
    installAs: TRAEFIK_PATHS.binary,
  };
}

/** The dashboard's users file, readable by Traefik and no one else but root; none without the dashboard. */
function renderDashboardUsers(config: RoutingConfig, inputs: TraefikInputs): RenderedFile[] {
  if (!traefikRole(config).dashboard) return [];
  if (inputs.dashboardPassword === undefined) throw new Error("the Traefik dashboard needs phoenix:traefikDashboardPassword");
  return [{ path: TRAEFIK_PATHS.dashboardUsers, content: `${dashboardUsersLine(config, inputs.dashboardPassword)}\n`, mode: "0640", owner: "root:traefik" }];
}

export function renderTraefikFiles(config: RoutingConfig, inputs: TraefikInputs): RenderedFile[] {
  return fileList([
    renderTraefikStatic(config, inputs),
    renderTraefikDynamic(config),
    ...renderDashboardUsers(config, inputs),
    { path: TRAEFIK_PATHS.caRoot, content: inputs.caRootPem.endsWith("\n") ? inputs.caRootPem : `${inputs.caRootPem}\n` },
    {
      path: TRAEFIK_PATHS.unit,
      // The version is in the unit so that a new release restarts the service.
      content: `[Unit]
Description=Traefik ${traefikRole(config).version} (Phoenix internal routing)
After=network-online.target
Wants=network-online.target

[Service]
User=traefik
Group=traefik
ExecStart=${TRAEFIK_PATHS.binary} --configFile=${TRAEFIK_PATHS.static}
Restart=on-failure
RestartSec=2s
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=true
${sandboxLines(guestOfRole(config, "traefik"), { readWritePaths: ["/var/lib/traefik"] }).map((l) => `${l}\n`).join("")}LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`,
    },
  ]);
}

/**
 * Traefik v3 has no offline configuration check, so the new files are proven
 * by `traefik healthcheck` after the restart; a failure puts the old files back.
 * Only static changes restart: the file provider picks up dynamic ones itself. The users
 * file is read once, when the basicAuth middleware is built (traefik v3.5.3
 * pkg/middlewares/auth/basic_auth.go NewBasic → auth.go getUsers), and the file provider
 * watches only its directory, so a new password restarts Traefik too.
 */
export function renderTraefikInstallScript(config: RoutingConfig, inputs: TraefikInputs): string {
  const restartOn = [TRAEFIK_PATHS.static, TRAEFIK_PATHS.caRoot, TRAEFIK_PATHS.unit, ...(traefikRole(config).dashboard ? [TRAEFIK_PATHS.dashboardUsers] : [])];
  return renderInstallScript({
    name: "traefik",
    description: "Traefik: pinned binary, static and dynamic configuration, systemd unit",
    prepare: `${renderAptEnsure(["curl", "ca-certificates"])}
${renderHostsBlock(internalHosts(config, "traefik"))}
if ! id traefik >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/traefik --shell /usr/sbin/nologin traefik
fi
install -d -m 0700 -o traefik -g traefik /var/lib/traefik
${renderReleaseInstalls([traefikRelease(config, inputs.sha256)])}`,
    files: renderTraefikFiles(config, inputs),
    reload: `systemctl daemon-reload
systemctl enable --quiet traefik
if ${restartOn.map((p) => `changed_file ${p}`).join(" || ")} || ! systemctl is-active --quiet traefik; then
  systemctl restart traefik
fi`,
    verify: `${TRAEFIK_PATHS.binary} healthcheck --configFile=${TRAEFIK_PATHS.static} >/dev/null`,
    finish: "systemctl enable --now --quiet traefik",
  });
}
