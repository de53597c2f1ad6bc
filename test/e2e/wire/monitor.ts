/**
 * The engine's side of the wire a Pulumi program talks to: the `ResourceMonitor` and `Engine`
 * gRPC services, served with @grpc/grpc-js from the SDK's own generated modules
 * (`@pulumi/pulumi/proto/resource_grpc_pb`, `engine_grpc_pb`), so every registration arrives in
 * the real wire format (protobuf Structs with the SDK's secret and unknown markers).
 *
 * What a registration turns into is the caller's (`Registrar`): the bench answers at once with
 * canned outputs, the wire engine (./engine.ts) runs providers. This file only speaks the
 * protocol: URNs, the root stack resource, stack outputs, logs and feature negotiation.
 */
import * as grpc from "@grpc/grpc-js";
import * as emptyproto from "google-protobuf/google/protobuf/empty_pb";
import * as structproto from "google-protobuf/google/protobuf/struct_pb";
import * as engrpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as resrpc from "@pulumi/pulumi/proto/resource_grpc_pb";
import * as resproto from "@pulumi/pulumi/proto/resource_pb";

export const STACK_TYPE = "pulumi:pulumi:Stack";

/** A registration as the engine receives it, decoded. */
export interface Registration {
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  parent: string;
  /** The inputs as the SDK serialized them: secrets wrapped with the SDK's signature, unknowns as the sentinel. */
  object: Record<string, unknown>;
  /** dependsOn and data dependencies, as URNs. */
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
  protect: boolean;
  retainOnDelete: boolean;
  deleteBeforeReplace: boolean;
  ignoreChanges: string[];
  replaceOnChanges: string[];
  aliases: ReturnType<resproto.RegisterResourceRequest["getAliasesList"]>;
  additionalSecretOutputs: string[];
  /** Replaced whenever one of these is (the `replaceWith` option). */
  replaceWith: string[];
}

export interface Registrar {
  /** A custom resource: its id (absent in preview when unknown) and output properties in wire form. */
  register(r: Registration, dryRun: boolean): Promise<{ id?: string; outputs: Record<string, unknown> }>;
  /** `RegisterResourceOutputs` of a component or of the stack itself. */
  outputs?(urn: string, outputs: Record<string, unknown>): void;
}

export interface Monitor {
  address: string;
  /** Every registration, in arrival order. */
  readonly registrations: Registration[];
  /** The stack's exports as the program sent them (`RegisterResourceOutputs` of the root). */
  stackOutputs(): Record<string, unknown> | undefined;
  readonly logs: Array<{ severity: number; message: string; urn: string }>;
  stop(): Promise<void>;
}

/**
 * The features the engine of the CLI answers true for (pulumi/pulumi v3.248.0
 * pkg/resource/deploy/source_eval.go `supportsFeatureID`), minus those this engine does not implement.
 * `aliasSpecs` is among them although this engine applies no aliases either way: the answer decides
 * the program's work, and the CLI's is true. With it the SDK sends each alias as given
 * (@pulumi/pulumi@3.248.0 runtime/resource.js prepareResource `monitorSupportsStructuredAliases`,
 * `mapAliasesForRequest`) and the engine derives the children's; without it the SDK computes every
 * child's inherited alias URNs itself (resource.js `allAliases`, each URN an Output chain), about
 * half of the Outputs a generated guest makes, which `pulumi up` never pays.
 */
const SUPPORTED_FEATURES = new Set(["secrets", "replaceWith", "aliasSpecs"]);

/**
 * `urn:pulumi:<stack>::<project>::<parent types$>type::name`, with the stack type left out of the
 * prefix: the rule of the SDK's own `createUrn` (@pulumi/pulumi@3.248.0 resource.js).
 */
export function urnOf(stack: string, project: string, type: string, name: string, parentUrn: string): string {
  let prefix = `urn:pulumi:${stack}::${project}::`;
  if (parentUrn !== "") {
    const p = parentUrn.substring(0, parentUrn.lastIndexOf("::")) + "$";
    if (!p.endsWith(`::${STACK_TYPE}$`)) prefix = p;
  }
  return `${prefix}${type}::${name}`;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

function unary<Req, Res>(f: (req: Req) => Promise<Res> | Res): Unary<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => f(call.request))
      .then(
        (res) => callback(null, res),
        (err: unknown) => callback({ code: grpc.status.UNKNOWN, details: err instanceof Error ? err.message : String(err) }, null),
      );
  };
}

export async function startMonitor(opts: { project: string; stack: string; dryRun: boolean; registrar: Registrar }): Promise<Monitor> {
  const registrations: Registration[] = [];
  const logs: Monitor["logs"] = [];
  let rootUrn = "";
  let stackOutputs: Record<string, unknown> | undefined;

  const server = new grpc.Server();
  server.addService(resrpc.ResourceMonitorService, {
    supportsFeature: unary((req: resproto.SupportsFeatureRequest) => new resproto.SupportsFeatureResponse().setHassupport(SUPPORTED_FEATURES.has(req.getId()))),
    registerResource: unary(async (req: resproto.RegisterResourceRequest) => {
      const urn = urnOf(opts.stack, opts.project, req.getType(), req.getName(), req.getParent());
      const propertyDependencies: Record<string, string[]> = {};
      for (const [k, v] of req.getPropertydependenciesMap().entries()) propertyDependencies[k] = v.getUrnsList();
      const r: Registration = {
        urn,
        type: req.getType(),
        name: req.getName(),
        custom: req.getCustom(),
        parent: req.getParent(),
        object: (req.getObject()?.toJavaScript() ?? {}) as Record<string, unknown>,
        dependencies: req.getDependenciesList(),
        propertyDependencies,
        protect: req.getProtect() ?? false,
        retainOnDelete: req.getRetainondelete() ?? false,
        deleteBeforeReplace: req.getDeletebeforereplace(),
        ignoreChanges: req.getIgnorechangesList(),
        replaceOnChanges: req.getReplaceonchangesList(),
        aliases: req.getAliasesList(),
        additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
        replaceWith: req.getReplaceWithList(),
      };
      registrations.push(r);
      const res = new resproto.RegisterResourceResponse().setUrn(urn);
      if (!r.custom) return res.setObject(structproto.Struct.fromJavaScript({}));
      const { id, outputs } = await opts.registrar.register(r, opts.dryRun);
      if (id !== undefined) res.setId(id);
      return res.setObject(structproto.Struct.fromJavaScript(outputs as Record<string, structproto.JavaScriptValue>));
    }),
    registerResourceOutputs: unary((req: resproto.RegisterResourceOutputsRequest) => {
      const outputs = (req.getOutputs()?.toJavaScript() ?? {}) as Record<string, unknown>;
      if (req.getUrn() === rootUrn) stackOutputs = outputs;
      opts.registrar.outputs?.(req.getUrn(), outputs);
      return new emptyproto.Empty();
    }),
    signalAndWaitForShutdown: unary(() => new emptyproto.Empty()),
  });
  server.addService(engrpc.EngineService, {
    log: unary((req: engproto.LogRequest) => {
      logs.push({ severity: req.getSeverity(), message: req.getMessage(), urn: req.getUrn() });
      return new emptyproto.Empty();
    }),
    getRootResource: unary(() => new engproto.GetRootResourceResponse().setUrn(rootUrn)),
    setRootResource: unary((req: engproto.SetRootResourceRequest) => {
      rootUrn = req.getUrn();
      return new engproto.SetRootResourceResponse();
    }),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    registrations,
    logs,
    stackOutputs: () => stackOutputs,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
