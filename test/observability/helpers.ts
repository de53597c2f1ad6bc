/** Shared by the observability tests: the prod stack's ops guest, its rendered files laid out as on the guest, and the exporters' metric lists. */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { OBS_PATHS } from "../../components/observability/config.render";
import { renderObservabilityFiles } from "../../components/observability/install.render";
import { EXPORTER_METRIC_LISTS } from "../../components/observability/releases";
import type { RawStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { configOf, prodRaw } from "../models/helpers";
import { ROOT, tempDir } from "../support";

export { configOf, prodRaw };

/** The prod stack with its guests edited: for the validation and threshold tests. */
export function prodWith(edit: (guests: Record<string, unknown>[]) => void): RawStack {
  const raw = prodRaw();
  const guests = structuredClone(raw.values.guests) as Record<string, unknown>[];
  edit(guests);
  return { ...raw, values: { ...raw.values, guests } };
}

export const opsIndex = (guests: Record<string, unknown>[]): number => guests.findIndex((g) => (g.role as { type?: string } | undefined)?.type === "observability");

/** A real self-signed certificate standing in for the Step-CA root (blackbox_exporter reads its ca_file). */
export function testCaPem(): string {
  const dir = tempDir("obs-ca");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Phoenix test root", "-days", "1", "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "root.pem")], { stdio: "pipe" });
  return fs.readFileSync(path.join(dir, "root.pem"), "utf8");
}

/** A fixed PEM for golden files (no tool reads it there). */
export const GOLDEN_CA_PEM = "-----BEGIN CERTIFICATE-----\nUGhvZW5peCBnb2xkZW4gZmlsZSBzdGFuZC1pbiBmb3IgdGhlIFN0ZXAtQ0Egcm9vdA==\n-----END CERTIFICATE-----\n";

/** Writes Prometheus' files into dir as prometheus.yml beside rules/, the layout rule_files resolves against. */
export function layPrometheusFiles(config: StackConfig, dir: string, prometheusYaml?: string): string {
  const files = new Map(renderObservabilityFiles(config, { caRootPem: GOLDEN_CA_PEM }).map((f) => [f.path, f.content]));
  fs.mkdirSync(path.join(dir, "rules"), { recursive: true });
  const configFile = path.join(dir, "prometheus.yml");
  fs.writeFileSync(configFile, prometheusYaml ?? files.get(OBS_PATHS.prometheusConfig)!);
  fs.writeFileSync(path.join(dir, "rules", path.basename(OBS_PATHS.rules)), files.get(OBS_PATHS.rules)!);
  return configFile;
}

/** The metric names listed beside an exporter (comment lines start with #). */
export function metricList(exporter: keyof typeof EXPORTER_METRIC_LISTS): Set<string> {
  const text = fs.readFileSync(path.join(ROOT, "components", "observability", "metrics", EXPORTER_METRIC_LISTS[exporter]), "utf8");
  return new Set(
    text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#")),
  );
}

const PROMQL_WORDS = new Set(["and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"]);

/**
 * The metric names a PromQL expression reads: identifiers that are neither
 * functions (followed by "("), keywords, label names inside {…} or grouping
 * lists, nor durations. Enough for the rules Phoenix writes, which the test
 * checks it on.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\[[^\]]*\]/g, " ");
  const names: string[] = [];
  for (const m of stripped.matchAll(/[A-Za-z0-9_.:]+/g)) {
    const word = m[0];
    const next = stripped.slice(m.index + word.length).trimStart();
    // Numbers (10, 1e3, 0.5) and function calls are not metric names.
    if (/^[0-9.]/.test(word) || next.startsWith("(") || PROMQL_WORDS.has(word.toLowerCase())) continue;
    names.push(word);
  }
  return [...new Set(names)];
}
