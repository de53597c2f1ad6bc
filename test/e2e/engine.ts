/**
 * An in-process stand-in for the Pulumi engine: runs the program under the SDK's mock monitor
 * and, for every resource it registers, does what the engine would do with the real providers.
 *
 * - Dynamic resources: the provider is rebuilt from the `__provider` text the SDK serialized,
 *   the way the engine's dynamic-provider host does (require-from-string, `handler()`), and goes
 *   through check → diff → create/update; resources the program no longer declares are deleted
 *   with the provider text stored in their state.
 * - Bridged resources: a `Translation` per type turns inputs into the API calls they stand for.
 * - State: outputs of one run are the `olds` of the next; a run that fails keeps the old entry
 *   of a resource whose update failed, and a partially created object is kept with init errors
 *   so the next run updates it, as the engine does.
 * - Order and parallelism: the SDK registers a resource only once its inputs and dependsOn have
 *   resolved, and the mock answers only once the operation is done, so the graph is walked in
 *   dependency order; a semaphore bounds the operations in flight like `pulumi up --parallel`
 *   (unbounded by default, as the CLI's default is).
 * - Errors: like `pulumi up --continue-on-error`, a failed operation skips what depends on it and
 *   lets the rest go on; deletions of undeclared resources only happen after a run without errors.
 *   The run ends when nothing is in flight and nothing new registers (the SDK's own RPC count
 *   never settles once a registration is left unanswered).
 */
import { same } from "../../providers/common";
import { setEngineConfig } from "../../scripts/offline-program";
import * as pulumi from "@pulumi/pulumi";
import { isRpcSecret, unwrapRpcSecret } from "@pulumi/pulumi/runtime/rpc";
import type { RawStack } from "../../stacks/load";

export type Key = string;

export interface StateEntry {
  type: string;
  name: string;
  id: string;
  /** Inputs as last applied (after check, for dynamic resources). */
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  /** Resources this one depends on (dependsOn, data flow): deleted after them. */
  dependencies: Key[];
  retainOnDelete: boolean;
  /** Pulumi's `protect`, as the last registration set it: a protected entry is never deleted. */
  protect?: boolean;
  /** Set when the create failed after the object was made: the next run must update it. */
  initErrors?: string[];
}

/** A create that was under way when the run was stopped: the object may exist, the state has no id for it. */
export interface PendingCreate {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

/** The stack's state between runs. */
export class EngineState {
  readonly resources = new Map<Key, StateEntry>();
  /** As the engine keeps them: a later `up` leaves them (and warns), `refresh` imports or clears them. */
  readonly pendingCreates = new Map<Key, PendingCreate>();
}

export type OperationKind = "create" | "update" | "replace" | "delete" | "same";

export interface Operation {
  key: Key;
  kind: OperationKind;
  /** ms since the run started */
  start: number;
  end: number;
  error?: string;
}

/** Thrown by a translation whose create failed after the object came to exist. */
export class PartialCreateError extends Error {
  constructor(
    readonly id: string,
    readonly outputs: Record<string, unknown>,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** How one bridged resource type maps onto API calls. */
export interface Translation {
  create(inputs: Record<string, unknown>): Promise<{ id: string; outputs: Record<string, unknown> }>;
  /** Called only when the inputs changed (or the entry has init errors): converges what differs. */
  update(entry: StateEntry, inputs: Record<string, unknown>): Promise<Record<string, unknown>>;
  delete(entry: StateEntry): Promise<void>;
  /** What exists for this entry, for refresh and for the orphan checks; undefined when gone. */
  read(entry: StateEntry): Promise<Record<string, unknown> | undefined>;
  /** Input properties that cannot change in place. */
  replaceOnChanges?: readonly string[];
  /**
   * The provider's own diff, where it compares the new inputs with what it read back into the
   * state rather than with the last inputs (bpg's guests: their disk size). Overrides
   * replaceOnChanges.
   */
  diff?(entry: StateEntry, inputs: Record<string, unknown>): { changes: boolean; replaces: string[] };
}

export interface ApplyOptions {
  raw: RawStack;
  state: EngineState;
  translations: Readonly<Record<string, Translation>>;
  /** Evaluates index.ts afresh (module caches reset) and returns its exports. */
  loadProgram: () => Promise<Record<string, unknown>>;
  /** Operations in flight at once, as `pulumi up --parallel`; default unbounded. */
  parallel?: number;
  /**
   * Fails an operation that has not finished after this long, so one provider that waits on
   * something the test machine lacks does not stall the run. The operation itself is not
   * cancelled (providers take no signal) and may still finish in the background.
   */
  operationTimeoutMs?: number;
  /**
   * Stops the run as a killed `pulumi up` stops, once this many operations have finished: no
   * operation starts after that, and those in flight finish on the host but are never written
   * to the state (the worst moment for the process to die: the object exists, the state does
   * not know it).
   */
  interruptAfter?: number;
}

/** The failure an operation of an interrupted run reports. */
export const INTERRUPTED = "the run was interrupted";

export interface ApplyResult {
  operations: Operation[];
  failures: Array<{ key: Key; message: string }>;
  /** Custom resources the program declared that never registered because something they need failed. */
  skipped: Key[];
  registered: Set<Key>;
  exports: Record<string, unknown>;
  /** Dependency edges of this run (custom resources only). */
  graph: Map<Key, Key[]>;
  /** Wall time of the run in ms. */
  makespan: number;
}

export const DYNAMIC_PREFIX = "pulumi-nodejs:dynamic/";

class Semaphore {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

function withTimeout<T>(work: Promise<T>, ms: number | undefined, key: Key): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${key}: no answer within ${ms} ms (the operation was left running)`)), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** The engine hands providers plain values: secrecy is tracked beside them, not inside. */
export function plain(value: unknown): unknown {
  const v = isRpcSecret(value) ? unwrapRpcSecret(value) : value;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * ignoreChanges as the engine applies it to an update's inputs (pulumi 1b5949891b
 * pkg/resource/deploy/step_generator.go processIgnoreChanges → sdk/go/common/resource/
 * properties_path.go PropertyPath.reset): the value at the path in the new inputs becomes the
 * old one, and is removed when the old inputs lack it; a path that runs through a value the new
 * inputs lack, or a non-object, changes nothing. Only `a.b` paths of object keys: indices and
 * `*` are not used by Phoenix and refused here.
 */
function resetIgnored(path: string, old: Record<string, unknown>, news: Record<string, unknown>): void {
  const keys = path.split(".");
  if (keys.some((k) => !/^[A-Za-z0-9_]+$/.test(k))) throw new Error(`e2e engine: ignoreChanges path '${path}' is not modelled`);
  let o: unknown = old;
  let n: unknown = news;
  for (const k of keys.slice(0, -1)) {
    if (!isMap(o) || !isMap(n) || !(k in n)) return;
    o = o[k];
    n = n[k];
  }
  const leaf = keys[keys.length - 1]!;
  if (!isMap(n)) return;
  if (isMap(o) && leaf in o) n[leaf] = o[leaf];
  else delete n[leaf];
}

interface DynamicProvider {
  check(olds: unknown, news: unknown): Promise<{ inputs?: Record<string, unknown>; failures?: Array<{ property: string; reason: string }> }>;
  diff(id: string, olds: unknown, news: unknown): Promise<{ changes?: boolean; replaces?: string[]; deleteBeforeReplace?: boolean }>;
  create(inputs: unknown): Promise<{ id: string; outs?: Record<string, unknown> }>;
  update(id: string, olds: unknown, news: unknown): Promise<{ outs?: Record<string, unknown> }>;
  delete(id: string, props: unknown): Promise<void>;
  read(id: string, props: unknown): Promise<{ id?: string; props?: Record<string, unknown> }>;
}

/** What the engine's dynamic-provider host does with the serialized text; fails for a provider that does not serialize. */
export function loadDynamicProvider(serialized: unknown, key: Key): DynamicProvider {
  if (typeof serialized !== "string" || serialized === "") throw new Error(`${key}: no serialized provider in __provider`);
  const requireFromString = require("require-from-string") as (code: string) => { handler(): DynamicProvider };
  return requireFromString(serialized).handler();
}

function keyOf(type: string, name: string): Key {
  return `${type}::${name}`;
}

interface Declared {
  key: Key;
  custom: boolean;
  parent?: Key;
  explicit: pulumi.Resource[];
  props: Record<string, unknown>;
  retainOnDelete: boolean;
  ignoreChanges: string[];
  protect: boolean;
  deleteBeforeReplace: boolean;
  /** Names this resource had before (name-only aliases: same type and parent). */
  aliases: string[];
}

/** Every Output reachable from a property value, so data-flow edges can be recovered. */
function outputsIn(value: unknown, found: pulumi.Output<unknown>[] = [], depth = 0): pulumi.Output<unknown>[] {
  if (depth > 20) return found;
  if (pulumi.Output.isInstance(value)) found.push(value as pulumi.Output<unknown>);
  else if (Array.isArray(value)) value.forEach((v) => outputsIn(v, found, depth + 1));
  else if (value !== null && typeof value === "object" && !pulumi.Resource.isInstance(value)) Object.values(value).forEach((v) => outputsIn(v, found, depth + 1));
  return found;
}



export async function apply(opts: ApplyOptions): Promise<ApplyResult> {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const semaphore = new Semaphore(opts.parallel ?? Number.POSITIVE_INFINITY);
  const state = opts.state;
  const operations: Operation[] = [];
  const failures: ApplyResult["failures"] = [];
  const inflight = new Set<Key>();
  const registered = new Set<Key>();
  const declared = new Map<Key, Declared>();
  const byResource = new Map<pulumi.Resource, Key>();

  let finished = 0;
  const interrupted = () => opts.interruptAfter !== undefined && finished >= opts.interruptAfter;
  const record = async <T>(key: Key, kind: OperationKind, fn: () => Promise<T>): Promise<T> => {
    return semaphore.run(async () => {
      if (interrupted()) throw new Error(INTERRUPTED);
      const op: Operation = { key, kind, start: now(), end: 0 };
      operations.push(op);
      try {
        const result = await withTimeout(fn(), opts.operationTimeoutMs, key);
        // Done on the host; whether the state learns it depends on the process still running.
        if (interrupted()) {
          if (kind === "create") state.pendingCreates.set(key, pendingOf(key));
          throw new Error(INTERRUPTED);
        }
        return result;
      } catch (e) {
        op.error = e instanceof Error ? e.message : String(e);
        throw e;
      } finally {
        finished++;
        op.end = now();
      }
    });
  };

  const inputsSeen = new Map<Key, Record<string, unknown>>();
  const pendingOf = (key: Key): PendingCreate => {
    const [type, name] = key.split("::") as [string, string];
    return { type, name, inputs: inputsSeen.get(key) ?? {} };
  };

  const registerCustom = async (type: string, name: string, rawInputs: Record<string, unknown>): Promise<{ id: string; state: Record<string, unknown> }> => {
    const answer = await operate(type, name, rawInputs);
    inflight.delete(keyOf(type, name));
    return answer;
  };

  const operate = async (type: string, name: string, rawInputs: Record<string, unknown>): Promise<{ id: string; state: Record<string, unknown> }> => {
    const key = keyOf(type, name);
    registered.add(key);
    const d = declared.get(key);
    inflight.add(key);
    const news = plain(rawInputs) as Record<string, unknown>;
    inputsSeen.set(key, news);
    // Aliases: an entry under a former name is this resource (https://www.pulumi.com/docs/iac/concepts/resources/options/aliases/).
    for (const alias of d?.aliases ?? []) {
      const former = state.resources.get(keyOf(type, alias));
      if (former && !state.resources.has(key)) {
        state.resources.delete(keyOf(type, alias));
        state.resources.set(key, { ...former, name });
      }
    }
    const old = state.resources.get(key);
    if (old && d) for (const p of d.ignoreChanges) resetIgnored(p, old.inputs, news);
    const entry = (id: string, inputs: Record<string, unknown>, outputs: Record<string, unknown>): StateEntry => ({
      type,
      name,
      id,
      inputs,
      outputs,
      dependencies: old?.dependencies ?? [],
      retainOnDelete: d?.retainOnDelete ?? false,
      protect: d?.protect ?? false,
    });
    try {
      if (type.startsWith(DYNAMIC_PREFIX)) {
        const provider = loadDynamicProvider(news.__provider, key);
        const checked = await provider.check(old?.inputs ?? {}, news);
        if (checked.failures && checked.failures.length > 0) throw new Error(`${key}: check failed: ${checked.failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
        const inputs = { ...(checked.inputs ?? news), __provider: news.__provider };
        if (old) {
          const diff = await provider.diff(old.id, old.outputs, inputs);
          const changes = diff.changes ?? !same(old.inputs, inputs);
          if (!changes) {
            state.resources.set(key, { ...entry(old.id, inputs, old.outputs) });
            operations.push({ key, kind: "same", start: now(), end: now() });
            return { id: old.id, state: old.outputs };
          }
          if ((diff.replaces ?? []).length === 0) {
            const outs = await record(key, "update", async () => (await provider.update(old.id, old.outputs, inputs)).outs ?? {});
            const outputs = { ...outs, __provider: inputs.__provider };
            state.resources.set(key, entry(old.id, inputs, outputs));
            return { id: old.id, state: outputs };
          }
          const created = await record(key, "replace", async () => {
            const oldProvider = loadDynamicProvider(old.outputs.__provider ?? old.inputs.__provider, key);
            if (diff.deleteBeforeReplace) await oldProvider.delete(old.id, old.outputs);
            const made = await provider.create(inputs);
            if (!diff.deleteBeforeReplace) await oldProvider.delete(old.id, old.outputs);
            return made;
          });
          const outputs = { ...created.outs, __provider: inputs.__provider };
          state.resources.set(key, entry(created.id, inputs, outputs));
          return { id: created.id, state: outputs };
        }
        const created = await record(key, "create", () => provider.create(inputs));
        const outputs = { ...created.outs, __provider: inputs.__provider };
        const e = entry(created.id, inputs, outputs);
        state.resources.set(key, e);
        return { id: created.id, state: outputs };
      }

      const translation = opts.translations[type];
      if (!translation) throw new Error(`${key}: the e2e harness has no translation for ${type}; add one to test/e2e/translations.ts`);
      if (old) {
        const planned = translation.diff?.(old, news) ?? { changes: !same(old.inputs, news), replaces: (translation.replaceOnChanges ?? []).filter((k) => !same(old.inputs[k], news[k])) };
        if (!planned.changes && !old.initErrors) {
          state.resources.set(key, entry(old.id, news, old.outputs));
          operations.push({ key, kind: "same", start: now(), end: now() });
          return { id: old.id, state: old.outputs };
        }
        const replaced = planned.replaces;
        if (replaced.length === 0) {
          const outputs = await record(key, "update", () => translation.update(old, news));
          state.resources.set(key, entry(old.id, news, outputs));
          return { id: old.id, state: outputs };
        }
        // A protected resource is never replaced; the engine checks the goal's flag, so lifting it
        // and replacing may happen in one run (pulumi/pulumi#8873, step_generator.go).
        if (d?.protect) throw new Error(`${key}: unable to replace a protected resource (${replaced.join(", ")} changed); lift protect first`);
        // Pulumi replaces create-before-delete unless deleteBeforeReplace is set
        // (https://www.pulumi.com/docs/iac/concepts/resources/options/deletebeforereplace/); with
        // retainOnDelete the old object is dropped from the state, not deleted.
        const created = await record(key, "replace", async () => {
          if (d?.deleteBeforeReplace) {
            if (!old.retainOnDelete) await translation.delete(old);
            state.resources.delete(key);
            return translation.create(news);
          }
          const made = await translation.create(news);
          if (!old.retainOnDelete) await translation.delete(old);
          return made;
        });
        state.resources.set(key, entry(created.id, news, created.outputs));
        return { id: created.id, state: created.outputs };
      }
      try {
        const created = await record(key, "create", () => translation.create(news));
        const e = entry(created.id, news, created.outputs);
        state.resources.set(key, e);
        return { id: created.id, state: created.outputs };
      } catch (err) {
        if (err instanceof PartialCreateError) state.resources.set(key, { ...entry(err.id, news, err.outputs), initErrors: [err.message] });
        throw err;
      }
    } catch (err) {
      inflight.delete(key);
      failures.push({ key, message: err instanceof Error ? err.message : String(err) });
      // Never answering keeps this resource's URN and outputs unresolved, so the SDK never
      // registers what depends on it: the engine's skip, without a rejection for every dependent.
      return new Promise<never>(() => undefined);
    }
  };

  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        if (!args.custom) return { id: undefined, state: {} };
        // The provider resource holds configuration only; its credentials reach the translations directly.
        if (args.type.startsWith("pulumi:providers:")) return { id: `${args.name}-provider`, state: plain(args.inputs) as Record<string, unknown> };
        return registerCustom(args.type, args.name, args.inputs as Record<string, unknown>);
      },
      call: (args) => args.inputs,
    },
    "phoenix",
    "e2e",
    false,
  );
  setEngineConfig(opts.raw);

  let exports: Record<string, unknown> = {};
  let programError: unknown;
  let evaluated = false;
  // Not awaited: with a registration left unanswered the stack resource never completes either.
  void pulumi.runtime
      .runInPulumiStack(async () => {
        pulumi.runtime.registerStackTransformation((args) => {
          const key = keyOf(args.type, args.name);
          byResource.set(args.resource, key);
          const parent = args.opts.parent ? byResource.get(args.opts.parent) : undefined;
          const dependsOn = args.opts.dependsOn;
          const explicit = (Array.isArray(dependsOn) ? dependsOn : dependsOn ? [dependsOn] : []).filter((r): r is pulumi.Resource => pulumi.Resource.isInstance(r));
          // isInstance relies on a brand set after transformations run; the prototype is already there.
          const custom = args.resource instanceof pulumi.CustomResource;
          const ignoreChanges = (args.opts as pulumi.CustomResourceOptions).ignoreChanges ?? [];
          const aliases = (args.opts.aliases ?? []).flatMap((a) => (typeof a === "object" && a !== null && "name" in a && typeof a.name === "string" ? [a.name] : []));
          // protect is inherited from the parent when not set (https://www.pulumi.com/docs/iac/concepts/resources/options/protect/).
          const protect = args.opts.protect ?? (parent ? (declared.get(parent)?.protect ?? false) : false);
          const deleteBeforeReplace = (args.opts as pulumi.CustomResourceOptions).deleteBeforeReplace ?? false;
          declared.set(key, { key, custom, parent, explicit, props: args.props as Record<string, unknown>, retainOnDelete: args.opts.retainOnDelete ?? false, ignoreChanges, protect, deleteBeforeReplace, aliases });
          return undefined;
        });
        try {
          exports = await opts.loadProgram();
        } catch (e) {
          programError = e;
        } finally {
          evaluated = true;
        }
        return {};
      })
      .catch((e: unknown) => {
        programError ??= e;
      });
    // The language host waits for every registration before it tells the engine the program is
    // done. The SDK's own RPC counter never settles here once a registration failed (outputs of a
    // failed resource stay pending in some components), so the run ends when nothing is in flight
    // and nothing new has registered for a while.
  for (let seen = -1; ; ) {
    await new Promise((r) => setTimeout(r, 200));
    if (evaluated && inflight.size === 0 && registered.size === seen) break;
    seen = registered.size;
  }
  if (programError !== undefined) throw programError;

  const graph = dependencyGraph(declared, byResource);
  for (const [key, deps] of graph) {
    const e = state.resources.get(key);
    if (e) e.dependencies = deps;
  }

  if (failures.length === 0) {
    try {
      await deleteUndeclared(state, registered, record, opts.translations);
    } catch (e) {
      failures.push({ key: "deletions", message: e instanceof Error ? e.message : String(e) });
    }
  }

  const skipped = [...declared.values()].filter((d) => d.custom && !registered.has(d.key) && !d.key.startsWith("pulumi:providers:")).map((d) => d.key);
  return { operations, failures, skipped, registered, exports, graph, makespan: now() };
}

/** Direct dependencies of every custom resource: explicit dependsOn (components expanded to their custom descendants) plus data flow. */
function dependencyGraph(declared: Map<Key, Declared>, byResource: Map<pulumi.Resource, Key>): Map<Key, Key[]> {
  const children = new Map<Key, Key[]>();
  for (const d of declared.values()) if (d.parent) children.set(d.parent, [...(children.get(d.parent) ?? []), d.key]);
  const expand = (key: Key, seen = new Set<Key>()): Key[] => {
    const d = declared.get(key);
    if (!d || seen.has(key)) return [];
    seen.add(key);
    if (d.custom) return [key];
    return (children.get(key) ?? []).flatMap((c) => expand(c, seen));
  };
  const graph = new Map<Key, Key[]>();
  for (const d of declared.values()) {
    if (!d.custom) continue;
    const deps = new Set<Key>();
    for (const r of d.explicit) for (const k of expand(byResource.get(r) ?? "")) deps.add(k);
    for (const o of outputsIn(d.props)) {
      // resources() is what the Output was built from; allResources() would wait for its value, which never comes below a failure.
      const resources = (o as unknown as { resources(): Set<pulumi.Resource> }).resources();
      for (const r of resources) for (const k of expand(byResource.get(r) ?? "")) deps.add(k);
    }
    deps.delete(d.key);
    graph.set(d.key, [...deps].filter((k) => !k.startsWith("pulumi:providers:")).sort());
  }
  return graph;
}

type Recorder = <T>(key: Key, kind: OperationKind, fn: () => Promise<T>) => Promise<T>;

/** Deletes what the program no longer declares, dependents first, in parallel where the graph allows. */
async function deleteUndeclared(state: EngineState, registered: Set<Key>, record: Recorder, translations: Readonly<Record<string, Translation>>): Promise<void> {
  const doomed = [...state.resources.keys()].filter((k) => !registered.has(k));
  const done = new Map<Key, Promise<void>>();
  const remove = (key: Key): Promise<void> => {
    const existing = done.get(key);
    if (existing) return existing;
    const p = (async () => {
      const dependents = doomed.filter((k) => state.resources.get(k)?.dependencies.includes(key));
      await Promise.all(dependents.map(remove));
      const e = state.resources.get(key);
      if (!e) return;
      // "it will be an error to do a Pulumi deployment which tries to delete a protected resource" (protect docs).
      if (e.protect) throw new Error(`${key}: refusing to delete a protected resource; lift protect first`);
      if (!e.retainOnDelete) await record(key, "delete", () => deleteEntry(e, translations));
      state.resources.delete(key);
    })();
    done.set(key, p);
    return p;
  };
  await Promise.all(doomed.map(remove));
}

async function deleteEntry(e: StateEntry, translations: Readonly<Record<string, Translation>>): Promise<void> {
  if (e.type.startsWith(DYNAMIC_PREFIX)) {
    await loadDynamicProvider(e.outputs.__provider ?? e.inputs.__provider, keyOf(e.type, e.name)).delete(e.id, e.outputs);
    return;
  }
  const t = translations[e.type];
  if (!t) throw new Error(`${keyOf(e.type, e.name)}: no translation to delete it with`);
  await t.delete(e);
}

/**
 * `pulumi refresh --import-pending-creates <urn> <id>…`: each pending create given an id is read
 * from what exists and enters the state with the inputs it was created with; the others are
 * dropped (`--clear-pending-creates`), so their next create runs again.
 */
export async function importPendingCreates(state: EngineState, translations: Readonly<Record<string, Translation>>, ids: ReadonlyMap<Key, string>): Promise<Key[]> {
  const imported: Key[] = [];
  for (const [key, p] of state.pendingCreates) {
    const id = ids.get(key);
    if (id === undefined) continue;
    const entry: StateEntry = { type: p.type, name: p.name, id, inputs: p.inputs, outputs: {}, dependencies: [], retainOnDelete: false };
    let outputs: Record<string, unknown> | undefined;
    if (p.type.startsWith(DYNAMIC_PREFIX)) {
      const read = await loadDynamicProvider(p.inputs.__provider, key).read(id, p.inputs);
      outputs = read.id ? { ...read.props, __provider: p.inputs.__provider } : undefined;
    } else outputs = await translations[p.type]?.read(entry);
    if (outputs === undefined) throw new Error(`${key}: nothing with id ${id} exists to import`);
    state.resources.set(key, { ...entry, outputs });
    imported.push(key);
  }
  state.pendingCreates.clear();
  return imported;
}
