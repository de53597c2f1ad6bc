/** Runs at most `limit` operations at once per key; others wait in FIFO order. */
export class KeyedSemaphore {
  private readonly active = new Map<string, number>();
  private readonly waiting = new Map<string, Array<() => void>>();

  constructor(private readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`concurrency limit must be a positive integer, got ${limit}`);
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(key);
    try {
      return await fn();
    } finally {
      this.release(key);
    }
  }

  private acquire(key: string): Promise<void> {
    const n = this.active.get(key) ?? 0;
    if (n < this.limit) {
      this.active.set(key, n + 1);
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const queue = this.waiting.get(key) ?? [];
      queue.push(resolve);
      this.waiting.set(key, queue);
    });
  }

  private release(key: string): void {
    const next = this.waiting.get(key)?.shift();
    if (next) {
      next();
      return;
    }
    const n = (this.active.get(key) ?? 1) - 1;
    if (n === 0) this.active.delete(key);
    else this.active.set(key, n);
    if (this.waiting.get(key)?.length === 0) this.waiting.delete(key);
  }
}

/**
 * The client's coordination state: clones of one container template are
 * serialised (pve-container locks the source for the whole clone), and
 * allocations per storage are bounded. Share one instance between clients
 * that talk to the same cluster to coordinate them too.
 */
export class PveConcurrency {
  readonly perTemplate = new KeyedSemaphore(1);
  readonly perStorage: KeyedSemaphore;

  constructor(opts: { perStorage?: number } = {}) {
    this.perStorage = new KeyedSemaphore(opts.perStorage ?? 2);
  }
}

const REGISTRY = Symbol.for("phoenix.pve.concurrency");

/**
 * The coordination state for one PVE endpoint, shared by every client in this
 * process. Dynamic providers build a client per call (they `require()` this
 * module inside their methods), so only process-wide state lets concurrent
 * resources see each other's clones. It lives on `globalThis` and is created
 * on first use, so a re-required or re-loaded module finds the same one.
 */
export function processConcurrency(endpoint: string, perStorage = 2): PveConcurrency {
  const holder = globalThis as { [REGISTRY]?: Map<string, PveConcurrency> };
  const registry = (holder[REGISTRY] ??= new Map());
  const key = `${endpoint} ${perStorage}`;
  let c = registry.get(key);
  if (!c) {
    c = new PveConcurrency({ perStorage });
    registry.set(key, c);
  }
  return c;
}
