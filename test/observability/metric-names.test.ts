/**
 * Every metric name the alert rules read exists in the list kept beside its
 * exporter (components/observability/metrics/), each taken from the
 * exporter's source at the version Phoenix pins.
 */
import { describe, expect, it } from "vitest";
import { alertRules } from "../../components/observability/config.render";
import { EXPORTER_METRIC_LISTS, observabilityRole } from "../../components/observability/releases";
import { configOf, metricList, metricNamesIn, prodRaw } from "./helpers";

const rules = alertRules(observabilityRole(configOf(prodRaw())));
const lists = Object.fromEntries(Object.keys(EXPORTER_METRIC_LISTS).map((e) => [e, metricList(e as keyof typeof EXPORTER_METRIC_LISTS)])) as Record<keyof typeof EXPORTER_METRIC_LISTS, Set<string>>;

describe("metric names", () => {
  it("are read out of PromQL without functions, labels, keywords or numbers", () => {
    expect(metricNamesIn(`100 * (1 - node_filesystem_avail_bytes{fstype="zfs", x=~"a|b"} / node_filesystem_size_bytes{fstype="zfs"}) > 80`)).toEqual(["node_filesystem_avail_bytes", "node_filesystem_size_bytes"]);
    expect(metricNamesIn(`sum by (instance) (rate(vllm:e2e_request_latency_seconds_count[5m])) > 1e3 and on(instance) up == bool 0`)).toEqual(["vllm:e2e_request_latency_seconds_count", "up"]);
  });

  it("of every rule exist in an exporter's list at its pinned version", () => {
    const unknown: string[] = [];
    for (const r of rules) {
      const names = metricNamesIn(r.expr);
      expect(names.length, `${r.alert} reads no metric`).toBeGreaterThan(0);
      for (const n of names) if (!Object.values(lists).some((l) => l.has(n))) unknown.push(`${r.alert}: ${n}`);
    }
    expect(unknown).toEqual([]);
  });

  it("a name no exporter has is caught", () => {
    expect(Object.values(lists).some((l) => l.has("node_memory_MemAvailable"))).toBe(false);
    expect(Object.values(lists).some((l) => l.has("vllm:gpu_cache_usage_perc"))).toBe(false);
  });

  it("lists hold only their exporter's names, among them those the rules read", () => {
    expect(lists.node.size).toBeGreaterThan(1000);
    expect([...lists.gpu].every((n) => n.startsWith("nvidia_smi_"))).toBe(true);
    expect([...lists.vllm].every((n) => n.startsWith("vllm:"))).toBe(true);
    expect([...lists.llamacpp].every((n) => n.startsWith("llamacpp:"))).toBe(true);
    for (const name of ["node_zfs_zpool_state", "node_zfs_arc_size", "node_memory_MemTotal_bytes", "node_filesystem_avail_bytes"]) expect(lists.node.has(name), name).toBe(true);
    for (const name of ["nvidia_smi_temperature_gpu", "nvidia_smi_memory_used_bytes", "nvidia_smi_memory_total_bytes"]) expect(lists.gpu.has(name), name).toBe(true);
  });
});
