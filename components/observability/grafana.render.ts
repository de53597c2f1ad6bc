/**
 * Grafana on the ops guest: installed from Grafana's signed APT repository at
 * the pinned version (apt checks every package against the repository's signed
 * index, and the repository key must carry the pinned fingerprint), with
 * Prometheus, Loki and Alertmanager provisioned as datasources and Phoenix's
 * dashboards as files. Its data lives on the declared dataset. The admin
 * password is made on the guest at the first install and read by Grafana from
 * a file only root and grafana can read: it never leaves the guest.
 */
import { stringify } from "yaml";
import { APT_GET, aptGetUpdate } from "../../providers/ssh/apt";
import { guestOfRole } from "../../stacks/routing";
import type { StackConfig } from "../../stacks/schema";
import type { RenderedFile } from "../render/files";
import { shQuote } from "../render/files";
import { DASHBOARDS, DATASOURCE, dashboardJson } from "./dashboards/dashboards";
import { observabilityRole } from "./releases";

export const GRAFANA_PATHS = {
  ini: "/etc/grafana/grafana.ini",
  datasources: "/etc/grafana/provisioning/datasources/phoenix.yaml",
  dashboardProvider: "/etc/grafana/provisioning/dashboards/phoenix.yaml",
  dashboards: "/var/lib/phoenix-dashboards",
  adminPassword: "/etc/grafana/phoenix-admin-password",
  unit: "grafana-server.service",
  keyring: "/etc/apt/keyrings/grafana.gpg",
  sources: "/etc/apt/sources.list.d/grafana.list",
} as const;

/** The host name users open Grafana at: the host of the gateway route to the service at Grafana's port, if the stack declares one. */
export function grafanaHost(config: StackConfig): string | undefined {
  const ops = guestOfRole(config, "observability");
  const services = new Set(config.services.filter((s) => s.guest === ops.vmid && s.port === ops.role.grafana.port).map((s) => s.name));
  return config.routes.find((r) => r.host !== undefined && r.service !== undefined && services.has(r.service))?.host;
}

export function grafanaDataDir(config: StackConfig): string {
  return `${observabilityRole(config).dataDir}/grafana`;
}

/**
 * grafana.ini: the [server] URL it is reached at through the gateway, its data on the dataset,
 * provisioning from /etc/grafana/provisioning, the admin password from a file ($__file{}, grafana
 * docs/sources/setup-grafana/configure-grafana: "Variable expansion"), no sign-up, no calls home.
 */
export function renderGrafanaIni(config: StackConfig): string {
  const role = observabilityRole(config);
  const host = grafanaHost(config);
  return `; Phoenix: Grafana configuration. Generated; changes made here are overwritten.
[paths]
data = ${grafanaDataDir(config)}
provisioning = /etc/grafana/provisioning

[server]
http_port = ${role.grafana.port}
${host === undefined ? "" : `domain = ${host}\nroot_url = https://${host}/\n`}
[security]
admin_user = admin
admin_password = $__file{${GRAFANA_PATHS.adminPassword}}
${host === undefined ? "" : `; Logins go through the gateway's HTTPS: the session cookie is never sent in the clear.
cookie_secure = true
; The gateway and Traefik rewrite Host to Traefik's service name, so the browser's Origin is trusted by name:
; pkg/middleware/csrf/csrf.go compares the Origin's host name (no scheme, no port) with Host, else with each
; space-separated csrf_trusted_origins entry. Grafana Live's WebSocket needs no [live] allowed_origins: it accepts
; an Origin whose scheme and host are root_url's (pkg/services/live/live.go checkAllowedOrigin). Both read in stored
; copies of grafana/grafana (csrf.go at 1df8b64e), not at the v12.3.0 tag: the repository is too large to fetch here.
csrf_trusted_origins = ${host}
`}
[users]
allow_sign_up = false

[analytics]
reporting_enabled = false
check_for_updates = false
check_for_plugin_updates = false
`;
}

/**
 * The three datasources, by fixed uid so the dashboards can name them (grafana docs/sources/administration/
 * provisioning/index.md, "Data sources": apiVersion 1, name, type, uid, access, url, isDefault, jsonData;
 * the Alertmanager datasource's jsonData.implementation "prometheus").
 */
export function renderGrafanaDatasources(config: StackConfig): string {
  const role = observabilityRole(config);
  const local = (port: number) => `http://127.0.0.1:${port}`;
  const doc = {
    apiVersion: 1,
    datasources: [
      { name: "Prometheus", type: "prometheus", uid: DATASOURCE.prometheus, access: "proxy", url: local(role.prometheus.port), isDefault: true, editable: false, jsonData: { timeInterval: `${role.scrapeIntervalSeconds}s` } },
      { name: "Loki", type: "loki", uid: DATASOURCE.loki, access: "proxy", url: local(role.loki.port), editable: false },
      { name: "Alertmanager", type: "alertmanager", uid: DATASOURCE.alertmanager, access: "proxy", url: local(role.alertmanager.port), editable: false, jsonData: { implementation: "prometheus" } },
    ],
  };
  return `# Phoenix: Grafana datasources. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

/** One file provider reading Phoenix's dashboards (provisioning/index.md, "Dashboards": providers, type file, options.path). */
export function renderGrafanaDashboardProvider(): string {
  const doc = { apiVersion: 1, providers: [{ name: "phoenix", folder: "Phoenix", type: "file", disableDeletion: true, allowUiUpdates: false, options: { path: GRAFANA_PATHS.dashboards } }] };
  return `# Phoenix: Grafana dashboard provider. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

export function renderGrafanaFiles(config: StackConfig): RenderedFile[] {
  return [
    { path: GRAFANA_PATHS.ini, content: renderGrafanaIni(config), mode: "0640", owner: "root:grafana" },
    { path: GRAFANA_PATHS.datasources, content: renderGrafanaDatasources(config), mode: "0640", owner: "root:grafana" },
    { path: GRAFANA_PATHS.dashboardProvider, content: renderGrafanaDashboardProvider(), mode: "0640", owner: "root:grafana" },
    ...DASHBOARDS.map((d) => ({ path: `${GRAFANA_PATHS.dashboards}/${d.uid}.json`, content: dashboardJson(d) })),
  ];
}

/**
 * Shell for the prepare step: the repository key, checked against the pinned fingerprint before apt
 * may trust it (only that key is exported into the keyring apt reads), the repository, Grafana at the
 * exact version, held; the data folder and the admin password (made once, on the guest).
 * The repository line and key URL are grafana docs/sources/setup-grafana/installation/debian/index.md;
 * Grafana's own install docs name the key: grafana/alloy@v1.18.1 docs/sources/set-up/install/puppet.md:51
 * (apt.grafana.com, id B53AE77BADB630A683046005963FA27710458545) and linux.md:36 (gpg-full.key).
 * unverified: that the deb's Version is the plain release number ("12.3.0", as public pins
 * `apt-get install grafana=12.3.0` use; the file is grafana_12.3.0_<build>_amd64.deb): Grafana's packaging
 * code could not be read here. A wrong string fails the install loudly (apt: version not found), never silently.
 */
export function renderGrafanaPrepare(config: StackConfig): string {
  const role = observabilityRole(config);
  const fpr = role.grafana.aptKeyFingerprint;
  return `if ! gpg --no-default-keyring --keyring ${GRAFANA_PATHS.keyring} --with-colons --fingerprint 2>/dev/null | grep -q ${shQuote(`^fpr:.*:${fpr}:$`)}; then
  key_dir=$(mktemp -d)
  curl -fsSL --proto '=https' --tlsv1.2 --retry 3 -o "$key_dir/grafana.asc" https://apt.grafana.com/gpg-full.key
  if ! gpg --show-keys --with-colons "$key_dir/grafana.asc" | grep -q ${shQuote(`^fpr:.*:${fpr}:$`)}; then
    echo ${shQuote(`grafana: the key at https://apt.grafana.com/gpg-full.key does not carry the pinned fingerprint ${fpr} (role.grafana.aptKeyFingerprint); nothing installed`)} >&2
    rm -rf "$key_dir"
    exit 1
  fi
  install -d -m 0755 /etc/apt/keyrings
  gpg --homedir "$key_dir" --batch --quiet --import "$key_dir/grafana.asc"
  gpg --homedir "$key_dir" --batch --export ${fpr} >${GRAFANA_PATHS.keyring}.new
  chmod 0644 ${GRAFANA_PATHS.keyring}.new
  mv -f ${GRAFANA_PATHS.keyring}.new ${GRAFANA_PATHS.keyring}
  rm -rf "$key_dir"
fi
echo ${shQuote(`deb [signed-by=${GRAFANA_PATHS.keyring}] https://apt.grafana.com stable main`)} >${GRAFANA_PATHS.sources}.new
if cmp -s ${GRAFANA_PATHS.sources}.new ${GRAFANA_PATHS.sources}; then rm -f ${GRAFANA_PATHS.sources}.new; else
  mv -f ${GRAFANA_PATHS.sources}.new ${GRAFANA_PATHS.sources}
  ${aptGetUpdate("-qq", "  ")}
fi
if [ "$(dpkg-query -W -f='\${Version}' grafana 2>/dev/null || true)" != ${shQuote(role.grafana.version)} ]; then
  apt-mark unhold grafana >/dev/null 2>&1 || true
  # The configuration files are Phoenix's: keep them over the package's on an upgrade.
  DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y -qq --no-install-recommends --allow-downgrades -o Dpkg::Options::=--force-confold ${shQuote(`grafana=${role.grafana.version}`)}
fi
apt-mark hold grafana >/dev/null
install -d -m 0750 -o grafana -g grafana ${shQuote(grafanaDataDir(config))}
install -d -m 0755 ${GRAFANA_PATHS.dashboards}
if [ ! -s ${GRAFANA_PATHS.adminPassword} ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >${GRAFANA_PATHS.adminPassword})
fi
chown root:grafana ${GRAFANA_PATHS.adminPassword}
chmod 0640 ${GRAFANA_PATHS.adminPassword}`;
}
