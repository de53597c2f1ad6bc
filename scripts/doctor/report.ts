/** The doctor's output: one table for people, or JSON for machines. Pure. */
import type { Diagnosis, Finding } from "./diagnose";

export interface Report {
  ok: boolean;
  /** What the doctor could not know and worked around (no outputs, no CA root). */
  notes: string[];
  findings: Finding[];
  diagnoses: Diagnosis[];
}

export function renderJson(report: Report): string {
  return JSON.stringify(report, null, 2);
}

export function renderTable(report: Report): string {
  const rows = [["SERVICE", "LAYER", "RESULT", "DETAIL"], ...report.findings.map((f) => [f.service, `${f.layer}/${f.check}`, f.status.toUpperCase(), f.detail])];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [...report.notes.map((n) => `note: ${n}`), ...rows.map((r) => r.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join("  ").trimEnd())];
  if (report.diagnoses.length === 0) {
    lines.push("", `All ${new Set(report.findings.map((f) => f.service)).size} services healthy.`);
    return lines.join("\n");
  }
  for (const d of report.diagnoses) {
    lines.push("", `${d.service}: fails at ${d.layer} (${d.check}): ${d.detail}`, ...d.hints.map((h) => `  → ${h}`));
  }
  return lines.join("\n");
}
