/**
 * What the hostile-input suites share: the prod stack as raw values, a place
 * to put a hostile string into it, generated hostile strings, and parsers that
 * read rendered output the way its consumer does (PVE property strings, nginx
 * tokens, systemd's dump of a command line).
 */
import * as path from "node:path";
import fc from "fast-check";
import { formatPath, readStackFile, validateStack, type RawStack } from "../../stacks/load";
import type { ConfigIssue } from "../../stacks/validate";
import { ROOT } from "../support";

export const prodRaw = (): RawStack => readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));

export type Path = (string | number)[];

/** Sets `value` at `at` inside a copy of the raw stack values. */
export function withValue(raw: RawStack, at: Path, value: unknown): RawStack {
  const values = structuredClone(raw.values);
  let node = values as Record<string | number, unknown>;
  for (const key of at.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[at.at(-1)!] = value;
  return { values, secretKeys: raw.secretKeys };
}

const key = (i: ConfigIssue) => `${i.path}\u0000${i.message}`;

/** Issues the change adds to those the unchanged stack already has (another area's work in progress must not blur the verdict). */
export function newIssues(base: RawStack, changed: RawStack): ConfigIssue[] {
  let before = baseIssues.get(base);
  if (!before) baseIssues.set(base, (before = new Set(issuesOf(base).map(key))));
  return issuesOf(changed).filter((i) => !before.has(key(i)));
}

const baseIssues = new WeakMap<RawStack, Set<string>>();

function issuesOf(raw: RawStack): ConfigIssue[] {
  const r = validateStack(raw, { requireSecrets: false });
  return r.ok === false ? r.issues : [];
}

/** The config path of `at` as error messages spell it, e.g. guests[4].role.server.model. */
export const configPath = (at: Path): string => formatPath(at);

export const names = (raw: RawStack, at: Path): unknown => at.reduce<unknown>((n, k) => (n as Record<string | number, unknown>)[k], raw.values);

/** Index of the first guest matching, in the raw values. */
export function guestIndex(raw: RawStack, match: (g: Record<string, unknown>) => boolean): number {
  const i = (raw.values.guests as Record<string, unknown>[]).findIndex(match);
  if (i < 0) throw new Error("no such guest in Pulumi.prod.yaml");
  return i;
}

export const engineGuest = (raw: RawStack, engine: string) =>
  guestIndex(raw, (g) => (g.role as { type?: string; server?: { engine?: string } } | undefined)?.server?.engine === engine);

/** Pieces that mean something to one of the target languages. */
const PIECES = [
  "'", '"', "`", "\\", "\n", "\r", "\t", "\u0000", "\u0001", "\u007f", "\u0085", "\u2028", " ", ";", "{", "}", "(", ")", "$", "$(id)", "${X}", "`id`", "%", "%n", "%%",
  "#", ",", "=", "..", "/", ":", "&&", "|", ">", "<", "*", "?", "[Service]", "ExecStartPre=+/bin/sh -c id", "backup=1", "ü", "😀", "é",
  "a", "Z", "0", "9", "-", "_", ".", "/models", "qwen3:8b", "x",
];

/** Hostile strings: known payloads, runs of meaningful pieces, and plausible values with a piece spliced in. */
export function hostile(plausible: readonly string[] = ["x"]): fc.Arbitrary<string> {
  const piece = fc.constantFrom(...PIECES);
  return fc.oneof(
    fc.array(piece, { minLength: 1, maxLength: 8 }).map((p) => p.join("")),
    fc.tuple(fc.constantFrom(...plausible), fc.array(piece, { minLength: 1, maxLength: 3 }), fc.nat()).map(([v, p, at]) => {
      const i = at % (v.length + 1);
      return v.slice(0, i) + p.join("") + v.slice(i);
    }),
    fc.string({ unit: "binary", maxLength: 12 }),
  );
}

/**
 * pve-common (libpve-common-perl 9.2.1) src/PVE/JSONSchema.pm
 * parse_property_string, for the keys it reads: split on every ',', skip blank
 * parts, `key=value` split at the first '=', a part without '=' is the default
 * key's value. Throws where PVE dies.
 */
export function parsePropertyString(data: string, defaultKey: string): Record<string, string> {
  const res: Record<string, string> = {};
  for (const part of data.split(",")) {
    if (/^\s*$/.test(part)) continue;
    const kv = /^([^=]+)=(.+)$/s.exec(part);
    if (kv) {
      if (kv[1]! in res) throw new Error(`duplicate key in comma-separated list property: ${kv[1]}`);
      res[kv[1]!] = kv[2]!;
    } else if (!part.includes("=")) {
      if (defaultKey in res) throw new Error(`duplicate key in comma-separated list property: ${defaultKey}`);
      res[defaultKey] = part;
    } else throw new Error("missing key in comma-separated list property");
  }
  return res;
}

export interface NginxDirective {
  args: string[];
  block?: NginxDirective[];
}

/**
 * nginx's tokenizer (nginx release-1.31.4 src/core/ngx_conf_file.c,
 * ngx_conf_read_token): words end at whitespace, ';' or '{'; '#' at a word's
 * start comments to the end of the line; quoted words unescape \" \' \\ \t \r \n.
 */
export function parseNginx(text: string): NginxDirective[] {
  let i = 0;
  const block = (): NginxDirective[] => {
    const out: NginxDirective[] = [];
    let args: string[] = [];
    for (;;) {
      while (i < text.length && /[ \t\r\n]/.test(text[i]!)) i++;
      if (i >= text.length) {
        if (args.length > 0) throw new Error("unexpected end of file");
        return out;
      }
      const ch = text[i]!;
      if (ch === "#" ) {
        while (i < text.length && text[i] !== "\n") i++;
        continue;
      }
      if (ch === ";") {
        i++;
        out.push({ args });
        args = [];
        continue;
      }
      if (ch === "{") {
        i++;
        out.push({ args, block: block() });
        args = [];
        continue;
      }
      if (ch === "}") {
        i++;
        if (args.length > 0) throw new Error('unexpected "}"');
        return out;
      }
      args.push(word());
    }
  };
  const unescape = (raw: string) => raw.replace(/\\(["'\\tnr])/g, (_m, c: string) => ({ t: "\t", n: "\n", r: "\r" })[c] ?? c);
  const word = (): string => {
    const q = text[i];
    if (q === '"' || q === "'") {
      let j = ++i;
      while (j < text.length && text[j] !== q) j += text[j] === "\\" ? 2 : 1;
      const raw = text.slice(i, j);
      i = j + 1;
      return unescape(raw);
    }
    let j = i;
    while (j < text.length && !/[ \t\r\n;{]/.test(text[j]!)) j += text[j] === "\\" ? 2 : 1;
    const raw = text.slice(i, j);
    i = j;
    return unescape(raw);
  };
  return block();
}

/** The shape of a parsed config: directive names and argument counts, block by block, without the arguments' values. */
export function nginxShape(ds: NginxDirective[]): string {
  return ds.map((d) => `${d.args[0]}/${d.args.length}${d.block ? `{${nginxShape(d.block)}}` : ""}`).join(";");
}

/**
 * systemd 252's debug dump of a command line ("Command Line: …"): words
 * separated by spaces, quoted when they need it, with C escapes (\n, \t, \NNN
 * octal, \\, \", \$); `$$` is still doubled there (expanded at exec time).
 */
export function splitSystemdDump(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  // Octal escapes are bytes (of UTF-8 sequences too): collect bytes, decode once.
  const escape = (bytes: number[]): void => {
    const c = line[i + 1]!;
    if (/[0-7]/.test(c)) {
      bytes.push(parseInt(line.slice(i + 1, i + 4), 8));
      i += 4;
      return;
    }
    i += 2;
    bytes.push(...Buffer.from(({ n: "\n", t: "\t", r: "\r", a: "\u0007", b: "\b", f: "\f", v: "\v" } as Record<string, string>)[c] ?? c));
  };
  const plain = (bytes: number[]): void => {
    const cp = line.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    bytes.push(...Buffer.from(ch));
    i += ch.length;
  };
  while (i < line.length) {
    if (line[i] === " ") {
      i++;
      continue;
    }
    const bytes: number[] = [];
    while (i < line.length && line[i] !== " ") {
      if (line[i] === '"') {
        i++;
        while (i < line.length && line[i] !== '"') (line[i] === "\\" ? escape : plain)(bytes);
        i++;
      } else (line[i] === "\\" ? escape : plain)(bytes);
    }
    args.push(Buffer.from(bytes).toString("utf8").replace(/\$\$/g, "$"));
  }
  return args;
}
