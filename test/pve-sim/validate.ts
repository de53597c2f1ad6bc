import { checkNamedFormat, formatFromTypetext, NAMED_PROPERTY_FORMATS, PROPERTY_FORMAT_CHECKS } from "./formats";
import type { ParamSchema } from "./schema";

/** Parameter name (or `net0.ip` for a key inside a property string) → PVE's message. */
export type ParamErrors = Record<string, string>;

/** A request value after form or JSON decoding: PVE sees strings, or arrays of them for repeated keys. */
export type ParamValue = string | string[];

const regexCache = new Map<string, RegExp>();
const typetextCache = new Map<string, Record<string, ParamSchema>>();

/**
 * PVE's patterns are Perl regexes anchored as `^…$`. JavaScript has no inline
 * `(?^i:` modifier, so a pattern containing one is compiled case-insensitive
 * as a whole; `(?>` (atomic group) only affects backtracking and becomes `(?:`.
 */
export function perlPattern(pattern: string): RegExp {
  let re = regexCache.get(pattern);
  if (!re) {
    const flags = pattern.includes("(?^i:") ? "i" : "";
    const source = pattern.replace(/\(\?\^i?:/g, "(?:").replace(/\(\?>/g, "(?:");
    re = new RegExp(`^(?:${source})$`, flags);
    regexCache.set(pattern, re);
  }
  return re;
}

/** PVE::JSONSchema::parse_boolean, used for booleans inside property strings. */
export function parseBoolean(v: string): 0 | 1 | undefined {
  if (/^(1|on|yes|true)$/i.test(v)) return 1;
  if (/^(0|off|no|false)$/i.test(v)) return 0;
  return undefined;
}

export class FormatError extends Error {
  constructor(
    message: string,
    readonly nested: ParamErrors = {},
  ) {
    super(message);
  }
}

function propertyFormat(schema: ParamSchema): { keys: Record<string, ParamSchema>; name?: string } | undefined {
  if (typeof schema.format === "object") return { keys: schema.format };
  if (typeof schema.format === "string") {
    const keys = NAMED_PROPERTY_FORMATS[schema.format];
    if (keys) return { keys, name: schema.format };
    // pve-startup-order has its own parser (pve_parse_startup_order), whose typetext is a regex.
    if (schema.format !== "pve-startup-order" && schema.typetext) {
      const derived = typetextCache.get(schema.typetext) ?? formatFromTypetext(schema.typetext);
      if (derived) {
        typetextCache.set(schema.typetext, derived);
        return { keys: derived, name: schema.format };
      }
    }
  }
  return undefined;
}

/**
 * PVE::JSONSchema::parse_property_string: splits on `,`, resolves the
 * default key and key aliases (`virtio=MAC` → model + macaddr), rejects
 * duplicate and unknown keys, normalises booleans, then checks every key
 * against its schema. Throws FormatError with the messages PVE gives.
 */
export function parsePropertyString(
  keys: Record<string, ParamSchema>,
  value: string,
  path: string,
  name?: string,
): Record<string, string> {
  const res: Record<string, string> = {};
  let defaultKey: string | undefined;
  for (const part of value.split(",")) {
    if (/^\s*$/.test(part)) continue;
    const kv = /^([^=]+)=(.+)$/.exec(part);
    if (kv) {
      let k = kv[1] as string;
      let v = kv[2] as string;
      if (res[k] !== undefined) throw new FormatError(`duplicate key in comma-separated list property: ${k}\n`);
      let schema = keys[k];
      if (schema?.alias) {
        if (schema.keyAlias) {
          if (res[schema.keyAlias] !== undefined) throw new FormatError(`key alias '${schema.keyAlias}' is already defined\n`);
          res[schema.keyAlias] = k;
        }
        k = schema.alias;
        schema = keys[k];
      }
      if (!schema) throw new FormatError(`invalid key in comma-separated list property: ${k}\n`);
      if (schema.type === "boolean") v = String(parseBoolean(v) ?? v);
      res[k] = v;
    } else if (!part.includes("=")) {
      if (defaultKey !== undefined) throw new FormatError(`duplicate key in comma-separated list property: ${defaultKey}\n`);
      defaultKey = Object.keys(keys).find((k) => keys[k]?.default_key);
      if (defaultKey === undefined) throw new FormatError("value without key, but schema does not define a default key\n");
      if (res[defaultKey] !== undefined) throw new FormatError(`duplicate key in comma-separated list property: ${defaultKey}\n`);
      res[defaultKey] = part;
    } else {
      throw new FormatError("missing key in comma-separated list property\n");
    }
  }
  const nested: ParamErrors = {};
  checkObject(keys, res, false, nested, path);
  if (Object.keys(nested).length > 0) throw new FormatError("format error\n", nested);
  const cross = name ? PROPERTY_FORMAT_CHECKS[name]?.(res) : null;
  if (cross) throw new FormatError(cross);
  return res;
}

/** Parses a value with the property-string format of a parameter schema (used by the state model). */
export function parseWithSchema(schema: ParamSchema, value: string, path: string): Record<string, string> {
  const pf = propertyFormat(schema);
  if (!pf) throw new Error(`pve-sim: parameter ${path} has no property-string format`);
  return parsePropertyString(pf.keys, value, path, pf.name);
}

function addError(errors: ParamErrors, path: string, msg: string): void {
  if (errors[path] === undefined) errors[path] = msg;
}

function checkType(type: string | undefined, value: ParamValue, path: string, errors: ParamErrors): boolean {
  if (type === undefined) return true;
  if (type === "array") return true;
  if (Array.isArray(value)) {
    addError(errors, path, `type check ('${type}') failed - got ARRAY`);
    return false;
  }
  const ok =
    type === "string" ||
    type === "null" ||
    (type === "integer" && /^[+-]?\d+$/.test(value)) ||
    (type === "number" && /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(value)) ||
    (type === "boolean" && (value === "1" || value === "0"));
  if (!ok) addError(errors, path, `type check ('${type}') failed - got '${value}'`);
  return ok;
}

function checkScalar(value: string, schema: ParamSchema, path: string, errors: ParamErrors): void {
  const pf = propertyFormat(schema);
  if (pf) {
    try {
      parsePropertyString(pf.keys, value, path, pf.name);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      addError(errors, path, `invalid format - ${e.message}`);
      for (const [k, msg] of Object.entries(e.nested)) addError(errors, k, msg);
      return;
    }
  } else if (typeof schema.format === "string") {
    const err = checkNamedFormat(schema.format, value);
    if (err) {
      addError(errors, path, `invalid format - ${err}`);
      return;
    }
  }
  if (schema.pattern !== undefined && !perlPattern(schema.pattern).test(value)) {
    addError(errors, path, "value does not match the regex pattern");
    return;
  }
  if (schema.minLength !== undefined && value.length < schema.minLength) {
    addError(errors, path, `value must be at least ${schema.minLength} characters long`);
    return;
  }
  if (schema.maxLength !== undefined && value.length > schema.maxLength) {
    addError(errors, path, `value may only be ${schema.maxLength} characters long`);
    return;
  }
  if (schema.type === "integer" || schema.type === "number") {
    const n = Number(value);
    if (schema.minimum !== undefined && n < schema.minimum) {
      addError(errors, path, `value must have a minimum value of ${schema.minimum}`);
      return;
    }
    if (schema.maximum !== undefined && n > schema.maximum) {
      addError(errors, path, `value must have a maximum value of ${schema.maximum}`);
      return;
    }
  }
  if (schema.enum && !schema.enum.includes(value)) {
    addError(errors, path, `value '${value}' does not have a value in the enumeration '${schema.enum.join(", ")}'`);
  }
}

/** PVE::JSONSchema::check_prop for one parameter. */
export function checkProp(value: ParamValue | undefined, schema: ParamSchema, path: string, errors: ParamErrors): void {
  if (value === undefined) {
    if (!schema.optional && !schema.alias && schema.type !== "null") {
      addError(errors, path, "property is missing and it is not optional");
    }
    return;
  }
  if (!checkType(schema.type, value, path, errors)) return;
  if (schema.type === "array") {
    const items = Array.isArray(value) ? value : [value];
    for (const item of items) {
      if (schema.items) checkProp(item, schema.items, path, errors);
      if (errors[path] !== undefined) return;
    }
    return;
  }
  checkScalar(value as string, schema, path, errors);
}

/** PVE::JSONSchema::check_object over a request's (or property string's) keys. */
export function checkObject(
  schema: Record<string, ParamSchema>,
  values: Record<string, ParamValue>,
  additionalProperties: boolean,
  errors: ParamErrors,
  prefix?: string,
): void {
  const full = (k: string): string => (prefix ? `${prefix}.${k}` : k);
  for (const [k, s] of Object.entries(schema)) {
    checkProp(values[k], s, full(k), errors);
    if (values[k] !== undefined && s.requires !== undefined && values[s.requires] === undefined) {
      addError(errors, full(s.requires), `missing property - '${full(k)}' requires this property`);
    }
  }
  if (!additionalProperties) {
    for (const k of Object.keys(values)) {
      if (!(k in schema)) {
        addError(errors, full(k), "property is not defined in schema and the schema does not allow additional properties");
      }
    }
  }
}
