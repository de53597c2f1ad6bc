/** What an injected fault does to a matching request or task. */
export type FaultKind =
  /** Answer with an HTTP 5xx (default 500 "cluster not ready - no quorum?") instead of handling the request. */
  | "http5xx"
  /** Answer 500 `can't lock file '…' - got timeout`, as PVE does when a config or storage lock is busy. */
  | "lockTimeout"
  /** Destroy the socket without answering (a connection reset for the client). */
  | "drop"
  /** Handle the request, then destroy the socket instead of answering: the call was applied but its answer lost. */
  | "dropReply"
  /** Delay the answer by `latencyMs`. */
  | "latency"
  /** Let the request start its task, but make the task fail with `message`. */
  | "failTask";

export interface FaultRule {
  kind: FaultKind;
  /** HTTP method to match; any when absent. */
  method?: string;
  /** Schema path template (`/nodes/{node}/lxc`) or a regex tested on the request path; any when absent. */
  path?: string | RegExp;
  /** Chance per matching request, 0..1 (default 1). */
  probability?: number;
  /** Fire at most this many times, then the rule is spent. */
  count?: number;
  status?: number;
  latencyMs?: number;
  message?: string;
}

interface LiveRule extends FaultRule {
  fired: number;
}

/**
 * The simulator's fault table. Rules are checked in the order added; tests
 * use `count` for deterministic faults, `npm run sim` uses probabilities.
 */
export class Faults {
  private rules: LiveRule[] = [];

  constructor(private readonly random: () => number = Math.random) {}

  add(rule: FaultRule): void {
    this.rules.push({ ...rule, fired: 0 });
  }

  clear(): void {
    this.rules = [];
  }

  /** Matching rules of a kind that fire for this request (consuming their counts). */
  take(kind: FaultKind, method: string, template: string, path: string): FaultRule[] {
    const out: FaultRule[] = [];
    for (const rule of this.rules) {
      if (rule.kind !== kind) continue;
      if (rule.method && rule.method !== method) continue;
      if (rule.path !== undefined) {
        const hit = typeof rule.path === "string" ? rule.path === template : rule.path.test(path);
        if (!hit) continue;
      }
      if (rule.count !== undefined && rule.fired >= rule.count) continue;
      if (this.random() >= (rule.probability ?? 1)) continue;
      rule.fired++;
      out.push(rule);
    }
    return out;
  }
}

const KIND_ALIASES: Record<string, FaultKind> = {
  "5xx": "http5xx",
  lock: "lockTimeout",
  drop: "drop",
  taskfail: "failTask",
};

/**
 * Parses PVE_SIM_FAULTS (`5xx:0.05,lock:0.02,drop:0.01,taskfail:0.01`) and
 * PVE_SIM_LATENCY (`50` for every call, or `GET:5,POST:200`).
 */
export function faultsFromEnv(faultSpec: string | undefined, latencySpec: string | undefined): FaultRule[] {
  const rules: FaultRule[] = [];
  for (const item of (faultSpec ?? "").split(",").filter((s) => s.trim() !== "")) {
    const [name, p] = item.trim().split(":");
    const kind = KIND_ALIASES[name ?? ""];
    const probability = Number(p);
    if (!kind || !(probability >= 0 && probability <= 1)) {
      throw new Error(
        `PVE_SIM_FAULTS: cannot parse '${item}'; expected <kind>:<probability> with kind one of ${Object.keys(KIND_ALIASES).join(", ")}`,
      );
    }
    rules.push({
      kind,
      probability,
      // Reads stay clean so that a faulty dev stack still converges; PVE's own transient failures hit writes.
      ...(kind === "drop" || kind === "http5xx" ? {} : { method: "POST" }),
      message: kind === "failTask" ? "injected task failure (PVE_SIM_FAULTS)" : undefined,
    });
  }
  for (const item of (latencySpec ?? "").split(",").filter((s) => s.trim() !== "")) {
    const parts = item.trim().split(":");
    const ms = Number(parts[parts.length - 1]);
    if (!(ms >= 0)) throw new Error(`PVE_SIM_LATENCY: cannot parse '${item}'; expected <ms> or <METHOD>:<ms>`);
    rules.push({ kind: "latency", latencyMs: ms, ...(parts.length > 1 ? { method: parts[0] } : {}) });
  }
  return rules;
}
