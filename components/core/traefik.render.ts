/**
 * Traefik's files (LXC 102): internal routing from service host names to the
 * guests serving them, with certificates from Step-CA's ACME directory.
 * Pure: typed config plus explicit inputs in, file list out.
 */
import { stringify } from "yaml";
import type { StackConfig } from "../../stacks/schema";
import { renderHostsBlock } from "../render/hosts";
import { sandboxLines } from "../render/systemd-sandbox";
import { fileList, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { backends, dashboardHost, guestIp, guestOfRole, internalHosts } from "./routing";

export const TRAEFIK_PATHS = {
  static: "/etc/traefik/traefik.yml",
  dynamic: "/etc/traefik/dynamic/phoenix.yml",
  caRoot: "/etc/traefik/step-ca-root.pem",
  acmeStorage: "/var/lib/traefik/acme.json",
  unit: "/etc/systemd/system/traefik.service",
  binary: "/usr/local/bin/traefik",
} as const;

/** Where the gateway reaches Traefik. */
export const TRAEFIK_HTTPS_PORT = 443;
/** The dashboard and ping entry point; the guest's firewall opens it to the LAN. */
export const TRAEFIK_INTERNAL_PORT = 8080;

const RESOLVER = "step-ca";

export interface TraefikInputs {
  /** The Step-CA root certificate (PEM): trusted for ACME and for HTTPS backends. */
  caRootPem: string;
  /** Step-CA's ACME directory URL. */
  acmeDirectoryUrl: string;
  /** SHA-256 of the release archive; without it, the release's published checksums file is the reference. */
  sha256?: string;
}

function traefikRole(config: StackConfig) {
  return guestOfRole(config, "traefik").role;
}

export function renderTraefikStatic(config: StackConfig, inputs: TraefikInputs): RenderedFile {
  const role = traefikRole(config);
  const gateway = guestOfRole(config, "nginx-gateway");
  const doc = {
    global: { checkNewVersion: false, sendAnonymousUsage: false },
    log: { level: "INFO", format: "json" },
    accessLog: { format: "json" },
    // The dashboard is served by a TLS router on the internal entry point, never through api.insecure.
    api: { dashboard: role.dashboard, insecure: false },
    ping: { entryPoint: "traefik" },
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

export function renderTraefikDynamic(config: StackConfig): RenderedFile {
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
        healthCheck: { path: b.service.healthPath, interval: "10s", timeout: "3s" },
        ...(transport ? { serversTransport: transport } : {}),
      },
    };
  }
  if (role.dashboard) {
    routers.dashboard = { rule: `Host(\`${dashboardHost(config)}\`)`, entryPoints: ["traefik"], service: "api@internal", tls: { certResolver: RESOLVER } };
  }
  const doc = {
    http: { routers, services, ...(Object.keys(transports).length > 0 ? { serversTransports: transports } : {}) },
    tls: { options: { default: { minVersion: "VersionTLS12", sniStrict: true } } },
  };
  return { path: TRAEFIK_PATHS.dynamic, content: `# Phoenix: one router and service per declared service. Generated; changes made here are overwritten.\n${stringify(doc)}` };
}

export function traefikRelease(config: StackConfig, sha256?: string): PinnedRelease {
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

export function renderTraefikFiles(config: StackConfig, inputs: TraefikInputs): RenderedFile[] {
  return fileList([
    renderTraefikStatic(config, inputs),
    renderTraefikDynamic(config),
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
 * Only static changes restart: the file provider picks up dynamic ones itself.
 */
export function renderTraefikInstallScript(config: StackConfig, inputs: TraefikInputs): string {
  const restartOn = [TRAEFIK_PATHS.static, TRAEFIK_PATHS.caRoot, TRAEFIK_PATHS.unit];
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
