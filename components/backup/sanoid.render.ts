/**
 * /etc/sanoid/sanoid.conf from the stack's snapshot policies. sanoid reads it with
 * Config::IniFiles: one `[template_<name>]` section per template, one `[<pool>/<dataset>]` section
 * per dataset naming its template with `use_template`. The keys are those of sanoid's
 * sanoid.defaults.conf `[template_default]` (jimsalterjrs/sanoid v2.1.0–v2.3.0: frequently,
 * hourly, daily, weekly, monthly, yearly, autosnap, autoprune, use_template); sanoid dies on any
 * other ("FATAL ERROR: I don't understand the setting", sanoid sub init). Dataset and template
 * names are held by the schema to characters that carry no INI meaning (no `]`, `;`, `#`, `=`,
 * spaces or line breaks), so they are written as they are.
 */
import type { BackupConfig } from "../../stacks/schema";

/** Where the Debian package's units read the config (sanoid.service: ConditionFileNotEmpty=/etc/sanoid/sanoid.conf). */
export const SANOID_CONF = "/etc/sanoid/sanoid.conf";

const PERIODS = ["frequently", "hourly", "daily", "weekly", "monthly", "yearly"] as const;

/**
 * Templates are prefixed `phoenix_`: a template the stack called `default` would otherwise be
 * sanoid's `[template_default]`, which it applies to every section.
 */
const templateSection = (name: string): string => `template_phoenix_${name}`;

/** sanoid.conf for the declared policies; only templates some dataset uses are written. */
export function renderSanoidConf(snapshots: BackupConfig["snapshots"]): string {
  const used = [...new Set(snapshots.datasets.map((d) => d.template))].sort();
  const lines = ["# Written by Phoenix from phoenix:backup.snapshots; edits here are replaced on the next apply.", ""];
  for (const name of used) {
    const t = snapshots.templates[name]!;
    lines.push(`[${templateSection(name)}]`, ...PERIODS.map((p) => `\t${p} = ${t[p]}`), "\tautosnap = yes", "\tautoprune = yes", "");
  }
  for (const d of [...snapshots.datasets].sort((a, b) => a.dataset.localeCompare(b.dataset))) {
    lines.push(`[${d.dataset}]`, `\tuse_template = phoenix_${d.template}`, "");
  }
  return lines.join("\n");
}
