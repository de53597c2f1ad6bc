/**
 * Grafana Alloy on a container, a Docker host VM or the Proxmox node: reads the
 * systemd journal and pushes it to the ops guest's Loki, every line labelled
 * with the machine's id, name and role (the host: "host", the node's name,
 * "host") and the unit that wrote it. Pure: typed config in, Alloy syntax and an install
 * script out.
 */
import type { Guest, StackConfig } from "../../stacks/schema";
import { guestIp, guestOfRole } from "../../stacks/routing";
import { machineLabels } from "../../stacks/scrape";
import { fileList, shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript, renderReleaseInstalls, type PinnedRelease } from "../render/install-script";
import { renderGuestUnit, systemUser, unitPath } from "./install.render";
import { lokiPushUrl } from "./loki.render";
import { observabilityRole } from "./releases";

export const ALLOY_PATHS = { config: "/etc/alloy/config.alloy", binary: "/usr/local/bin/alloy", data: "/var/lib/alloy", unit: "alloy.service" } as const;

/**
 * alloy@v1.18.1 build-tools/make/packaging.mk builds dist/alloy-linux-amd64; scripts/publish-release-artifacts.sh
 * zips each binary (zip -j -m "{}.zip") and writes dist/SHA256SUMS (sha256sum -- *) before `gh release upload`.
 */
export function alloyRelease(version: string): PinnedRelease {
  const base = `https://github.com/grafana/alloy/releases/download/v${version}`;
  return { name: "alloy", version, url: `${base}/alloy-linux-amd64.zip`, checksumsUrl: `${base}/SHA256SUMS`, binary: "alloy-linux-amd64", installAs: ALLOY_PATHS.binary };
}

/**
 * A string literal in Alloy syntax. Its escapes are Go's (alloy@v1.18.1 syntax/scanner/scanner.go,
 * scanEscape: \" \\ \n \t \uXXXX …), a superset of what JSON.stringify writes, except a lone
 * surrogate's \uD8xx, which Alloy refuses: refused here first.
 */
export function alloyString(value: string): string {
  if (/[\uD800-\uDFFF]/.test(value.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ""))) throw new Error(`alloy: ${JSON.stringify(value)} holds a lone UTF-16 surrogate`);
  return JSON.stringify(value);
}

/** The labels that say which machine a log line comes from, the same as its scrape targets' (stacks/scrape.ts machineLabels). */
export type LogSource = ReturnType<typeof machineLabels>;

/**
 * The pipeline: loki.source.journal → loki.write. Component arguments as alloy@v1.18.1 declares them:
 * internal/component/loki/source/journal/types.go (forward_to, labels, relabel_rules, max_age),
 * internal/component/loki/relabel/relabel.go (forward_to, rule blocks; exports rules),
 * internal/component/common/relabel/relabel.go (source_labels, target_label),
 * internal/component/loki/write/write.go and types.go (endpoint blocks with url).
 * Journal fields arrive as __journal_<field> labels, dropped unless relabelled
 * (docs/sources/reference/components/loki/loki.source.journal.md): the unit and the priority keyword are kept.
 */
export function renderAlloyConfig(source: LogSource, pushUrl: string): string {
  const labels = Object.entries({ guest: source.guest, name: source.name, role: source.role })
    .map(([k, v]) => `    ${k} = ${alloyString(v)},`)
    .join("\n");
  return `// Phoenix: Grafana Alloy, the journal shipped to Loki. Generated; changes made here are overwritten.
loki.relabel "journal" {
  forward_to = []

  rule {
    source_labels = ["__journal__systemd_unit"]
    target_label  = "unit"
  }

  rule {
    source_labels = ["__journal_priority_keyword"]
    target_label  = "level"
  }
}

loki.source.journal "journal" {
  forward_to    = [loki.write.ops.receiver]
  relabel_rules = loki.relabel.journal.rules
  max_age       = "12h"
  labels        = {
${labels}
  }
}

loki.write "ops" {
  endpoint {
    url = ${alloyString(pushUrl)}
  }
}
`;
}

/** The Loki push URL every shipper uses: the ops guest's address and Loki's port. */
export function stackPushUrl(config: StackConfig): string {
  return lokiPushUrl(guestIp(guestOfRole(config, "observability")), observabilityRole(config).loki.port);
}

/** Where Alloy runs: a guest (a container through `pct exec`, a VM through its guest agent) or the Proxmox node itself. */
export type AlloyMachine = Guest | "host";

export function renderAlloyFiles(config: StackConfig, on: AlloyMachine): RenderedFile[] {
  const role = observabilityRole(config);
  return fileList([
    { path: ALLOY_PATHS.config, content: renderAlloyConfig(machineLabels(config, on), stackPushUrl(config)) },
    {
      path: unitPath(ALLOY_PATHS.unit),
      content: renderGuestUnit(on, {
        description: `Grafana Alloy ${role.alloy.version} (Phoenix: the journal to Loki)`,
        user: "alloy",
        // The journal is readable by the systemd-journal and adm groups (loki.source.journal.md's note).
        groups: ["systemd-journal", "adm"],
        // alloy@v1.18.1 internal/alloycli/cmd_run.go: server.http.listen-addr, storage.path; the config file is the argument.
        exec: [ALLOY_PATHS.binary, "run", `--server.http.listen-addr=127.0.0.1:${role.alloy.port}`, `--storage.path=${ALLOY_PATHS.data}`, ALLOY_PATHS.config],
        reloadOnHup: true,
        writes: [ALLOY_PATHS.data],
      }),
    },
  ]);
}

/**
 * The install script for one machine's Alloy: the release, its user and data folder, the config checked by
 * `alloy fmt`. The same script in a container, in a VM (through its guest agent, vm-agents.render.ts) and on
 * the node; on the node and in a VM every path it writes is under "$R" (InstallScriptSpec.onNode), from
 * PHOENIX_ROOT, unset on a real machine.
 */
export function renderAlloyInstallScript(config: StackConfig, on: AlloyMachine): string {
  const role = observabilityRole(config);
  const onNode = on === "host" || on.kind === "vm";
  const at = (p: string) => (onNode ? `"$R"${shQuote(p)}` : p);
  return renderInstallScript({
    name: "alloy",
    description: "Grafana Alloy: the journal shipped to the ops guest's Loki",
    onNode,
    prepare: `${renderAptEnsure(["curl", "ca-certificates", "unzip"])}
${systemUser("alloy")}
install -d -m 0750 -o alloy -g alloy ${at(ALLOY_PATHS.data)}
${renderReleaseInstalls([alloyRelease(role.alloy.version)], { onNode })}`,
    files: renderAlloyFiles(config, on),
    // `alloy fmt` parses the file and fails on a syntax error (alloy@v1.18.1 internal/alloycli/cmd_fmt.go).
    validate: `${at(ALLOY_PATHS.binary)} fmt ${at(ALLOY_PATHS.config)} >/dev/null
systemd-analyze verify ${at(unitPath(ALLOY_PATHS.unit))}`,
    reload: `systemctl daemon-reload
systemctl enable --quiet ${ALLOY_PATHS.unit}
if changed_file ${unitPath(ALLOY_PATHS.unit)} || ! systemctl is-active --quiet ${ALLOY_PATHS.unit}; then
  systemctl restart ${ALLOY_PATHS.unit}
elif changed_file ${ALLOY_PATHS.config}; then
  systemctl reload ${ALLOY_PATHS.unit}
fi`,
    // alloy@v1.18.1 internal/service/http/http.go serves /-/ready once the components are loaded.
    verify: `curl -fsS --max-time 3 http://127.0.0.1:${role.alloy.port}/-/ready >/dev/null`,
    finish: `systemctl enable --now --quiet ${ALLOY_PATHS.unit}`,
  });
}
