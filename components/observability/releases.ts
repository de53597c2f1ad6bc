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

/**
 * A release goreleaser publishes with its default naming: <project>_<version>_linux_<arch>.tar.gz
 * beside a checksums file. unverified: goreleaser's default archive and checksum name templates
 * ({{ .ProjectName }}_{{ .Version }}_{{ .Os }}_{{ .Arch }}, {{ .ProjectName }}_{{ .Version }}_checksums.txt)
 * were not read in goreleaser's source, which is not among the stored ones.
 */
function goreleaserRelease(repo: string, version: string, archive: string, checksums: string, binary: string, installAs: string): PinnedRelease {
  const base = `https://github.com/${repo}/releases/download/v${version}`;
  return { name: binary, version, url: `${base}/${archive}`, checksumsUrl: `${base}/${checksums}`, binary, installAs };
}

export const BIN = {
  prometheus: "/usr/local/bin/prometheus",
  promtool: "/usr/local/bin/promtool",
  alertmanager: "/usr/local/bin/alertmanager",
  amtool: "/usr/local/bin/amtool",
  nodeExporter: "/usr/local/bin/node_exporter",
  blackboxExporter: "/usr/local/bin/blackbox_exporter",
  gpuExporter: "/usr/local/bin/nvidia_gpu_exporter",
  nginxExporter: "/usr/local/bin/nginx-prometheus-exporter",
} as const;

export function nodeExporterRelease(role: ObservabilityRole): PinnedRelease {
  return promuRelease("prometheus/node_exporter", role.nodeExporter.version, "node_exporter", BIN.nodeExporter);
}

/** utkuozdemir/nvidia_gpu_exporter@v1.14.0 .goreleaser.yml: archive nvidia_gpu_exporter_<version>_linux_x86_64, checksum name_template checksums.txt. */
export function gpuExporterRelease(role: ObservabilityRole): PinnedRelease {
  const v = role.gpuExporterVersion;
  return goreleaserRelease("utkuozdemir/nvidia_gpu_exporter", v, `nvidia_gpu_exporter_${v}_linux_x86_64.tar.gz`, "checksums.txt", "nvidia_gpu_exporter", BIN.gpuExporter);
}

/** nginx/nginx-prometheus-exporter@v1.5.3 .goreleaser.yml: goreleaser's default archive and checksum names (unverified, see goreleaserRelease). */
export function nginxExporterRelease(role: ObservabilityRole): PinnedRelease {
  const v = role.nginxExporter.version;
  return goreleaserRelease("nginx/nginx-prometheus-exporter", v, `nginx-prometheus-exporter_${v}_linux_amd64.tar.gz`, `nginx-prometheus-exporter_${v}_checksums.txt`, "nginx-prometheus-exporter", BIN.nginxExporter);
}

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
    nodeExporterRelease(role),
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
  traefik: "traefik.txt",
  nginx: "nginx_exporter.txt",
  pve: "pve_exporter.txt",
  /** The series Phoenix's own textfile script writes on the host (exporters.render.ts). */
  phoenix: "phoenix_textfile.txt",
} as const;
