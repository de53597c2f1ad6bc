/** The doctor's output: one table for people, or JSON for machines. Pure. */
import type { Diagnosis, Finding } from "./diagnose";
import { renderTelemetry } from "./telemetry";

export interface Report {
  ok: boolean;
  /** What the doctor could not know and worked around (no outputs, no CA root). */
  notes: string[];
  findings: Finding[];
  diagnoses: Diagnosis[];
  /** In a cluster: the node each service's guest runs on; the table gets a NODE column, grouped by node. */
  nodes?: Record<string, string>;
}

export function renderJson(report: Report): string {
  return JSON.stringify(report, null, 2);
}

export function renderTable(report: Report): string {
  const { nodes } = report;
  // Grouped by node (stable: plan order within a node); findings that are no service's (the node's own preflight) come first.
  const findings = nodes ? [...report.findings].sort((a, b) => (nodes[a.service] ?? "").localeCompare(nodes[b.service] ?? "")) : report.findings;
  const rows = [[...(nodes ? ["NODE"] : []), "SERVICE", "LAYER", "RESULT", "DETAIL"], ...findings.map((f) => [...(nodes ? [nodes[f.service] ?? "-"] : []), f.service, `${f.layer}/${f.check}`, f.status.toUpperCase(), f.detail])];
  const last = rows[0]!.length - 1;
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [...report.notes.map((n) => `note: ${n}`), ...rows.map((r) => r.map((cell, i) => (i < last ? cell.padEnd(widths[i]!) : cell)).join("  ").trimEnd())];
  if (report.diagnoses.length === 0) {
    lines.push("", `All ${new Set(report.findings.map((f) => f.service)).size} services healthy.`);
    return lines.join("\n");
  }
  for (const d of report.diagnoses) {
    lines.push("", `${d.service}${nodes?.[d.service] ? ` (node ${nodes[d.service]})` : ""}: fails at ${d.layer} (${d.check}): ${d.detail}`, ...d.hints.map((h) => `  → ${h}`), ...(d.telemetry ? renderTelemetry(d.telemetry) : []));
  }
  return lines.join("\n");
}
