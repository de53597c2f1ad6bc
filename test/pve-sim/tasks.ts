import type { Upid } from "../../providers/pve/tasks";

/** An error raised while handling a request, answered with PVE's status, message and `errors`. */
export class SimError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message);
  }
}

/** A plain `die "…\n"` in a PVE handler: HTTP 500 with the text as message. */
export function die(message: string): SimError {
  return new SimError(500, message.endsWith("\n") ? message : `${message}\n`);
}

/** PVE::Exception::raise_param_exc: HTTP 400 with per-parameter messages. */
export function paramError(errors: Record<string, string>): SimError {
  return new SimError(400, "Parameter verification failed.\n", errors);
}

export interface Task extends Upid {
  upid: string;
  status: "running" | "stopped";
  exitstatus?: string;
  log: string[];
  done: Promise<void>;
}

/** A task's body: runs after the task's start delay, may log, may wait, throws to fail the task. */
export type TaskWork = (ctx: { log: (line: string) => void; sleep: (ms: number) => Promise<void> }) => Promise<void> | void;

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/**
 * Runs PVE worker tasks asynchronously with real-format UPIDs and logs. Every
 * timer is tracked so that `stop()` leaves nothing running.
 */

export class TaskRunner {
  readonly tasks = new Map<string, Task>();
  private nextPid = 0x1a2b0;
  private timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly now: () => number,
    private readonly durationMs: () => number,
  ) {}

  sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.reject(new Error("simulator stopped"));
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /**
   * Starts a worker. `onEnd` runs whether the work succeeded or failed, the
   * way PVE's workers release the locks they took.
   */
  start(opts: {
    node: string;
    type: string;
    id: string;
    user: string;
    work: TaskWork;
    failWith?: string;
    onEnd?: () => void;
  }): Task {
    const pid = this.nextPid++;
    const starttime = Math.floor(this.now() / 1000);
    const pstart = 0x2000000 + pid;
    const upid = `UPID:${opts.node}:${hex8(pid)}:${hex8(pstart)}:${hex8(starttime)}:${opts.type}:${opts.id}:${opts.user}:`;
    const task: Task = {
      upid,
      node: opts.node,
      pid,
      pstart,
      starttime,
      type: opts.type,
      id: opts.id,
      user: opts.user,
      status: "running",
      log: [],
      done: Promise.resolve(),
    };
    const log = (line: string): void => {
      task.log.push(line);
    };
    task.done = (async () => {
      let warnings = 0;
      try {
        await this.sleep(this.durationMs());
        if (opts.failWith) throw new Error(opts.failWith);
        await opts.work({
          log: (line) => {
            if (line.startsWith("WARN:")) warnings++;
            log(line);
          },
          sleep: (ms) => this.sleep(ms),
        });
        task.exitstatus = warnings > 0 ? `WARNINGS: ${warnings}` : "OK";
        log(warnings > 0 ? `TASK WARNINGS: ${warnings}` : "TASK OK");
      } catch (e) {
        const msg = (e instanceof Error ? e.message : String(e)).replace(/\n$/, "");
        task.exitstatus = msg;
        log(`TASK ERROR: ${msg}`);
      } finally {
        opts.onEnd?.();
        task.status = "stopped";
      }
    })();
    this.tasks.set(upid, task);
    return task;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
