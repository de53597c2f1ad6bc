/**
 * What the importer did with every legacy field, and where each Phoenix setting
 * came from. The provenance map is what lets a validation error on
 * `guests[3].network.ip` be reported against the legacy line the user wrote.
 */
import type { ConfigIssue } from "../validate";
import type { LegacyFileName } from "./format";

export interface LegacyRef {
  file: LegacyFileName;
  /** JSON path inside the file, e.g. lxc_configs.801.network_config.ip. */
  path: string;
}

export type EntryKind = "mapped" | "check" | "fill-in" | "unused" | "unsupported" | "secret" | "problem";

export interface ReportEntry {
  kind: EntryKind;
  source: LegacyRef;
  /** Phoenix config path the value went to, when it went somewhere. */
  target?: string;
  message: string;
  /** What the user should do. */
  fix?: string;
  /** For problems: an error stops the import, a warning was fixed or is safe to leave. */
  severity?: "error" | "warning";
}

export function formatRef(ref: LegacyRef): string {
  return ref.path ? `${ref.file}: ${ref.path}` : ref.file;
}

function childPath(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}

/** True when `path` is `prefix` or lies below it. */
function covers(prefix: string, path: string): boolean {
  return path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`);
}

export class ImportLog {
  readonly entries: ReportEntry[] = [];
  private readonly provenance = new Map<string, LegacyRef>();
  private readonly handled: LegacyRef[] = [];

  /** Records where a Phoenix setting came from, without a report line (for whole objects). */
  trace(target: string, source: LegacyRef): void {
    this.provenance.set(target, source);
  }

  mapped(source: LegacyRef, target: string, message = ""): void {
    this.trace(target, source);
    this.handled.push(source);
    this.entries.push({ kind: "mapped", source, target, message });
  }

  /** A value Phoenix needs that the legacy files lack or imply: derived, to be checked. */
  check(source: LegacyRef, target: string, message: string): void {
    this.trace(target, source);
    this.entries.push({ kind: "check", source, target, message });
  }

  /** A placeholder that validates but is certainly wrong until the user replaces it. */
  fillIn(source: LegacyRef, target: string, message: string): void {
    this.trace(target, source);
    this.entries.push({ kind: "fill-in", source, target, message });
  }

  unused(source: LegacyRef, message: string): void {
    this.handled.push(source);
    this.entries.push({ kind: "unused", source, message });
  }

  unsupported(source: LegacyRef, message: string, fix?: string): void {
    this.handled.push(source);
    this.entries.push({ kind: "unsupported", source, message, fix });
  }

  secret(source: LegacyRef, message: string, fix: string): void {
    this.handled.push(source);
    this.entries.push({ kind: "secret", source, message, fix });
  }

  problem(source: LegacyRef, severity: "error" | "warning", message: string, fix: string, target?: string): void {
    this.handled.push(source);
    this.entries.push({ kind: "problem", source, target, message, fix, severity });
  }

  isHandled(source: LegacyRef): boolean {
    return this.handled.some((h) => h.file === source.file && covers(h.path, source.path));
  }

  /** True when some field below `source` was dealt with, so the rest must be looked at one by one. */
  isPartlyHandled(source: LegacyRef): boolean {
    return this.handled.some((h) => h.file === source.file && h.path !== source.path && covers(source.path, h.path));
  }

  /** The legacy field a Phoenix path came from: the nearest traced ancestor. */
  legacyOf(target: string): LegacyRef | undefined {
    let path = target;
    for (;;) {
      const found = this.provenance.get(path);
      if (found) return found;
      const parent = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
      if (parent === path) return undefined;
      path = parent;
    }
  }

  /** A validation issue, restated against the legacy files: its path and the Phoenix paths its message names. */
  legacyIssue(issue: ConfigIssue): { source: LegacyRef | undefined; message: string } {
    const message = issue.message.replace(/\b((?:host|proxmox|templates|guests|services|routes|firewall)(?:\.[A-Za-z]\w*|\[\d+\])+)(?![\w[])/g, (path: string) => {
      const ref = this.legacyOf(path);
      return ref ? `${path} (${formatRef(ref)})` : path;
    });
    return { source: this.legacyOf(issue.path), message };
  }
}

/** What became of a legacy field no mapping consumed, as documented; `*` matches one key, `[]` any index. */
interface FieldNote {
  pattern: string;
  kind: "unused" | "unsupported";
  reason: string;
  fix?: string;
}

export interface FileNotes {
  notes: FieldNote[];
  /** Said of any other field left over. */
  fallback: string;
}

function matches(pattern: string, path: string): boolean {
  const normalized = path.replace(/\[\d+\]/g, "[]");
  const re = new RegExp(`^${pattern.replace(/[.[\]$]/g, (c) => `\\${c}`).replace(/\*/g, "[^.]+")}$`);
  return re.test(normalized);
}

/**
 * Reports every field of a legacy file that no mapping consumed, so nothing is
 * lost silently: as its note says, or as a field no script reads (often a typo).
 */
export function reportLeftovers(log: ImportLog, file: LegacyFileName, raw: unknown, notes: FileNotes): void {
  const walk = (value: unknown, path: string): void => {
    const source = { file, path };
    if (path && log.isHandled(source)) return;
    const note = path && !log.isPartlyHandled(source) ? notes.notes.find((n) => matches(n.pattern, path)) : undefined;
    if (note?.kind === "unused") return log.unused(source, note.reason);
    if (note) return log.unsupported(source, note.reason, note.fix);
    const children = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : value !== null && typeof value === "object" ? Object.entries(value) : undefined;
    if (children === undefined) log.unused(source, notes.fallback);
    else for (const [key, child] of children) walk(child, childPath(path, key));
  };
  walk(raw, "");
}

const SECTIONS: { kind: EntryKind; title: string; intro: string }[] = [
  { kind: "problem", title: "Problems", intro: "What Phoenix rejects or warns about. Errors stop the import; warnings were fixed in the output as described." },
  { kind: "secret", title: "Secrets found in plain text", intro: "Removed from the output. Delete them from the legacy files, rotate them (they were in git), and set them as Pulumi secrets." },
  { kind: "fill-in", title: "To fill in", intro: "Placeholders that validate but are not your machine: replace them before `pulumi up`." },
  { kind: "check", title: "Derived: check these", intro: "Values Phoenix needs that the legacy files lack or only imply." },
  { kind: "unsupported", title: "Dropped: not modelled by Phoenix", intro: "Read by the old scripts, but Phoenix does not do this (or does it differently)." },
  { kind: "unused", title: "Dropped: never used by the old scripts", intro: "No script read these fields, so dropping them changes nothing." },
  { kind: "mapped", title: "Mapped", intro: "Legacy field → Phoenix setting." },
];

export function renderReport(entries: readonly ReportEntry[], header: string[]): string {
  const lines = ["# Legacy import report", "", ...header, ""];
  for (const section of SECTIONS) {
    const items = entries.filter((e) => e.kind === section.kind);
    if (items.length === 0) continue;
    lines.push(`## ${section.title} (${items.length})`, "", section.intro, "");
    for (const e of items) {
      const severity = e.severity ? `**${e.severity}** ` : "";
      const target = e.target ? ` → \`${e.target}\`` : "";
      const message = e.message ? `: ${e.message}` : "";
      lines.push(`- ${severity}\`${formatRef(e.source)}\`${target}${message}`);
      if (e.fix) lines.push(`  - fix: ${e.fix}`);
    }
    lines.push("");
  }
  return lines.join("\n");
}
