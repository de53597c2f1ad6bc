/**
 * The smallest engine that deploys Phoenix over the real wire: the program runs in
 * `@pulumi/pulumi/cmd/run` and registers through gRPC (./monitor.ts); every dynamic resource goes
 * through `@pulumi/pulumi/cmd/dynamic-provider` over gRPC (Configure, Check, Diff, Create,
 * Update, Delete, with `__provider` deserialised by the SDK's own host); bridged resources keep
 * their translation to API calls (../translations.ts, the same as the in-process engine's).
 *
 * What it does of the engine's work, and nothing more:
 * - a registration is answered once its operation is done, so the graph is walked in the order
 *   the SDK registers (inputs and dependsOn resolved), with unbounded parallelism;
 * - preview (`--dry-run`) runs Check and Diff only and answers with the checked inputs as the
 *   outputs and no id, so what providers compute stays unknown to the program, and unknown inputs
 *   reach Check and Diff as the SDK's unknown sentinel;
 * - secrets: the dynamic-provider host answers Configure with acceptSecrets=false, so they reach
 *   it as plain values, and an output whose input was secret goes back to the program secret;
 * - a failed operation fails its registration; the program then exits non-zero and the state
 *   keeps every operation that finished (a failed update keeps the old entry);
 * - after an `up` without failures, what the program no longer declares is deleted, dependents
 *   first, unless protected or retained.
 * - `replaceWith`: a dynamic resource is replaced when one it names was replaced in this run.
 * Not done: aliases, import, refresh, replacement of a bridged resource other than by its
 * translation's own replace list, and `--continue-on-error` (the SDK stops at the first failure).
 */
import * as grpc from "@grpc/grpc-js";
import * as structproto from "google-protobuf/google/protobuf/struct_pb";
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import { isRpcSecret, specialSecretSig, specialSigKey, unwrapRpcSecret } from "@pulumi/pulumi/runtime/rpc";
import { same } from "../../../providers/common";
import type { RawStack } from "../../../stacks/load";
import { DYNAMIC_PREFIX, type OperationKind, type StateEntry, type Translation } from "../engine";
import { runProgram, startDynamicProviderHost, type ProgramRun, type RuntimeOptions } from "./language-host";
import { startMonitor, type Registration } from "./monitor";

export interface WireEntry extends StateEntry {
  urn: string;
}

export class WireState {
  readonly resources = new Map<string, WireEntry>();
}

export interface WireOperation {
  urn: string;
  type: string;
  kind: OperationKind | "preview-create" | "preview-update";
}

export interface WireResult {
  program: ProgramRun;
  registrations: Registration[];
  operations: WireOperation[];
  failures: Array<{ urn: string; message: string }>;
  /** The stack's exports as the program sent them, in wire form. */
  exports: Record<string, unknown> | undefined;
  /** What the program logged through the Engine service (errors and warnings). */
  logs: string[];
}

type Json = Record<string, unknown>;

const toStruct = (v: Json) => structproto.Struct.fromJavaScript(JSON.parse(JSON.stringify(v)) as Record<string, structproto.JavaScriptValue>);

/** Plain values for a provider that does not accept secrets, and the top-level keys that were secret. */
function reveal(object: Json): { plain: Json; secretKeys: Set<string> } {
  const secretKeys = new Set<string>();
  const strip = (v: unknown): unknown => {
    if (isRpcSecret(v)) return strip(unwrapRpcSecret(v));
    if (Array.isArray(v)) return v.map(strip);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, strip(x)]));
    return v;
  };
  const plain: Json = {};
  for (const [k, v] of Object.entries(object)) {
    if (isRpcSecret(v)) secretKeys.add(k);
    plain[k] = strip(v);
  }
  return { plain, secretKeys };
}

function conceal(outputs: Json, secretKeys: ReadonlySet<string>): Json {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, secretKeys.has(k) && v !== undefined ? { [specialSigKey]: specialSecretSig, value: v } : v]));
}

class ProviderClient {
  private readonly client: provrpc.ResourceProviderClient;
  constructor(address: string) {
    this.client = new provrpc.ResourceProviderClient(address, grpc.credentials.createInsecure());
  }
  private call<Req, Res>(method: (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => method.call(this.client, req, (err, res) => (err ? reject(new Error(err.details || err.message)) : resolve(res))));
  }
  async configure(): Promise<void> {
    await this.call(this.client.configure, new provproto.ConfigureRequest().setArgs(toStruct({})).setAcceptsecrets(true).setAcceptresources(true));
  }
  async check(urn: string, olds: Json, news: Json): Promise<Json> {
    const res = await this.call<provproto.CheckRequest, provproto.CheckResponse>(this.client.check, new provproto.CheckRequest().setUrn(urn).setOlds(toStruct(olds)).setNews(toStruct(news)));
    const failures = res.getFailuresList().map((f) => `${f.getProperty()}: ${f.getReason()}`);
    if (failures.length > 0) throw new Error(`check failed: ${failures.join("; ")}`);
    return res.getInputs()!.toJavaScript() as Json;
  }
  async diff(urn: string, id: string, olds: Json, news: Json): Promise<{ changes: boolean; replaces: string[]; deleteBeforeReplace: boolean }> {
    const res = await this.call<provproto.DiffRequest, provproto.DiffResponse>(this.client.diff, new provproto.DiffRequest().setUrn(urn).setId(id).setOlds(toStruct(olds)).setNews(toStruct(news)));
    return { changes: res.getChanges() !== provproto.DiffResponse.DiffChanges.DIFF_NONE, replaces: res.getReplacesList(), deleteBeforeReplace: res.getDeletebeforereplace() };
  }
  async create(urn: string, props: Json): Promise<{ id: string; outputs: Json }> {
    const res = await this.call<provproto.CreateRequest, provproto.CreateResponse>(this.client.create, new provproto.CreateRequest().setUrn(urn).setProperties(toStruct(props)));
    return { id: res.getId(), outputs: res.getProperties()!.toJavaScript() as Json };
  }
  async update(urn: string, id: string, olds: Json, news: Json): Promise<Json> {
    const res = await this.call<provproto.UpdateRequest, provproto.UpdateResponse>(this.client.update, new provproto.UpdateRequest().setUrn(urn).setId(id).setOlds(toStruct(olds)).setNews(toStruct(news)));
    return res.getProperties()!.toJavaScript() as Json;
  }
  async delete(urn: string, id: string, props: Json): Promise<void> {
    await this.call(this.client.delete, new provproto.DeleteRequest().setUrn(urn).setId(id).setProperties(toStruct(props)));
  }
  close(): void {
    this.client.close();
  }
}

export interface WireApplyOptions {
  raw: RawStack;
  state: WireState;
  translations: Readonly<Record<string, Translation>>;
  dryRun: boolean;
  project?: string;
  stack?: string;
  /** Another program than the project's (a fixture). */
  runtime?: RuntimeOptions;
  /** Added to the dynamic-provider host's environment (the lab network's preload). */
  providerEnv?: Record<string, string>;
  /** Added to the program's environment (PHOENIX_PROGRAM_CACHE: a bundle folder of the test's own). */
  programEnv?: Record<string, string>;
}

export async function wireApply(o: WireApplyOptions): Promise<WireResult> {
  const project = o.project ?? "phoenix";
  const stack = o.stack ?? "dev";
  const operations: WireOperation[] = [];
  const failures: WireResult["failures"] = [];
  const registered = new Set<string>();
  const replaced = new Set<string>();
  let provider: ProviderClient | undefined;
  let stopHost = () => {};

  // The engine starts the dynamic-provider plugin once per deployment and configures it once
  // before its first Check. Started here, with the program, rather than at the first dynamic
  // registration: the same process and calls, its ~2 s start-up overlapping the program's load.
  let hostReady: Promise<ProviderClient> | undefined;
  const dynamicProvider = (engineAddress: string): Promise<ProviderClient> =>
    (hostReady ??= (async () => {
      const host = await startDynamicProviderHost(engineAddress, o.providerEnv);
      stopHost = host.stop;
      provider = new ProviderClient(host.address);
      await provider.configure();
      return provider;
    })());

  let engineAddress = "";
  const registerOne = async (r: Registration, dryRun: boolean): Promise<{ id?: string; outputs: Json }> => {
    registered.add(r.urn);
    const old = o.state.resources.get(r.urn);
    const { plain, secretKeys } = reveal(r.object);
    for (const k of r.additionalSecretOutputs) secretKeys.add(k);
    const record = (kind: WireOperation["kind"]) => operations.push({ urn: r.urn, type: r.type, kind });
    const keep = (entry: Omit<WireEntry, "urn" | "type" | "name" | "dependencies" | "retainOnDelete" | "protect">): { id: string; outputs: Json } => {
      o.state.resources.set(r.urn, { urn: r.urn, type: r.type, name: r.name, dependencies: r.dependencies, retainOnDelete: r.retainOnDelete, protect: r.protect, ...entry });
      return { id: entry.id, outputs: conceal(entry.outputs, secretKeys) };
    };

    if (r.type.startsWith(DYNAMIC_PREFIX)) {
      const p = await dynamicProvider(engineAddress);
      const checked = await p.check(r.urn, old?.inputs ?? {}, plain);
      if (old === undefined) {
        if (dryRun) return record("preview-create"), { outputs: conceal(checked, secretKeys) };
        const made = await p.create(r.urn, checked);
        record("create");
        return keep({ id: made.id, inputs: checked, outputs: made.outputs });
      }
      const diff = await p.diff(r.urn, old.id, old.outputs, checked);
      // pkg/resource/deploy/step_generator.go `diff` (v3.248.0): one in replaceWith being replaced replaces this one too.
      if (r.replaceWith.some((u) => replaced.has(u))) Object.assign(diff, { changes: true, replaces: [...diff.replaces, "replaceWith"] });
      if (diff.replaces.length > 0) replaced.add(r.urn);
      if (!diff.changes) return record("same"), keep({ id: old.id, inputs: old.inputs, outputs: old.outputs });
      if (dryRun) return record("preview-update"), { id: old.id, outputs: conceal(checked, secretKeys) };
      if (diff.replaces.length > 0) {
        if (r.protect) throw new Error(`${r.urn} is protected and would be replaced (${diff.replaces.join(", ")})`);
        if (diff.deleteBeforeReplace || r.deleteBeforeReplace) await p.delete(r.urn, old.id, old.outputs);
        const made = await p.create(r.urn, checked);
        if (!(diff.deleteBeforeReplace || r.deleteBeforeReplace)) await p.delete(r.urn, old.id, old.outputs);
        record("replace");
        return keep({ id: made.id, inputs: checked, outputs: made.outputs });
      }
      const outputs = await p.update(r.urn, old.id, old.outputs, checked);
      record("update");
      return keep({ id: old.id, inputs: checked, outputs });
    }

    if (r.type.startsWith("pulumi:providers:")) {
      // A provider's own resource: the engine configures the plugin from its inputs (which the
      // translations do not need: they hold their own API client), and its outputs are its inputs.
      if (old !== undefined && same(old.inputs, plain)) return record("same"), keep({ id: old.id, inputs: old.inputs, outputs: old.outputs });
      if (dryRun) return record(old ? "preview-update" : "preview-create"), { id: old?.id, outputs: conceal(plain, secretKeys) };
      record(old ? "update" : "create");
      return keep({ id: old?.id ?? `${r.name}-provider`, inputs: plain, outputs: plain });
    }
    const t = o.translations[r.type];
    if (!t) throw new Error(`no translation for ${r.type}`);
    if (old === undefined) {
      if (dryRun) return record("preview-create"), { outputs: conceal(plain, secretKeys) };
      const made = await t.create(plain);
      record("create");
      return keep({ id: made.id, inputs: plain, outputs: { ...plain, ...made.outputs } });
    }
    const entry: WireEntry = old;
    const diff = t.diff ? t.diff(entry, plain) : { changes: !same(old.inputs, plain), replaces: (t.replaceOnChanges ?? []).filter((k) => !same(old.inputs[k], plain[k])) };
    if (!diff.changes && !old.initErrors) return record("same"), keep({ id: old.id, inputs: old.inputs, outputs: old.outputs });
    if (dryRun) return record("preview-update"), { id: old.id, outputs: conceal(plain, secretKeys) };
    if (diff.replaces.length > 0) throw new Error(`${r.urn}: replacing a bridged resource (${diff.replaces.join(", ")}) is not done by the wire engine`);
    const outputs = await t.update(entry, plain);
    record("update");
    return keep({ id: old.id, inputs: plain, outputs: { ...plain, ...outputs } });
  };

  const monitor = await startMonitor({
    project,
    stack,
    dryRun: o.dryRun,
    registrar: {
      register: (r, dryRun) =>
        registerOne(r, dryRun).catch((e: unknown) => {
          failures.push({ urn: r.urn, message: e instanceof Error ? e.message : String(e) });
          throw e;
        }),
    },
  });
  engineAddress = monitor.address;
  // A failure to start surfaces at the first dynamic registration, which awaits the same promise.
  dynamicProvider(engineAddress).catch(() => undefined);
  try {
    const program = await runProgram({ monitor: monitor.address, engine: monitor.address, project, stack, dryRun: o.dryRun, raw: o.raw, runtime: o.runtime, env: o.programEnv });
    // What the CLI shows: warnings and errors; the SDK's debug messages stay in its verbose log.
    const shown = monitor.logs.filter((l) => l.severity >= engproto.LogSeverity.WARNING).map((l) => l.message);
    if (program.code !== 0 && failures.length === 0) failures.push({ urn: "", message: `the program exited with ${program.code}: ${shown.join("\n")}` });
    if (!o.dryRun && failures.length === 0) await deleteUndeclared(o, registered, operations, (a) => dynamicProvider(a), engineAddress);
    return {
      program,
      registrations: monitor.registrations,
      operations,
      failures,
      exports: monitor.stackOutputs(),
      logs: shown,
    };
  } finally {
    await hostReady?.catch(() => undefined);
    provider?.close();
    stopHost();
    await monitor.stop();
  }
}

/** Deletes what this run did not register: a resource only once nothing left depends on it. */
async function deleteUndeclared(o: WireApplyOptions, registered: ReadonlySet<string>, operations: WireOperation[], dynamicProvider: (a: string) => Promise<ProviderClient>, engineAddress: string): Promise<void> {
  const gone = [...o.state.resources.values()].filter((e) => !registered.has(e.urn));
  const pending = new Set(gone.map((e) => e.urn));
  while (pending.size > 0) {
    const ready = gone.filter((e) => pending.has(e.urn) && ![...pending].some((u) => o.state.resources.get(u)?.dependencies.includes(e.urn)));
    if (ready.length === 0) throw new Error(`a dependency cycle among the resources to delete: ${[...pending].join(", ")}`);
    for (const e of ready) {
      pending.delete(e.urn);
      if (e.protect) throw new Error(`${e.urn} is protected and cannot be deleted`);
      if (!e.retainOnDelete) {
        if (e.type.startsWith(DYNAMIC_PREFIX)) await (await dynamicProvider(engineAddress)).delete(e.urn, e.id, e.outputs);
        else await o.translations[e.type]!.delete(e);
      }
      o.state.resources.delete(e.urn);
      operations.push({ urn: e.urn, type: e.type, kind: "delete" });
    }
  }
}
