/**
 * /etc/exports converged, never rewritten: Phoenix owns the lines between its
 * markers and nothing else. Lines other tools or people wrote are kept as
 * they are; a path exported both inside and outside the block is refused,
 * since the NFS server would apply whichever line it reads last.
 */

export const EXPORTS_BEGIN = "# BEGIN phoenix managed exports (do not edit: changes are overwritten)";
export const EXPORTS_END = "# END phoenix managed exports";

export interface NfsExport {
  /** Absolute path on the host, e.g. /fastData/docker-data. */
  path: string;
  /** Exactly the hosts allowed to mount it, each with its options. */
  clients: { host: string; options: string[] }[];
}

const HOST_RE = /^[A-Za-z0-9.:/*-]+$/;
const OPTION_RE = /^[a-z_]+(=[A-Za-z0-9_.:/-]+)?$/;

export function renderExportLine(e: NfsExport): string {
  if (!/^\/\S*$/.test(e.path)) throw new Error(`NFS export path ${JSON.stringify(e.path)} must be absolute and contain no whitespace`);
  if (e.clients.length === 0) throw new Error(`NFS export ${e.path} has no clients: declare exactly who may mount it`);
  const clients = e.clients.map((c) => {
    if (!HOST_RE.test(c.host)) throw new Error(`NFS export ${e.path}: client ${JSON.stringify(c.host)} is not an address, network or host name`);
    const bad = c.options.find((o) => !OPTION_RE.test(o));
    if (bad !== undefined) throw new Error(`NFS export ${e.path}: option ${JSON.stringify(bad)} for ${c.host} is not an exports(5) option`);
    return `${c.host}(${c.options.join(",")})`;
  });
  return `${e.path} ${clients.join(" ")}`;
}

/** The exported path of a non-comment line, with exports(5) quoting and line continuations ignored. */
function exportedPath(line: string): string | undefined {
  const t = line.trim();
  if (t === "" || t.startsWith("#")) return undefined;
  return /^"([^"]*)"|^(\S+)/.exec(t)?.slice(1).find((p) => p !== undefined);
}

/** The new /etc/exports: others' lines as they were, Phoenix's block replaced (or appended), sorted by path. */
export function mergeExports(current: string, managed: NfsExport[]): string {
  const lines = current.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const begin = lines.indexOf(EXPORTS_BEGIN);
  const end = lines.indexOf(EXPORTS_END);
  if ((begin < 0) !== (end < 0) || end < begin) throw new Error(`/etc/exports has a damaged Phoenix block (markers "${EXPORTS_BEGIN}" / "${EXPORTS_END}"); repair it by hand`);
  const others = begin < 0 ? lines : [...lines.slice(0, begin), ...lines.slice(end + 1)];
  const foreign = new Set(others.map(exportedPath).filter((p): p is string => p !== undefined));
  const seen = new Set<string>();
  for (const e of managed) {
    if (foreign.has(e.path)) throw new Error(`${e.path} is already exported by a line Phoenix does not manage in /etc/exports; remove that line or stop declaring the export`);
    if (seen.has(e.path)) throw new Error(`NFS export ${e.path} is declared twice`);
    seen.add(e.path);
  }
  const block = managed.length === 0 ? [] : [EXPORTS_BEGIN, ...[...managed].sort((a, b) => a.path.localeCompare(b.path)).map(renderExportLine), EXPORTS_END];
  const merged = begin < 0 ? [...others, ...block] : [...lines.slice(0, begin), ...block, ...lines.slice(end + 1)];
  return merged.length === 0 ? "" : `${merged.join("\n")}\n`;
}
