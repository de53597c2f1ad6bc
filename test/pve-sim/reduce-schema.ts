/**
 * Reduces the official PVE API dump (pve-docs' `api-viewer/apidoc.js`, the
 * `apiSchema` tree also published as apidata.js) to what the simulator
 * reads: paths, methods, parameter names, types, formats, enums, ranges,
 * optional flags, and the permission facts it checks (`allowtoken`,
 * `protected`). Every description, title and verbose text is dropped.
 *
 * The tree format is pve-docs' (pve-docs api-viewer/PVEAPI.js reads the same
 * `apiSchema`): `[{path, text, leaf, info: {GET|POST|PUT|DELETE: {name,
 * method, allowtoken, protected, proxyto, permissions, parameters:
 * {additionalProperties, properties}, returns}}, children}]`.
 */

/** Keys of a parameter (or property-string key) schema that carry facts, not prose. */
const PARAM_KEYS = [
  "type",
  "format",
  "optional",
  "enum",
  "minimum",
  "maximum",
  "pattern",
  "maxLength",
  "minLength",
  "default_key",
  "alias",
  "keyAlias",
  "items",
  "typetext",
  "requires",
  "default",
  "oneOf",
  "type-property",
  "instance-types",
  // min/max bound a list's length in a few property strings (cluster options' `ha`, `crs`).
  "min",
  "max",
] as const;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function reduceParam(schema: Json): Json {
  if (!isObject(schema)) return schema;
  const out: JsonObject = {};
  for (const key of PARAM_KEYS) {
    const v = schema[key];
    if (v === undefined) continue;
    // The simulator reads a typetext only to learn the keys of a format it names but does not define.
    if (key === "typetext" && typeof schema.format !== "string") continue;
    if (key === "format" && isObject(v)) out[key] = reduceProps(v);
    else if (key === "items") out[key] = reduceParam(v);
    else if (key === "oneOf" && Array.isArray(v)) out[key] = v.map(reduceParam);
    else out[key] = v;
  }
  return out;
}

function reduceProps(props: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const name of Object.keys(props).sort()) out[name] = reduceParam(props[name] as Json);
  return out;
}

/**
 * Parameter schemas, each stored once: the dump repeats the same schema for
 * every endpoint that takes it (a guest's `net[n]` in create, config and
 * clone), so methods name their parameters' schemas by index.
 */
class ParamTable {
  readonly list: Json[] = [];
  private readonly index = new Map<string, number>();

  ref(schema: Json): number {
    const reduced = reduceParam(schema);
    const key = JSON.stringify(reduced);
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.list.push(reduced) - 1;
      this.index.set(key, i);
    }
    return i;
  }
}

function reduceMethod(info: JsonObject, table: ParamTable): JsonObject {
  const out: JsonObject = { name: info.name ?? null };
  if (info.allowtoken !== undefined) out.allowtoken = info.allowtoken;
  if (info.protected !== undefined) out.protected = info.protected;
  const params = info.parameters;
  if (isObject(params)) {
    const p: JsonObject = {};
    if (params.additionalProperties !== undefined) p.additionalProperties = params.additionalProperties;
    if (isObject(params.properties)) {
      const refs: JsonObject = {};
      for (const name of Object.keys(params.properties).sort()) refs[name] = table.ref(params.properties[name] as Json);
      p.properties = refs;
    }
    out.parameters = p;
  }
  // The simulator answers unmodelled GETs with an empty value of the declared type.
  if (isObject(info.returns) && typeof info.returns.type === "string") out.returns = { type: info.returns.type };
  return out;
}

function reduceNode(node: JsonObject, table: ParamTable): JsonObject {
  const out: JsonObject = { path: node.path ?? null };
  if (isObject(node.info)) {
    const info: JsonObject = {};
    for (const method of Object.keys(node.info).sort()) info[method] = reduceMethod(node.info[method] as JsonObject, table);
    out.info = info;
  }
  if (Array.isArray(node.children) && node.children.length) out.children = node.children.filter(isObject).map((c) => reduceNode(c, table));
  return out;
}

export interface ReducedSchema {
  /** Where the tree came from, e.g. "pve-docs 9.1.3 api-viewer/apidoc.js". */
  source: string;
  licence: string;
  /** Parameter schemas; `parameters.properties` in the tree maps each name to an index here. */
  params: Json[];
  tree: Json[];
}

/** The reduced tree of an API dump, given as parsed JSON. */
export function reduceApiTree(tree: unknown, source: string): ReducedSchema {
  if (!Array.isArray(tree) || !tree.every(isObject)) throw new Error("the API dump is not a tree: expected an array of {path, info, children} nodes");
  const table = new ParamTable();
  const reduced = tree.map((n) => reduceNode(n, table));
  return { source, licence: "AGPL-3.0-or-later (pve-docs); test data, not part of the program", params: table.list, tree: reduced };
}

/**
 * The `apiSchema` array out of apidoc.js (`const apiSchema = [...];` followed
 * by the viewer's code), or the whole text when it is already JSON.
 */
export function extractApiTree(text: string): unknown {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("[")) return JSON.parse(trimmed) as unknown;
  const at = /\bapiSchema\s*=\s*\[/.exec(text);
  if (!at) throw new Error("no `apiSchema = [` in the file: pass pve-docs' api-viewer/apidoc.js or its JSON tree");
  const start = at.index + at[0].length - 1;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "[" || c === "{") depth++;
    else if (c === "]" || c === "}") {
      depth--;
      if (depth === 0) return JSON.parse(text.slice(start, i + 1)) as unknown;
    }
  }
  throw new Error("the `apiSchema` array in the file never closes");
}

/** Appliance catalogue fields the simulator and Phoenix's client read; the rest is prose. */
const APL_FIELDS = ["package", "version", "type", "os", "section", "architecture", "location", "sha512sum"];

/**
 * Reduces pveam's catalogue (`aplinfo.dat`, RFC822-style paragraphs) to the
 * appliance entries with the fields above; the web-news paragraph and every
 * Description/Maintainer/Infopage/md5sum line are dropped.
 */
export function reduceAplinfo(text: string): string {
  const blocks: string[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((l) => {
      const m = /^([\w-]+):/.exec(l);
      return m !== null && APL_FIELDS.includes((m[1] as string).toLowerCase());
    });
    if (lines.some((l) => /^Location:/i.test(l))) blocks.push(lines.join("\n"));
  }
  return `${blocks.join("\n\n")}\n`;
}
