/**
 * The HA types as bpg v0.111.1 makes their calls (fwprovider/cluster/ha/resource_haresource.go,
 * resource_harule.go, resource_hagroup.go; proxmox/cluster/ha/{resources,rules,groups}):
 * - HaresourceLegacy: Create POSTs /cluster/ha/resources with sid, type, state (default
 *   started), comment, group, max_relocate, max_restart; Update PUTs /cluster/ha/resources/{sid}
 *   with the set fields and `delete` for those unset (ToUpdateRequest); Delete DELETEs.
 * - HaruleLegacy: Create POSTs /cluster/ha/rules with rule, type, comment, disable (always, as
 *   0/1: `url:"disable,int"`), resources joined with ",", and nodes as `name:prio` joined with
 *   "," plus strict (node-affinity) or affinity (resource-affinity); rule and type are
 *   RequiresReplace; Update PUTs the same to /cluster/ha/rules/{rule}.
 * - HagroupLegacy: POST /cluster/ha/groups with group, type=group, nodes, restricted,
 *   nofailback (as 0/1), comment.
 */
import type { FormParams, PveApi } from "../../providers/pve";
import type { Translation } from "./engine";

type Inputs = Record<string, unknown>;
const e = encodeURIComponent;
const bool01 = (v: unknown): string => (v ? "1" : "0");
const defined = (o: Record<string, string | undefined>): FormParams => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as FormParams;
/** resource_harule.go nodesToString: `name:prio` joined with ","; bpg ranges over a Go map, so its order is unspecified (here: the inputs' order). */
const nodesString = (v: unknown): string | undefined => {
  const m = v as Record<string, number> | undefined;
  return m ? Object.entries(m).map(([n, p]) => `${n}:${p}`).join(",") : undefined;
};

function resourceBody(i: Inputs): Record<string, string | undefined> {
  return {
    state: String(i.state ?? "started"),
    comment: i.comment as string | undefined,
    group: i.group as string | undefined,
    max_relocate: i.maxRelocate === undefined ? undefined : String(i.maxRelocate),
    max_restart: i.maxRestart === undefined ? undefined : String(i.maxRestart),
  };
}

function ruleBody(i: Inputs): Record<string, string | undefined> {
  const node = i.type === "node-affinity";
  return {
    comment: i.comment as string | undefined,
    disable: bool01(i.disable),
    resources: (i.resources as string[]).join(","),
    nodes: node ? nodesString(i.nodes) : undefined,
    strict: node && i.strict !== undefined ? bool01(i.strict) : undefined,
    affinity: node ? undefined : (i.affinity as string | undefined),
  };
}

/** A section of /cluster/ha/<kind>: create, update with `delete` for what was set and no longer is, delete, read. */
function sectionTranslation(api: PveApi, kind: "resources" | "rules" | "groups", idOf: (i: Inputs) => string, idKey: string, body: (i: Inputs) => Record<string, string | undefined>, fixed: (i: Inputs) => FormParams, replaceOnChanges: string[]): Translation {
  const base = `/cluster/ha/${kind}`;
  const path = (id: string) => `${base}/${e(id)}`;
  const read = async (id: string) => (await api.client.get<Inputs[]>(base)).some((x) => x[idKey] === id) ? api.client.get<Inputs>(path(id)) : undefined;
  return {
    replaceOnChanges,
    async create(i) {
      const id = idOf(i);
      await api.client.post(base, { [idKey]: id, ...fixed(i), ...defined(body(i)) });
      return { id, outputs: (await api.client.get<Inputs>(path(id))) ?? {} };
    },
    async update(entry, i) {
      const before = body(entry.inputs);
      const now = body(i);
      const del = Object.keys(now).filter((k) => now[k] === undefined && before[k] !== undefined);
      await api.client.put(path(entry.id), { ...(kind === "rules" ? { type: String(i.type) } : {}), ...defined(now), ...(del.length > 0 ? { delete: del.join(",") } : {}) });
      return (await api.client.get<Inputs>(path(entry.id))) ?? {};
    },
    async delete(entry) {
      if (await read(entry.id)) await api.client.delete(path(entry.id));
    },
    read: (entry) => read(entry.id),
  };
}

export const haResourceTranslation = (api: PveApi): Translation =>
  sectionTranslation(api, "resources", (i) => String(i.resourceId), "sid", resourceBody, (i) => ({ type: String(i.resourceId).split(":")[0]! === "ct" ? "ct" : "vm" }), ["resourceId"]);

export const haRuleTranslation = (api: PveApi): Translation => sectionTranslation(api, "rules", (i) => String(i.rule), "rule", ruleBody, (i) => ({ type: String(i.type) }), ["rule", "type"]);

export const haGroupTranslation = (api: PveApi): Translation =>
  sectionTranslation(api, "groups", (i) => String(i.group), "group", (i) => ({ nodes: nodesString(i.nodes), restricted: bool01(i.restricted), nofailback: bool01(i.noFailback), comment: i.comment as string | undefined }), () => ({ type: "group" }), ["group"]);
