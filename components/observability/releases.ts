/**
 * The observability tier's pinned releases, and what each exporter is: where
 * it listens, and the file beside this one listing the metric names it
 * exports at its pinned version (metrics/<exporter>.txt), which the rules are
 * tested against.
 */
import type { Role, StackConfig } from "../../stacks/schema";
import type { PinnedRelease } from "../render/install-script";
import { guestOfRole } from "../../stacks/routing";

export type ObservabilityRole = Extract<Role, { type: "observability" }>;

export function observabilityRole(config: StackConfig): ObservabilityRole {
  return guestOfRole(config, "observability").role;
}

/**
 * A release of a Prometheus-project binary as promu publishes it: <name>-<version>.linux-amd64.tar.gz
 * (promu's tarball naming, the archive holding <name>-<version>.linux-amd64/<binary>) beside the
 * release's checksums file. prometheus@v3.14.0 .github/workflows/ci.yml publishes with
 * prometheus/promci publish_release, which runs `promu checksum .tarballs` before `promu release
 * .tarballs`. unverified: the checksums file's name, sha256sums.txt, is promu's (cmd/checksum.go),
 * whose source is not among the stored ones.
 */
function promuRelease(repo: string, version: string, binary: string, installAs: string): PinnedRelease {
  const archiveName = repo.split("/")[1]!;
  const base = `https://github.com/${repo}/releases/download/v${version}`;
  return { name: binary, version, url: `${base}/${archiveName}-${version}.linux-amd64.tar.gz`, checksumsUrl: `${base}/sha256sums.txt`, binary, installAs };
}

export const BIN = {
  prometheus: "/usr/local/bin/prometheus",
  promtool: "/usr/local/bin/promtool",
  alertmanager: "/usr/local/bin/alertmanager",
  amtool: "/usr/local/bin/amtool",
  nodeExporter: "/usr/local/bin/node_exporter",
  blackboxExporter: "/usr/local/bin/blackbox_exporter",
} as const;

/** Every binary the ops guest runs, each from its pinned release, verified before it is installed. */
export function observabilityReleases(role: ObservabilityRole): PinnedRelease[] {
  const p = role.prometheus.version;
  const a = role.alertmanager.version;
  return [
    // prometheus@v3.5.5 .promu.yml builds both prometheus and promtool into the one archive.
    promuRelease("prometheus/prometheus", p, "prometheus", BIN.prometheus),
    promuRelease("prometheus/prometheus", p, "promtool", BIN.promtool),
    // alertmanager@v0.34.0 .promu.yml: alertmanager and amtool.
    promuRelease("prometheus/alertmanager", a, "alertmanager", BIN.alertmanager),
    promuRelease("prometheus/alertmanager", a, "amtool", BIN.amtool),
    promuRelease("prometheus/node_exporter", role.nodeExporter.version, "node_exporter", BIN.nodeExporter),
    promuRelease("prometheus/blackbox_exporter", role.blackboxExporter.version, "blackbox_exporter", BIN.blackboxExporter),
  ];
}

/** The exporters the rules read, each with the list of its metric names at the version Phoenix pins (metrics/<file>). */
export const EXPORTER_METRIC_LISTS = {
  /** Prometheus' own series for every target (prometheus@v3.5.5 scrape/scrape.go: up, scrape_duration_seconds, …). */
  prometheus: "prometheus.txt",
  node: "node_exporter.txt",
  gpu: "nvidia_gpu_exporter.txt",
  vllm: "vllm.txt",
  llamacpp: "llamacpp.txt",
  blackbox: "blackbox_exporter.txt",
} as const;
