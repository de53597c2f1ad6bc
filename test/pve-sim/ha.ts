/**
 * The HA manager's configuration (/etc/pve/ha/{resources,rules,groups}.cfg): resources, PVE 9's
 * rules and PVE 8's groups, as pve-ha-manager (b71218f) src/PVE/API2/HA/{Resources,Rules,Groups}.pm
 * answer. Only the configuration: no CRM/LRM state machine runs (a resource's guest is not started
 * or recovered by the simulator).
 */
import { deleteList, req, str, type Handler, type HandlerCtx } from "./core";
import type { SimState } from "./state";
import { die } from "./tasks";

type Section = Record<string, string>;
interface HaConfig {
  resources: Map<string, Section>;
  rules: Map<string, Section & { order: string }>;
  groups: Map<string, Section>;
}

const HA = new WeakMap<SimState, HaConfig>();

export function haConfig(state: SimState): HaConfig {
  let cfg = HA.get(state);
  if (!cfg) {
    cfg = { resources: new Map(), rules: new Map(), groups: new Map() };
    HA.set(state, cfg);
  }
  return cfg;
}

/** The request's settings, without the keys that name the section or control the call. */
function settings(ctx: HandlerCtx, control: string[]): Section {
  const out: Section = {};
  for (const [k, v] of Object.entries(ctx.params)) if (!control.includes(k) && v !== undefined) out[k] = Array.isArray(v) ? v.join(",") : v;
  return out;
}

/** Config.pm parse_sid: `vm:<id>`, `ct:<id>`, or a bare id taken as vm. */
function parseSid(sid: string): { sid: string; kind: "qemu" | "lxc"; vmid: number } {
  const m = /^(?:(vm|ct):)?(\d+)$/.exec(sid);
  if (!m) throw die(`unable to parse service id '${sid}'`);
  const kind = m[1] === "ct" ? "lxc" : "qemu";
  return { sid: `${m[1] ?? "vm"}:${m[2]}`, kind, vmid: Number(m[2]) };
}

/** Config.pm have_groups_been_migrated: true when no group is configured (PVE 9); PVE 8 has no rules to migrate to. */
const groupsMigrated = (ctx: HandlerCtx): boolean => ctx.sim.schema.version >= 9 && haConfig(ctx.sim.state).groups.size === 0;

function applyUpdate(section: Section, ctx: HandlerCtx, control: string[]): void {
  for (const k of deleteList(ctx)) delete section[k];
  Object.assign(section, settings(ctx, control));
}

export function haHandlers(): Record<string, Handler> {
  return {
    "GET /cluster/ha/resources": (ctx) => [...haConfig(ctx.sim.state).resources.keys()].map((sid) => ({ sid })),
    "GET /cluster/ha/resources/{sid}": (ctx) => {
      const { sid } = parseSid(req(ctx, "sid"));
      const r = haConfig(ctx.sim.state).resources.get(sid);
      if (!r) throw die(`no such resource '${sid}'`);
      return { sid, type: sid.split(":")[0], digest: "0", ...r };
    },
    // Resources.pm create: the group is refused once groups are migrated; the guest must exist (plugin->exists).
    "POST /cluster/ha/resources": (ctx) => {
      const { sid, kind, vmid } = parseSid(req(ctx, "sid"));
      const type = str(ctx, "type");
      if (type !== undefined && type !== sid.split(":")[0]) throw die("types does not match");
      const cfg = haConfig(ctx.sim.state);
      if (str(ctx, "group") !== undefined && groupsMigrated(ctx)) throw die("invalid parameter 'group': ha groups have been migrated to rules");
      const g = ctx.sim.state.guests.get(vmid);
      if (!g || g.kind !== kind) throw die(`${kind === "lxc" ? "CT" : "VM"} ${vmid} does not exist`);
      const group = str(ctx, "group");
      if (group !== undefined && !cfg.groups.has(group)) throw die(`HA group '${group}' does not exist`);
      if (cfg.resources.has(sid)) throw die(`resource ID '${sid}' already defined`);
      cfg.resources.set(sid, { state: "started", ...settings(ctx, ["sid", "type"]) });
      return null;
    },
    "PUT /cluster/ha/resources/{sid}": (ctx) => {
      const { sid } = parseSid(req(ctx, "sid"));
      const r = haConfig(ctx.sim.state).resources.get(sid);
      if (!r) throw die(`no such resource '${sid}'`);
      applyUpdate(r, ctx, ["sid", "type", "delete", "digest"]);
      return null;
    },
    // Resources.pm delete: purge (default 1) removes it from the rules, a rule left without resources goes too.
    "DELETE /cluster/ha/resources/{sid}": (ctx) => {
      const { sid } = parseSid(req(ctx, "sid"));
      const cfg = haConfig(ctx.sim.state);
      if (!cfg.resources.has(sid)) throw die(`cannot delete service '${sid}', not HA managed!`);
      cfg.resources.delete(sid);
      if (str(ctx, "purge") !== "0") {
        for (const [id, rule] of cfg.rules) {
          const left = rule.resources!.split(",").filter((r) => r !== sid);
          if (left.length === 0) cfg.rules.delete(id);
          else rule.resources = left.join(",");
        }
      }
      return null;
    },
    "GET /cluster/ha/rules": (ctx) => [...haConfig(ctx.sim.state).rules].map(([rule, r]) => ({ rule, ...r })),
    "GET /cluster/ha/rules/{rule}": (ctx) => {
      const rule = req(ctx, "rule");
      const r = haConfig(ctx.sim.state).rules.get(rule);
      if (!r) throw die(`no such ha rule '${rule}'`);
      return { rule, digest: "0", ...r };
    },
    // Rules.pm create: only once groups are migrated; every resource configured, every node in the cluster.
    "POST /cluster/ha/rules": (ctx) => {
      if (!groupsMigrated(ctx)) throw die("cannot create ha rule: ha groups have not been migrated yet");
      const rule = req(ctx, "rule");
      const cfg = haConfig(ctx.sim.state);
      if (cfg.rules.has(rule)) throw die(`HA rule '${rule}' already defined`);
      const r = settings(ctx, ["rule"]);
      if (r.disable === "0") delete r.disable;
      const resources = (r.resources ?? "").split(",").filter((s) => s !== "").map((s) => parseSid(s).sid);
      if (resources.length === 0) throw die("no resources were specified");
      const unmanaged = resources.filter((s) => !cfg.resources.has(s)).sort();
      if (unmanaged.length > 0) throw die(`cannot use unmanaged resource(s) ${unmanaged.join(", ")}.`);
      if (r.nodes !== undefined) {
        const missing = r.nodes.split(",").map((n) => n.split(":")[0]!).filter((n) => !ctx.sim.state.nodes.has(n)).sort();
        if (missing.length > 0) throw die(`cannot use non-existent node(s) ${missing.join(", ")}.`);
      }
      // Rules.pm get_next_ordinal.
      cfg.rules.set(rule, { ...r, order: String(cfg.rules.size + 1) });
      return null;
    },
    "PUT /cluster/ha/rules/{rule}": (ctx) => {
      const rule = req(ctx, "rule");
      const r = haConfig(ctx.sim.state).rules.get(rule);
      if (!r) throw die(`HA rule '${rule}' does not exist`);
      applyUpdate(r, ctx, ["rule", "type", "delete", "digest"]);
      return null;
    },
    "DELETE /cluster/ha/rules/{rule}": (ctx) => {
      const rule = req(ctx, "rule");
      if (!haConfig(ctx.sim.state).rules.delete(rule)) throw die(`no such ha rule '${rule}'`);
      return null;
    },
    "GET /cluster/ha/groups": (ctx) => {
      if (ctx.sim.schema.version >= 9 && groupsMigrated(ctx)) throw die("cannot index groups: ha groups have been migrated to rules");
      return [...haConfig(ctx.sim.state).groups].map(([group, g]) => ({ group, type: "group", ...g }));
    },
    "GET /cluster/ha/groups/{group}": (ctx) => {
      if (groupsMigrated(ctx)) throw die("cannot read group: ha groups have been migrated to rules");
      const group = req(ctx, "group");
      const g = haConfig(ctx.sim.state).groups.get(group);
      if (!g) throw die(`no such ha group '${group}'`);
      return { group, type: "group", digest: "0", ...g };
    },
    "POST /cluster/ha/groups": (ctx) => {
      if (groupsMigrated(ctx)) throw die("cannot create group: ha groups have been migrated to rules");
      const group = req(ctx, "group");
      const cfg = haConfig(ctx.sim.state);
      if (cfg.groups.has(group)) throw die(`ha group ID '${group}' already defined`);
      cfg.groups.set(group, settings(ctx, ["group", "type"]));
      return null;
    },
    "PUT /cluster/ha/groups/{group}": (ctx) => {
      if (groupsMigrated(ctx)) throw die("cannot update group: ha groups have been migrated to rules");
      const group = req(ctx, "group");
      const g = haConfig(ctx.sim.state).groups.get(group);
      if (!g) throw die(`no such ha group '${group}'`);
      applyUpdate(g, ctx, ["group", "type", "delete", "digest"]);
      return null;
    },
    // Groups.pm delete: refused while a resource names the group.
    "DELETE /cluster/ha/groups/{group}": (ctx) => {
      if (groupsMigrated(ctx)) throw die("cannot delete group: ha groups have been migrated to rules");
      const group = req(ctx, "group");
      const cfg = haConfig(ctx.sim.state);
      if (!cfg.groups.has(group)) throw die(`no such ha group '${group}'`);
      for (const [sid, r] of cfg.resources) if (r.group === group) throw die(`ha group is used by service '${sid}'`);
      cfg.groups.delete(group);
      return null;
    },
  };
}
