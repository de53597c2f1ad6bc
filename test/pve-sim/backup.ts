/**
 * Backup jobs: /cluster/backup and /cluster/backup/{id}, the vzdump jobs of /etc/pve/jobs.cfg.
 * Behaviour read from pve-manager 9.1.3 (commit 5829c814, "bump version to 9.1.3"), cited as
 * `pve-manager@9.1.3 <file>`: PVE/API2/Backup.pm (create_job, read_job, update_job,
 * delete_job) and PVE/VZDump.pm verify_vzdump_parameters. Parameters are checked against the
 * official schema before a handler runs (server.ts); these add what the code checks beyond it.
 * Pools are not modelled: naming one fails as check_pool_exist does for a missing pool
 * (pve-access-control@9.1.1 src/PVE/RPCEnvironment.pm: raise_perm_exc, HTTP 403).
 * Not modelled: permissions beyond root-only keys, vzdump.cron's legacy jobs, `next-run`.
 */
import * as crypto from "node:crypto";
import { deleteList, isRoot, permError, str, typed, type Handler, type HandlerCtx } from "./core";
import type { SimState } from "./state";
import { die, paramError } from "./tasks";

type Job = Record<string, string>;

/** `keep-daily=7,keep-weekly=4` as key → value. */
const keeps = (s: string): Record<string, string> => Object.fromEntries(s.split(",").filter((p) => p !== "").map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]));

/** Jobs by id, per simulator (pmxcfs' jobs.cfg). */
const JOBS = new WeakMap<SimState, Map<string, Job>>();

export function backupJobs(state: SimState): Map<string, Job> {
  let jobs = JOBS.get(state);
  if (!jobs) {
    jobs = new Map();
    JOBS.set(state, jobs);
  }
  return jobs;
}

/** Keys of a request that are not job settings. */
const CONTROL = new Set(["id", "delete", "digest", "starttime", "dow"]);

/** Backup.pm assert_param_permission_common: keys only root@pam may set. */
const ROOT_ONLY = ["tmpdir", "dumpdir", "script"];

/** Backup.pm $schedule_param_check: schedule, or starttime (+ dow) turned into one. */
function schedule(ctx: HandlerCtx, required: boolean): string | undefined {
  const sched = str(ctx, "schedule");
  const start = str(ctx, "starttime");
  if (sched !== undefined) {
    if (start !== undefined) throw paramError({ starttime: "'starttime' and 'schedule' cannot both be set" });
    return sched;
  }
  if (start === undefined) {
    if (required) throw paramError({ schedule: "neither 'starttime' nor 'schedule' were set" });
    return undefined;
  }
  // $convert_to_schedule: dow restricts, none (or all seven) means every day.
  const dow = (str(ctx, "dow") ?? "").split(/[\s,;\0]+/).filter((d) => d !== "").join(",");
  return dow === "" || dow === "mon,tue,wed,thu,fri,sat,sun" ? start : `${dow} ${start}`;
}

/** VZDump.pm verify_vzdump_parameters: conflicting selections, a parseable prune-backups, and (when complete) a selection. */
function verify(job: Job, checkMissing: boolean): void {
  const on = (k: string) => job[k] !== undefined && job[k] !== "" && job[k] !== "0";
  if (on("all") && on("vmid")) throw paramError({ all: "option conflicts with option 'vmid'" });
  if (on("exclude") && on("vmid")) throw paramError({ exclude: "option conflicts with option 'vmid'" });
  if (on("pool") && on("vmid")) throw paramError({ pool: "option conflicts with option 'vmid'" });
  // pve-storage@9.1.7 src/PVE/Storage/Plugin.pm validate_prune_backups.
  if (job["prune-backups"] !== undefined) {
    const keep = keeps(job["prune-backups"]);
    if (keep["keep-all"] === "1" && Object.entries(keep).some(([k, v]) => k !== "keep-all" && Number(v) > 0)) throw die("keep-all cannot be set together with other options.");
  }
  if (job.exclude !== undefined && !job.pool) job.all = "1";
  if (checkMissing && !(on("all") || on("stop") || on("pool")) && !on("vmid")) throw paramError({ vmid: "property is missing" });
}

function settings(ctx: HandlerCtx): Job {
  const out: Job = {};
  for (const [k, v] of Object.entries(ctx.params)) if (!CONTROL.has(k) && k !== "node" && v !== undefined) out[k] = Array.isArray(v) ? v.join(",") : v;
  const node = str(ctx, "node");
  if (node !== undefined) out.node = node;
  if (!isRoot(ctx)) for (const k of ROOT_ONLY) if (out[k] !== undefined) throw paramError({ [k]: "Only root may set this option." });
  return out;
}

/**
 * A job as read_job returns it: jobs.cfg's section with `id` put back and `type` vzdump. Create
 * parsed prune-backups into a hash before writing (verify_vzdump_parameters), so it reads back
 * as an object, the form bpg v0.111.1 proxmox/cluster/backup/backup_types.go PruneBackupsString
 * accepts beside a string; its counts are numbers.
 */
function shown(ctx: HandlerCtx, id: string, job: Job): Record<string, unknown> {
  const schema = ctx.sim.schema.find("POST", "/cluster/backup")?.params ?? {};
  const { "prune-backups": prune, ...rest } = job;
  const keep = prune === undefined ? undefined : Object.fromEntries(Object.entries(keeps(prune)).map(([k, v]) => [k, Number(v)]));
  return { ...typed(rest, schema), ...(keep ? { "prune-backups": keep } : {}), id, type: "vzdump" };
}

function jobOf(ctx: HandlerCtx, id: string): Job {
  const job = backupJobs(ctx.sim.state).get(id);
  if (!job) throw paramError({ id: `No such job '${id}'` });
  return job;
}

/** Handlers for the backup job endpoints, keyed by `METHOD template`. */
export function backupHandlers(): Record<string, Handler> {
  return {
    "GET /cluster/backup": (ctx) => [...backupJobs(ctx.sim.state)].sort(([a], [b]) => a.localeCompare(b)).map(([id, job]) => shown(ctx, id, job)),
    "POST /cluster/backup": (ctx) => {
      const job = settings(ctx);
      if (job.pool !== undefined) throw permError(`pool '${job.pool}' does not exist`);
      const sched = schedule(ctx, true)!;
      job.schedule = sched;
      job.enabled ??= "1";
      // "autogenerate id for api compatibility".
      const id = str(ctx, "id") ?? crypto.randomUUID();
      const jobs = backupJobs(ctx.sim.state);
      if (jobs.has(id)) throw die(`Job '${id}' already exists`);
      verify(job, true);
      jobs.set(id, job);
      return null;
    },
    "GET /cluster/backup/{id}": (ctx) => {
      const id = str(ctx, "id")!;
      return shown(ctx, id, jobOf(ctx, id));
    },
    "PUT /cluster/backup/{id}": (ctx) => {
      const id = str(ctx, "id")!;
      const update = settings(ctx);
      if (update.pool !== undefined) throw permError(`pool '${update.pool}' does not exist`);
      const sched = schedule(ctx, false);
      if (sched !== undefined) update.schedule = sched;
      const del = deleteList(ctx);
      if (Object.keys(update).length === 0 && del.length === 0) throw die("no options specified");
      verify({ ...update }, false);
      const current = backupJobs(ctx.sim.state).get(id);
      if (!current) throw die("no such vzdump job");
      const job: Job = { ...current };
      const schema = ctx.sim.schema.find("POST", "/cluster/backup")?.params ?? {};
      for (const k of del) {
        // VZDump.pm option_exists (the vzdump options), plus comment and repeat-missed.
        if (!(k in schema) || k === "id" || k === "schedule" || k === "dow" || k === "starttime") {
          if (k !== "comment" && k !== "repeat-missed") throw paramError({ delete: `unknown option '${k}'` });
        }
        delete job[k];
      }
      Object.assign(job, update);
      if (job.exclude !== undefined && job.pool === undefined) job.all = "1";
      if (update.vmid !== undefined) {
        delete job.all;
        delete job.exclude;
        delete job.pool;
      } else if (update.all === "1") {
        delete job.vmid;
        delete job.pool;
      } else if (job.pool !== undefined) {
        delete job.vmid;
        delete job.all;
        delete job.exclude;
      }
      verify(job, true);
      backupJobs(ctx.sim.state).set(id, job);
      return null;
    },
    "DELETE /cluster/backup/{id}": (ctx) => {
      const id = str(ctx, "id")!;
      jobOf(ctx, id);
      backupJobs(ctx.sim.state).delete(id);
      return null;
    },
  };
}
