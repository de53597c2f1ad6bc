import type { ApiSchema, ParamSchema, Route } from "./schema";
import type { SimState } from "./state";
import { die, paramError, SimError, type TaskRunner, type TaskWork } from "./tasks";
import { parseBoolean, type ParamValue } from "./validate";

export interface SimTiming {
  /** How long a task stays `running` before its work runs. */
  taskDurationMs: number;
  /** How long one volume allocation holds its storage's lock. */
  allocationMs: number;
  /** How long an allocation waits for a busy storage lock before failing with `got timeout`. */
  lockTimeoutMs: number;
}

export interface Sim {
  state: SimState;
  tasks: TaskRunner;
  schema: ApiSchema;
  timing: SimTiming;
}

export interface HandlerCtx {
  sim: Sim;
  route: Route;
  params: Record<string, ParamValue>;
  /** Authenticated principal: `root@pam` for a ticket, `root@pam!phoenix` for a token. */
  user: string;
  /** Set by fault injection: the task this request starts must fail with this message. */
  failTask?: string;
  /** Keys a restore took from the backup (snapshots.ts): not the caller's, so not checked against its permissions. */
  inherited?: ReadonlySet<string>;
}

export type Handler = (ctx: HandlerCtx) => unknown;

export function str(ctx: HandlerCtx, name: string): string | undefined {
  const v = ctx.params[name];
  return Array.isArray(v) ? v[0] : v;
}

export function req(ctx: HandlerCtx, name: string): string {
  const v = str(ctx, name);
  if (v === undefined) throw paramError({ [name]: "property is missing and it is not optional" });
  return v;
}

export function int(ctx: HandlerCtx, name: string): number | undefined {
  const v = str(ctx, name);
  return v === undefined ? undefined : Number(v);
}

export function flag(ctx: HandlerCtx, name: string): boolean | undefined {
  const v = str(ctx, name);
  return v === undefined ? undefined : parseBoolean(v) === 1;
}

export function isRoot(ctx: HandlerCtx): boolean {
  return ctx.user === "root@pam";
}

/** PVE::Exception raise_perm_exc: HTTP 403. */
export function permError(what: string): SimError {
  return new SimError(403, `Permission check failed (${what})\n`);
}

/** Starts a worker for this request and returns its UPID. */
export function startTask(ctx: HandlerCtx, type: string, id: string, work: TaskWork, onEnd?: () => void): string {
  return ctx.sim.tasks.start({
    node: str(ctx, "node") ?? [...ctx.sim.state.nodes.keys()][0] ?? "pve",
    type,
    id,
    user: ctx.user,
    work,
    failWith: ctx.failTask,
    onEnd,
  }).upid;
}

/**
 * Runs an allocation under its storage's lock: allocations queue behind each
 * other, and one that would wait longer than the lock timeout fails the way
 * pve-storage's cluster_lock_storage does.
 */
export async function withStorageLock<T>(sim: Sim, storageId: string, sleep: (ms: number) => Promise<void>, work: () => T): Promise<T> {
  const storage = sim.state.storage(storageId);
  const now = Date.now();
  const start = Math.max(now, storage.lockFreeAt);
  if (start - now > sim.timing.lockTimeoutMs) {
    await sleep(sim.timing.lockTimeoutMs);
    throw die(`can't lock file '/var/lock/pve-manager/pve-storage-${storageId}' - got timeout`);
  }
  storage.lockFreeAt = start + sim.timing.allocationMs;
  await sleep(start - now + sim.timing.allocationMs);
  return work();
}

/** `pve-configid-list` of the `delete` parameter. */
export function deleteList(ctx: HandlerCtx): string[] {
  return (str(ctx, "delete") ?? "").split(/[\s,;\0]+/).filter((s) => s !== "");
}

/** Renders stored string values the way PVE returns them: integers, numbers and booleans as JSON numbers. */
export function typed(values: Record<string, string>, schema: Record<string, ParamSchema>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    const t = schema[k]?.type;
    out[k] = (t === "integer" || t === "number" || t === "boolean") && v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v;
  }
  return out;
}

/** pve-common@9.1.1 src/PVE/Tools.pm assert_if_modified: only a non-empty digest is compared (a die: HTTP 500). */
export function checkDigest(ctx: HandlerCtx, current: string): void {
  const given = str(ctx, "digest");
  if (given && given !== current) {
    throw die("detected modified configuration - file changed by other user? Try again.");
  }
}
