import type * as pulumi from "@pulumi/pulumi";
import { parseHostKey } from "./ssh";

import { UNKNOWN } from "../stacks/unknown";

export { UNKNOWN };

export function isUnknown(v: unknown): boolean {
  return v === UNKNOWN;
}

/** Collects check failures; an unknown value always passes, it is checked again at `up`. */
export class Checker {
  readonly failures: pulumi.dynamic.CheckFailure[] = [];
  constructor(readonly resource: string) {}
  require(property: string, ok: boolean, reason: string): void {
    if (!ok) this.failures.push({ property, reason: `${this.resource}: ${reason}` });
  }
  string(property: string, v: unknown, pattern: RegExp, what: string): void {
    if (isUnknown(v)) return;
    this.require(property, typeof v === "string" && pattern.test(v), `${property} must be ${what}, got ${JSON.stringify(v)}`);
  }
  /** The Proxmox node's name: what identifies the machine a host resource lives on. */
  node(v: unknown): void {
    this.string("node", v, /^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/, "a Proxmox node name");
  }
  connection(v: unknown): void {
    if (isUnknown(v)) return;
    if (typeof v !== "object" || v === null) return this.require("connection", false, "connection must be { host, port?, username, privateKey, hostKey }");
    const c = v as Record<string, unknown>;
    for (const key of ["host", "username", "privateKey", "hostKey"]) {
      if (!isUnknown(c[key])) this.require(`connection.${key}`, typeof c[key] === "string" && c[key] !== "", `connection.${key} is required`);
    }
    if (typeof c.hostKey === "string" && c.hostKey !== "" && !isUnknown(c.hostKey)) {
      try {
        parseHostKey(c.hostKey);
      } catch (err) {
        this.require("connection.hostKey", false, (err as Error).message);
      }
    }
    if (c.port !== undefined && !isUnknown(c.port)) this.require("connection.port", Number.isInteger(c.port) && (c.port as number) > 0 && (c.port as number) < 65536, "connection.port must be a TCP port");
  }
}

export function stripProvider<T extends object>(o: T): Omit<T, "__provider"> {
  const { __provider: _ignored, ...rest } = o as T & { __provider?: unknown };
  return rest;
}

/** Deep equality over the JSON values that travel through provider state; an unknown never equals. */
export function same(a: unknown, b: unknown): boolean {
  if (isUnknown(a) || isUnknown(b)) return false;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).filter((k) => k !== "__provider" && (v as Record<string, unknown>)[k] !== undefined).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  }
  return v;
}

/** Properties of `keys` that differ between old outputs and new inputs. */
export function changedKeys(olds: object, news: object, keys: readonly string[]): string[] {
  return keys.filter((k) => !same((olds as Record<string, unknown>)[k], (news as Record<string, unknown>)[k]));
}

/**
 * A host resource is identified by its node's name, never by how Phoenix reaches the node: a
 * changed address, port, user or key is an in-place update (see `reachOnly`). A replacement is
 * create-before-delete, and on one machine the old resource's delete would undo what the new one
 * just did, so only another node replaces. State written before `node` was an input has none:
 * it is the same node.
 */
export function nodeReplaces(olds: { node?: string }, news: { node?: string }): string[] {
  return olds.node !== undefined && !same(olds.node, news.node) ? ["node"] : [];
}

/** Only the way to reach the node changed: the update records it and runs nothing on the node. */
export function reachOnly(changed: readonly string[]): boolean {
  return changed.length > 0 && changed.every((k) => k === "connection");
}

export function diffResult(changed: string[], replaces: string[], deleteBeforeReplace = false): pulumi.dynamic.DiffResult {
  return { changes: changed.length > 0 || replaces.length > 0, replaces, deleteBeforeReplace: replaces.length > 0 && deleteBeforeReplace };
}

/** Parses `key value` lines from a probe script (value = rest of the line). */
export function parseProbe(out: string): { get(key: string): string | undefined; all(key: string): string[] } {
  const entries = out.split("\n").filter(Boolean).map((l) => {
    const i = l.indexOf(" ");
    return i < 0 ? ([l, ""] as const) : ([l.slice(0, i), l.slice(i + 1)] as const);
  });
  return {
    get: (key) => entries.find(([k]) => k === key)?.[1],
    all: (key) => entries.filter(([k]) => k === key).map(([, v]) => v),
  };
}
