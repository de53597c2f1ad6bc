/** What the e2e scenarios share: how to run index.ts afresh, and how to read an apply's result. */
import type * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import type { RawStack } from "../../stacks/load";
import type { ApplyResult } from "./engine";
import { TYPES } from "./translations";
import type { World } from "./world";

export const loadProgram = async (): Promise<Record<string, unknown>> => {
  vi.resetModules();
  return (await import("../../index")) as Record<string, unknown>;
};

export const failuresOf = (r: ApplyResult): string[] => r.failures.map((f) => `${f.key}: ${f.message}`);

/** Operations that changed something (and did not fail), as `kind name`. */
export const changed = (r: ApplyResult): string[] =>
  r.operations
    .filter((o) => o.kind !== "same" && !r.failures.some((f) => f.key === o.key))
    .map((o) => `${o.kind} ${o.key.split("::")[1]}`)
    .sort();

type StackValues = Record<string, unknown> & {
  guests: Array<Record<string, unknown>>;
  routes: Array<Record<string, unknown>>;
  services: Array<Record<string, unknown>>;
  host: { zfs: { datasets: Array<Record<string, unknown>> } };
};

/** A copy of a stack with `edit` applied to its values. */
export function edited(raw: RawStack, edit: (values: StackValues) => void): RawStack {
  const copy = { values: structuredClone(raw.values), secretKeys: new Set(raw.secretKeys) };
  edit(copy.values as StackValues);
  return copy;
}

/** Removes a guest and what names it (its services, the routes to them, the model routes when it served the models). */
export function withoutGuest(v: StackValues, vmid: number): void {
  const services = new Set(v.services.filter((s) => s.guest === vmid).map((s) => s.name));
  const servedModels = (v.guests.find((g) => g.vmid === vmid)?.role as { type?: string } | undefined)?.type === "model-server";
  const others = v.guests.filter((g) => g.vmid !== vmid && (g.role as { type?: string } | undefined)?.type === "model-server");
  v.guests = v.guests.filter((g) => g.vmid !== vmid);
  v.services = v.services.filter((s) => !services.has(s.name as string));
  v.routes = v.routes.filter((r) => !services.has(r.service as string) && !(servedModels && others.length === 0 && r.byModel === true));
}

/** The value of an exported Output. */
export function exported<T>(exports: Record<string, unknown>, key: string): Promise<T> {
  return new Promise((resolve) => (exports[key] as pulumi.Output<T>).apply(resolve));
}

/**
 * No orphans either way: every guest, storage and downloaded volume in the simulator is in the
 * state, and every state entry's object exists.
 */
export async function expectNoOrphans(w: World, expect: (v: unknown, m?: string) => { toBeDefined(): void; toEqual(x: unknown): void }): Promise<void> {
  const entries = [...w.state.resources.values()];
  for (const e of entries) {
    const t = w.translations[e.type];
    if (t) expect(await t.read(e), e.name).toBeDefined();
  }
  const ids = (...types: string[]) => entries.filter((e) => types.includes(e.type)).map((e) => e.id).sort();
  const guestIds = entries.filter((e) => e.type === TYPES.container || e.type === TYPES.vm).map((e) => String(e.inputs.vmId));
  const templateIds = entries.filter((e) => e.type.endsWith(":LxcTemplate")).map((e) => e.id.split("/")[1]!);
  expect([...w.sim.state.guests.keys()].map(String).sort(), "guests").toEqual([...guestIds, ...templateIds].sort());
  expect([...w.sim.state.storages.keys()].filter((s) => !["local", "local-zfs"].includes(s)).sort(), "storages").toEqual(ids(TYPES.zfspool, TYPES.directory));
  const downloads = [...w.sim.state.storages.values()].flatMap((s) => [...s.volumes.values()]).filter((v) => /:(import|iso)\//.test(v.volid)).map((v) => v.volid).sort();
  expect(downloads, "downloads").toEqual(ids(TYPES.download));
}

/** The contents of the files an install script stages (they travel base64-encoded in it). */
export function stagedContents(script: string): string[] {
  return [...script.matchAll(/<<'PHOENIX_FILE'\n([\s\S]*?)\nPHOENIX_FILE/g)].map((m) => Buffer.from(m[1]!.replace(/\s/g, ""), "base64").toString("utf8"));
}

/**
 * Every call that destroyed a guest: DELETE of a container or VM through the API, and `pct
 * destroy` / `qm destroy` on the node. Scenarios assert it empty unless they allowed it.
 */
export function guestDestroys(w: World): string[] {
  const api = w.sim.log.entries.filter((e) => e.method === "DELETE" && /\/nodes\/[^/]+\/(lxc|qemu)\/\d+$/.test(e.path) && e.status === 200).map((e) => `DELETE ${e.path}`);
  const node = w.rig.sandbox.calls().filter((c) => (c[0] === "pct" || c[0] === "qm") && c[1] === "destroy").map((c) => c.join(" "));
  return [...api, ...node];
}
