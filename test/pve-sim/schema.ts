import * as fs from "node:fs";
import * as path from "node:path";

/** One parameter (or property-string key) as pve-docs' apidata.js describes it. */
export interface ParamSchema {
  type?: string;
  format?: string | Record<string, ParamSchema>;
  optional?: number;
  enum?: string[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
  maxLength?: number;
  minLength?: number;
  default_key?: number;
  alias?: string;
  keyAlias?: string;
  items?: ParamSchema;
  typetext?: string;
  default?: unknown;
  requires?: string;
}

export interface MethodInfo {
  name: string;
  method: string;
  allowtoken?: number;
  protected?: number;
  parameters?: { additionalProperties?: number; properties?: Record<string, ParamSchema> };
  returns?: ParamSchema;
}

export interface Route {
  method: string;
  /** Path template as in the schema, e.g. `/nodes/{node}/lxc/{vmid}`. */
  template: string;
  segments: string[];
  info: MethodInfo;
  /** Parameters with `name[n]` expanded to `name0..nameN`. */
  params: Record<string, ParamSchema>;
  additionalProperties: boolean;
}

export type PveVersion = 8 | 9;

interface ApiNode {
  path: string;
  info?: Record<string, MethodInfo>;
  children?: ApiNode[];
}

/**
 * How many slots each indexed key has (the schema dump collapses them to
 * `net[n]`); the counts are the MAX_* constants of pve-container and
 * qemu-server, also listed at the top of pve-endpoints.md.
 */
export const INDEX_COUNTS: Readonly<Record<string, number>> = {
  net: 32,
  mp: 256,
  dev: 256,
  unused: 256,
  hostpci: 16,
  ipconfig: 32,
  scsi: 31,
  virtio: 16,
  sata: 6,
  ide: 4,
  usb: 14,
  serial: 4,
  parallel: 3,
  numa: 8,
  virtiofs: 10,
  link: 8,
  acmedomain: 5,
};

/** The reduced API schemas and the appliance catalogue (written by `npm run sim:schema`). */
export const SCHEMA_DIR = path.join(__dirname, "schema");

/** The reduced schema file of a PVE major version. */
export function schemaFile(major: number): string {
  return path.join(SCHEMA_DIR, `pve${major}.json`);
}

function expandIndexed(props: Record<string, ParamSchema>, where: string): Record<string, ParamSchema> {
  const out: Record<string, ParamSchema> = {};
  for (const [name, schema] of Object.entries(props)) {
    const m = /^(.+)\[n\]$/.exec(name);
    if (!m) {
      out[name] = schema;
      continue;
    }
    const base = m[1] as string;
    const count = INDEX_COUNTS[base];
    if (count === undefined) {
      throw new Error(`pve-sim: indexed parameter ${name} in ${where} has no slot count; add it to INDEX_COUNTS`);
    }
    for (let i = 0; i < count; i++) out[`${base}${i}`] = schema;
  }
  return out;
}

export class ApiSchema {
  readonly routes: Route[] = [];

  constructor(readonly version: PveVersion, tree: ApiNode[]) {
    const walk = (nodes: ApiNode[]): void => {
      for (const node of nodes) {
        for (const [method, info] of Object.entries(node.info ?? {})) {
          const props = info.parameters?.properties ?? {};
          this.routes.push({
            method,
            template: node.path,
            segments: node.path.split("/").filter((s) => s !== ""),
            info,
            params: expandIndexed(props, `${method} ${node.path}`),
            additionalProperties: info.parameters?.additionalProperties !== 0,
          });
        }
        if (node.children) walk(node.children);
      }
    };
    walk(tree);
  }

  /**
   * Finds the route for a request path; literal segments beat `{param}`
   * segments, as in PVE's handler lookup.
   */
  match(method: string, segments: string[]): { route: Route; uriParams: Record<string, string> } | { pathExists: boolean } {
    let best: { route: Route; uriParams: Record<string, string>; literal: number } | undefined;
    let pathExists = false;
    for (const route of this.routes) {
      if (route.segments.length !== segments.length) continue;
      const uriParams: Record<string, string> = {};
      let literal = 0;
      let ok = true;
      for (let i = 0; i < segments.length; i++) {
        const tpl = route.segments[i] as string;
        const seg = segments[i] as string;
        const pm = /^\{(.+)\}$/.exec(tpl);
        if (pm) uriParams[pm[1] as string] = seg;
        else if (tpl === seg) literal++;
        else {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      pathExists = true;
      if (route.method !== method) continue;
      if (!best || literal > best.literal) best = { route, uriParams, literal };
    }
    return best ? { route: best.route, uriParams: best.uriParams } : { pathExists };
  }

  find(method: string, template: string): Route | undefined {
    return this.routes.find((r) => r.method === method && r.template === template);
  }
}

/** A file written by `npm run sim:schema` (reduce-schema.ts): parameter schemas stored once, named by index. */
interface ReducedFile {
  params: ParamSchema[];
  tree: Array<ApiNode & { info?: Record<string, MethodInfo & { parameters?: { properties?: Record<string, number> } }> }>;
}

function expandReduced(file: ReducedFile): ApiNode[] {
  const expand = (nodes: ReducedFile["tree"]): ApiNode[] =>
    nodes.map((n) => ({
      path: n.path,
      ...(n.info && {
        info: Object.fromEntries(
          Object.entries(n.info).map(([method, info]) => {
            const refs = info.parameters?.properties;
            if (!refs) return [method, info];
            const properties = Object.fromEntries(Object.entries(refs).map(([name, i]) => [name, file.params[i] as ParamSchema]));
            return [method, { ...info, parameters: { ...info.parameters, properties } }];
          }),
        ),
      }),
      ...(n.children && { children: expand(n.children as ReducedFile["tree"]) }),
    }));
  return expand(file.tree);
}

const cache = new Map<PveVersion, ApiSchema>();

/** Loads the official API dump for a PVE major version (parsed once per process). */
export function loadApiSchema(version: PveVersion): ApiSchema {
  const hit = cache.get(version);
  if (hit) return hit;
  const file = schemaFile(version);
  if (!fs.existsSync(file)) {
    throw new Error(`pve-sim: API schema ${file} not found; write it from a node's apidoc.js with npm run sim:schema`);
  }
  const schema = new ApiSchema(version, expandReduced(JSON.parse(fs.readFileSync(file, "utf8")) as ReducedFile));
  cache.set(version, schema);
  return schema;
}
