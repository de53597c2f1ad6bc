/** Quotes one word for bash so it is passed through literally. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Wraps a body into a script that stops at the first failure. Every script takes its file-system
 * root from PHOENIX_ROOT (empty on a real host, a sandbox directory in tests), so paths are
 * written as "$R/etc/…" and tests never touch the machine running them.
 */
export function renderScript(body: string): string {
  const root = body.includes("$R") ? ['R="${PHOENIX_ROOT:-}"'] : [];
  return ["#!/bin/bash", "set -euo pipefail", ...root, body.trim(), ""].join("\n");
}

/**
 * Shell lines that write `content` to "$R<path>" only when it differs, echoing `changed <path>`
 * so the caller learns what moved. The content goes through a quoted heredoc: nothing in it is
 * expanded.
 */
export function writeFileIfChanged(path: string, content: string, mode = "0644"): string {
  const delimiter = "PHOENIX_EOF";
  if (content.split("\n").includes(delimiter)) throw new Error(`file ${path}: content contains the heredoc delimiter line ${delimiter}`);
  const body = content.endsWith("\n") ? content : content + "\n";
  const target = `"$R"${shellQuote(path)}`;
  return [
    `mkdir -p "$(dirname ${target})"`,
    `tmp="$(mktemp "$(dirname ${target})/.phoenix.XXXXXX")"`,
    `cat > "$tmp" <<'${delimiter}'`,
    body + delimiter,
    `chmod ${mode} "$tmp"`,
    `if cmp -s "$tmp" ${target}; then rm -f "$tmp"; else mv -f "$tmp" ${target}; echo ${shellQuote(`changed ${path}`)}; fi`,
  ].join("\n");
}

/** Shell lines removing "$R<path>" if present, echoing `changed <path>` when they did. */
export function removeFile(path: string): string {
  const target = `"$R"${shellQuote(path)}`;
  return `if [ -e ${target} ]; then rm -f ${target}; echo ${shellQuote(`changed ${path}`)}; fi`;
}

/** Shell lines printing `file <path> <base64 content>` or `file <path> -` when absent, for "$R<path>". */
export function readFiles(paths: string[]): string {
  return [
    `read_paths=(${paths.map(shellQuote).join(" ")})`,
    'for f in "${read_paths[@]}"; do',
    '  if [ -f "$R$f" ]; then printf \'file %s %s\\n\' "$f" "$(base64 -w0 < "$R$f")"; else printf \'file %s -\\n\' "$f"; fi',
    "done",
  ].join("\n");
}

/** Decodes what `readFiles` printed: path → content, or undefined when the file is absent. */
export function parseFiles(lines: string[]): Map<string, string | undefined> {
  const files = new Map<string, string | undefined>();
  for (const line of lines) {
    const [path, data] = line.split(" ");
    if (path) files.set(path, data === "-" || data === undefined ? undefined : Buffer.from(data, "base64").toString("utf8"));
  }
  return files;
}

/** A shell function `installed <package>`: true when dpkg reports it installed (not merely known, or removed with its configuration kept). */
export const INSTALLED_FN = `installed() {
  # shellcheck disable=SC2016 # \${Status} is dpkg-query's format field, not a shell variable
  dpkg-query -W -f='\${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}`;
