/**
 * What Loki and Grafana add to the ops guest's install (install.render.ts):
 * their files, the prepare, validate and verify steps, and which unit reloads
 * on which file.
 */
import type { StackConfig } from "../../stacks/schema";
import { guestOfRole } from "../../stacks/routing";
import { shQuote, type RenderedFile } from "../render/files";
import { renderGuestUnit, systemUser, UNITS } from "./install.render";
import { GRAFANA_PATHS, renderGrafanaFiles, renderGrafanaPrepare } from "./grafana.render";
import { LOKI_PATHS, lokiDataDir, lokiRelease, renderLokiYaml } from "./loki.render";
import { observabilityRole, type ObservabilityRole } from "./releases";
import type { PinnedRelease } from "../render/install-script";

export interface OpsParts {
  files: RenderedFile[];
  releases: PinnedRelease[];
  /** Debian packages the prepare step needs. */
  packages: string[];
  prepare: string;
  validate: string;
  /** Shell for the reload step, after systemctl daemon-reload. */
  reload: string;
  verify: string[];
  units: string[];
}

function restartOn(units: [string, string[]][]): string {
  return units
    .map(([unit, files]) => `systemctl enable --quiet ${unit}
if ${files.map((f) => `changed_file ${f}`).join(" || ")} || ! systemctl is-active --quiet ${unit}; then
  systemctl restart ${unit}
fi`)
    .join("\n");
}

export function opsLogParts(config: StackConfig): OpsParts {
  const role = observabilityRole(config);
  const lokiUnit = `/etc/systemd/system/${LOKI_PATHS.unit}`;
  const ready = (port: number, path: string) => `curl -fsS --max-time 3 http://127.0.0.1:${port}${path} >/dev/null`;
  return {
    files: [
      { path: LOKI_PATHS.config, content: renderLokiYaml(config) },
      {
        path: lokiUnit,
        content: renderGuestUnit(guestOfRole(config, "observability"), {
          description: `Loki ${role.loki.version} (Phoenix logs)`,
          user: "loki",
          // loki@v3.6.15 pkg/loki/config_wrapper.go and tools/packaging/loki.service: -config.file.
          exec: [LOKI_PATHS.binary, `-config.file=${LOKI_PATHS.config}`],
          reloadOnHup: false,
          writes: [lokiDataDir(config)],
        }),
      },
      ...renderGrafanaFiles(config),
    ],
    releases: [lokiRelease(role.loki.version)],
    packages: ["unzip", "gnupg"],
    prepare: `${systemUser("loki")}
install -d -m 0750 -o loki -g loki ${shQuote(lokiDataDir(config))}
${renderGrafanaPrepare(config)}`,
    // loki@v3.6.15 pkg/loki/config_wrapper.go:54: -verify-config checks the file and exits.
    validate: `${LOKI_PATHS.binary} -verify-config -config.file=${LOKI_PATHS.config}
systemd-analyze verify ${lokiUnit}`,
    // Neither Loki nor the package's grafana-server.service reloads on a signal: a changed file restarts them.
    // Grafana re-reads provisioning only at start; changed dashboard files are picked up by the file provider.
    reload: restartOn([
      [LOKI_PATHS.unit, [lokiUnit, LOKI_PATHS.config]],
      [GRAFANA_PATHS.unit, [GRAFANA_PATHS.ini, GRAFANA_PATHS.datasources, GRAFANA_PATHS.dashboardProvider]],
    ]),
    // loki@v3.6.15 pkg/loki/modules.go registers /ready; grafana's /api/health answers once its database is up.
    verify: [ready(role.loki.port, "/ready"), ready(role.grafana.port, "/api/health")],
    units: [LOKI_PATHS.unit, GRAFANA_PATHS.unit],
  };
}

/** The unit on the ops guest that listens on a port of the role (for the doctor's checks and hints). */
export function observabilityUnitAt(role: ObservabilityRole, port: number): string | undefined {
  const byPort = new Map<number, string>([
    [role.prometheus.port, UNITS.prometheus],
    [role.alertmanager.port, UNITS.alertmanager],
    [role.nodeExporter.port, UNITS.nodeExporter],
    [role.loki.port, LOKI_PATHS.unit],
    [role.grafana.port, GRAFANA_PATHS.unit],
  ]);
  return byPort.get(port);
}
