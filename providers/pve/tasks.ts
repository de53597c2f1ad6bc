import type { PveClient } from "./client";
import { PveApiError, PveTaskError, PveTaskTimeoutError } from "./errors";

export interface Upid {
  node: string;
  pid: number;
  pstart: number;
  starttime: number;
  type: string;
  id: string;
  user: string;
}

const UPID_RE =
  /^UPID:([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$/;

/** pve-common PVE/UPID.pm decode. */
export function parseUpid(upid: string): Upid {
  const m = UPID_RE.exec(upid);
  if (!m) throw new Error(`not a PVE task id (UPID): '${upid}'`);
  return {
    node: m[1] as string,
    pid: parseInt(m[3] as string, 16),
    pstart: parseInt(m[4] as string, 16),
    starttime: parseInt(m[5] as string, 16),
    type: m[6] as string,
    id: m[7] as string,
    user: m[8] as string,
  };
}

export function isUpid(value: unknown): value is string {
  return typeof value === "string" && UPID_RE.test(value);
}

export interface TaskStatus {
  upid: string;
  status: "running" | "stopped";
  exitstatus?: string;
  type: string;
  id: string;
  node: string;
}

export interface TaskResult {
  upid: string;
  exitstatus: string;
  /** The number from `WARNINGS: n`, 0 for OK. */
  warnings: number;
}

export interface WaitOptions {
  timeoutMs?: number;
  pollIntervalMs?: number;
}

function taskPath(upid: string): string {
  return `/nodes/${encodeURIComponent(parseUpid(upid).node)}/tasks/${encodeURIComponent(upid)}`;
}

export async function taskLog(client: PveClient, upid: string, start = 0, limit = 50): Promise<Array<{ n: number; t: string }>> {
  return client.get(`${taskPath(upid)}/log`, { start, limit });
}

/**
 * Polls a task until it stops. OK and `WARNINGS: n` are success; any other
 * exit status throws PveTaskError with the tail of the task log. A status
 * call answered 400 "no such task" right after dispatch (or on a proxied
 * node) means "not visible yet", as bpg treats it.
 */
export async function waitForTask(client: PveClient, upid: string, opts: WaitOptions = {}): Promise<TaskResult> {
  const timeoutMs = opts.timeoutMs ?? client.options.task?.timeoutMs ?? 30 * 60_000;
  const deadline = client.now() + timeoutMs;
  for (let attempt = 0; ; attempt++) {
    let status: TaskStatus | undefined;
    try {
      status = await client.get<TaskStatus>(`${taskPath(upid)}/status`);
    } catch (err) {
      if (!(err instanceof PveApiError && err.status === 400 && /no such task/.test(err.detail))) throw err;
    }
    if (status?.status === "stopped") {
      const exit = status.exitstatus ?? "";
      const warn = /^WARNINGS: (\d+)$/.exec(exit);
      if (exit === "OK" || warn) return { upid, exitstatus: exit, warnings: warn ? Number(warn[1]) : 0 };
      const tailLines = client.options.task?.logTailLines ?? 20;
      let tail: string[];
      try {
        const log = await taskLog(client, upid, 0, 100_000);
        tail = log.slice(-tailLines).map((l) => l.t);
      } catch {
        tail = ["(task log unavailable)"];
      }
      throw new PveTaskError(upid, exit || "unknown exit status", tail);
    }
    if (client.now() >= deadline) throw new PveTaskTimeoutError(upid, timeoutMs);
    await client.sleep(pollDelay(client, opts, attempt));
  }
}

/**
 * How long to wait before the next status call: the configured interval when one is set, else
 * 50 ms doubling to 1 s, so a task that ends in milliseconds (a ZFS snapshot, a config lock) is
 * seen at once and a long one (a clone, a vzdump) costs one call a second.
 */
export function pollDelay(client: PveClient, opts: WaitOptions, attempt: number): number {
  return opts.pollIntervalMs ?? client.options.task?.pollIntervalMs ?? Math.min(1000, 50 * 2 ** attempt);
}
