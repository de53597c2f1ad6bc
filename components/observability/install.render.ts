/**
 * The ops guest's files and install script: Prometheus, Alertmanager and
 * node_exporter from their pinned, checksummed releases, as systemd units
 * whose data lives on the dataset mounted at role.dataDir. The staged
 * installer validates with the releases' own promtool and amtool before
 * anything reloads, and puts the old files back when the services do not
 * come back ready.
 */
import type { Guest, StackConfig } from "../../stacks/schema";
import { guestOfRole } from "../../stacks/routing";
import { fileList, shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls } from "../render/install-script";
import { sandboxLines } from "../render/systemd-sandbox";
import { renderHostsBlock } from "../render/hosts";
import { alertRules, OBS_PATHS, probeHosts, renderAlertmanagerYaml, renderBlackboxYaml, renderPrometheusConfig, renderRulesYaml } from "./config.render";
import { BIN, observabilityReleases, observabilityRole } from "./releases";
import { opsLogParts } from "./logs.render";

export const UNITS = { prometheus: "prometheus.service", alertmanager: "alertmanager.service", nodeExporter: "node-exporter.service", blackboxExporter: "blackbox-exporter.service" } as const;

export interface ObservabilityInputs {
  /** The Step-CA root certificate (PEM), which the TLS probes verify against. */
  caRootPem: string;
}
export const unitPath = (unit: string) => `/etc/systemd/system/${unit}`;

/** Where each service keeps its data on the dataset. */
export function dataDirs(config: StackConfig): { prometheus: string; alertmanager: string } {
  const dir = observabilityRole(config).dataDir;
  return { prometheus: `${dir}/prometheus`, alertmanager: `${dir}/alertmanager` };
}

export interface UnitSpec {
  description: string;
  user: string;
  exec: string[];
  /** SIGHUP re-reads the configuration (Prometheus and Alertmanager both reload on it). */
  reloadOnHup: boolean;
  writes: string[];
  /** Groups the service joins besides its user's (systemd.exec SupplementaryGroups=). */
  groups?: string[];
  /** More [Service] lines, e.g. LoadCredential=. */
  extra?: string[];
}

function renderUnit(config: StackConfig, spec: UnitSpec): string {
  return renderGuestUnit(guestOfRole(config, "observability"), spec);
}

/** A sandboxed service unit for a binary Phoenix installed, on any guest or on the host (which gets the full sandbox). */
export function renderGuestUnit(guest: Guest | "host", spec: UnitSpec): string {
  const sandbox = sandboxLines(guest, { readWritePaths: spec.writes });
  return `[Unit]
Description=${spec.description}
After=network-online.target
Wants=network-online.target

[Service]
User=${spec.user}
Group=${spec.user}
${spec.groups?.length ? `SupplementaryGroups=${spec.groups.join(" ")}\n` : ""}ExecStart=${spec.exec.join(" \\\n  ")}
${spec.reloadOnHup ? "ExecReload=/bin/kill -HUP $MAINPID\n" : ""}Restart=on-failure
RestartSec=5s
CapabilityBoundingSet=
NoNewPrivileges=true
${[...(spec.extra ?? []), ...sandbox].map((l) => `${l}\n`).join("")}
[Install]
WantedBy=multi-user.target
`;
}

export function renderObservabilityFiles(config: StackConfig, inputs: ObservabilityInputs): RenderedFile[] {
  const role = observabilityRole(config);
  const data = dataDirs(config);
  // The versions are in the units so that a new release restarts the service.
  return fileList([
    { path: OBS_PATHS.prometheusConfig, content: renderPrometheusConfig(config) },
    { path: OBS_PATHS.rules, content: renderRulesYaml(alertRules(role)) },
    { path: OBS_PATHS.alertmanagerConfig, content: renderAlertmanagerYaml() },
    { path: OBS_PATHS.blackboxConfig, content: renderBlackboxYaml() },
    { path: OBS_PATHS.caRoot, content: inputs.caRootPem.endsWith("\n") ? inputs.caRootPem : `${inputs.caRootPem}\n` },
    {
      path: unitPath(UNITS.prometheus),
      content: renderUnit(config, {
        description: `Prometheus ${role.prometheus.version} (Phoenix metrics)`,
        user: "prometheus",
        // prometheus@v3.5.5 cmd/prometheus/main.go: config.file, web.listen-address, storage.tsdb.path, storage.tsdb.retention.time.
        exec: [BIN.prometheus, `--config.file=${OBS_PATHS.prometheusConfig}`, `--web.listen-address=:${role.prometheus.port}`, `--storage.tsdb.path=${data.prometheus}`, `--storage.tsdb.retention.time=${role.prometheus.retentionDays}d`],
        reloadOnHup: true,
        writes: [data.prometheus],
      }),
    },
    {
      path: unitPath(UNITS.alertmanager),
      content: renderUnit(config, {
        description: `Alertmanager ${role.alertmanager.version} (Phoenix alerts)`,
        user: "alertmanager",
        // alertmanager@v0.34.0 cmd/alertmanager/main.go:51-72: an empty cluster.listen-address turns HA gossip off.
        exec: [BIN.alertmanager, `--config.file=${OBS_PATHS.alertmanagerConfig}`, `--storage.path=${data.alertmanager}`, `--web.listen-address=:${role.alertmanager.port}`, "--cluster.listen-address="],
        reloadOnHup: true,
        writes: [data.alertmanager],
      }),
    },
    {
      path: unitPath(UNITS.nodeExporter),
      content: renderUnit(config, {
        description: `node_exporter ${role.nodeExporter.version} (Phoenix)`,
        user: "node-exporter",
        exec: [BIN.nodeExporter, `--web.listen-address=:${role.nodeExporter.port}`],
        reloadOnHup: false,
        writes: [],
      }),
    },
    {
      path: unitPath(UNITS.blackboxExporter),
      content: renderUnit(config, {
        description: `blackbox_exporter ${role.blackboxExporter.version} (Phoenix TLS probes)`,
        user: "blackbox-exporter",
        // Only Prometheus on this guest asks it to probe: it listens on the loopback alone (blackbox_exporter@v0.28.0 main.go).
        exec: [BIN.blackboxExporter, `--config.file=${OBS_PATHS.blackboxConfig}`, `--web.listen-address=127.0.0.1:${role.blackboxExporter.port}`],
        reloadOnHup: true,
        writes: [],
      }),
    },
    // Loki and Grafana (logs.render.ts).
    ...opsLogParts(config).files,
  ]);
}

export const systemUser = (name: string) => `if ! id -u ${name} >/dev/null 2>&1; then useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${name}; fi`;

export function renderObservabilityInstallScript(config: StackConfig, inputs: ObservabilityInputs): string {
  const role = observabilityRole(config);
  const data = dataDirs(config);
  const ready = (port: number, path: string) => `curl -fsS --max-time 3 http://127.0.0.1:${port}${path} >/dev/null`;
  const logs = opsLogParts(config);
  const all = Object.values(UNITS);
  const reloads: [string, string[]][] = [
    [UNITS.nodeExporter, []],
    [UNITS.blackboxExporter, [OBS_PATHS.blackboxConfig, OBS_PATHS.caRoot]],
    [UNITS.alertmanager, [OBS_PATHS.alertmanagerConfig]],
    [UNITS.prometheus, [OBS_PATHS.prometheusConfig, OBS_PATHS.rules]],
  ];
  return renderInstallScript({
    name: "observability",
    description: "Prometheus, Alertmanager and node_exporter: pinned releases, configuration, systemd units",
    prepare: `${renderAptEnsure(["curl", "ca-certificates", ...logs.packages])}
# The data lives on the declared dataset, never on the guest's root disk.
if ! mountpoint -q ${shQuote(role.dataDir)}; then
  echo ${shQuote(`observability: ${role.dataDir} is not a mount point; the stack mounts a dataset there (guests[].mounts)`)} >&2
  exit 1
fi
${systemUser("prometheus")}
${systemUser("alertmanager")}
${systemUser("node-exporter")}
${systemUser("blackbox-exporter")}
${renderHostsBlock(probeHosts(config))}
install -d -m 0750 -o prometheus -g prometheus ${shQuote(data.prometheus)}
install -d -m 0750 -o alertmanager -g alertmanager ${shQuote(data.alertmanager)}
${renderReleaseInstalls([...observabilityReleases(role), ...logs.releases])}
${logs.prepare}`,
    files: renderObservabilityFiles(config, inputs),
    // promtool check config also checks the rule files prometheus.yml names.
    validate: `${BIN.promtool} check config ${OBS_PATHS.prometheusConfig}
${BIN.amtool} check-config ${OBS_PATHS.alertmanagerConfig}
${BIN.blackboxExporter} --config.check --config.file=${OBS_PATHS.blackboxConfig}
systemd-analyze verify ${all.map(unitPath).join(" ")}
${logs.validate}`,
    // A changed unit restarts its service; a changed configuration is re-read (SIGHUP), keeping the TSDB head in memory.
    reload: `systemctl daemon-reload
${reloads.map(([unit, configs]) => `systemctl enable --quiet ${unit}
if changed_file ${unitPath(unit)} || ! systemctl is-active --quiet ${unit}; then
  systemctl restart ${unit}
${configs.length > 0 ? `elif ${configs.map((c) => `changed_file ${c}`).join(" || ")}; then
  systemctl reload ${unit}
` : ""}fi`).join("\n")}
${logs.reload}`,
    verify: `${ready(role.prometheus.port, "/-/ready")} && ${ready(role.alertmanager.port, "/-/ready")} && ${ready(role.nodeExporter.port, "/metrics")} && ${ready(role.blackboxExporter.port, "/-/healthy")} && ${logs.verify.join(" && ")}`,
    finish: `systemctl enable --now --quiet ${[...all, ...logs.units].join(" ")}`,
  });
}
