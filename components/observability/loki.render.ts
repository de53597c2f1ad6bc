/**
 * Loki on the ops guest: one process holding every journal Alloy ships, its
 * chunks, index and compactor state under the role's dataDir (the declared
 * dataset). Pure: typed config in, YAML out.
 *
 * No Debian package carries Loki 3 (bookworm's `loki` is 2.4.7, without the tsdb
 * index or schema v13), so the tests check every key of the rendered file
 * against the key list read from Loki's config structs at the pinned tag
 * (test/reference/loki/); on the guest, the release's own `loki
 * -verify-config` judges it before anything reloads.
 */
import { stringify } from "yaml";
import type { StackConfig } from "../../stacks/schema";
import type { PinnedRelease } from "../render/install-script";
import { observabilityRole } from "./releases";

export const LOKI_PATHS = { config: "/etc/loki/config.yml", binary: "/usr/local/bin/loki", unit: "loki.service" } as const;

/** The first day of the one schema period. A date in the past: Loki reads it as the start of the only period (schema_config.go, PeriodConfig.From). */
const SCHEMA_FROM = "2025-01-01";

/**
 * loki@v3.6.15 Makefile `dist`: each binary is zipped as dist/loki-linux-amd64.zip (zip -j, the binary
 * loki-linux-amd64 inside) and `sha256sum *` writes dist/SHA256SUMS beside them; tools/release uploads
 * dist/ to the GitHub release (tools/release-note.md names loki-linux-amd64.zip).
 */
export function lokiRelease(version: string): PinnedRelease {
  const base = `https://github.com/grafana/loki/releases/download/v${version}`;
  return { name: "loki", version, url: `${base}/loki-linux-amd64.zip`, checksumsUrl: `${base}/SHA256SUMS`, binary: "loki-linux-amd64", installAs: LOKI_PATHS.binary };
}

export function lokiDataDir(config: StackConfig): string {
  return `${observabilityRole(config).dataDir}/loki`;
}

/**
 * Single-process Loki on the filesystem, after loki@v3.6.15 cmd/loki/loki-local-config.yaml: the
 * common block with an in-memory ring and one replica, a tsdb/v13 schema; plus retention by the
 * compactor (pkg/compactor/config.go: retention_enabled needs delete_request_store) and no usage
 * reports to Grafana Labs (pkg/analytics/reporter.go: reporting_enabled). gRPC stays on the loopback:
 * only the HTTP push and query API is for other machines.
 */
export function renderLokiYaml(config: StackConfig): string {
  const role = observabilityRole(config);
  const dir = lokiDataDir(config);
  const doc = {
    auth_enabled: false,
    server: { http_listen_port: role.loki.port, grpc_listen_address: "127.0.0.1", grpc_listen_port: 9096, log_level: "info" },
    common: {
      instance_addr: "127.0.0.1",
      path_prefix: dir,
      storage: { filesystem: { chunks_directory: `${dir}/chunks`, rules_directory: `${dir}/rules` } },
      replication_factor: 1,
      ring: { kvstore: { store: "inmemory" } },
    },
    schema_config: { configs: [{ from: SCHEMA_FROM, store: "tsdb", object_store: "filesystem", schema: "v13", index: { prefix: "index_", period: "24h" } }] },
    limits_config: { retention_period: `${role.loki.retentionDays * 24}h` },
    compactor: { working_directory: `${dir}/compactor`, retention_enabled: true, delete_request_store: "filesystem" },
    analytics: { reporting_enabled: false },
  };
  return `# Phoenix: Loki configuration. Generated; changes made here are overwritten.\n${stringify(doc)}`;
}

/** Loki's push endpoint as the shippers reach it (pkg/loghttp/push: POST /loki/api/v1/push). */
export function lokiPushUrl(opsIp: string, port: number): string {
  return `http://${opsIp}:${port}/loki/api/v1/push`;
}
