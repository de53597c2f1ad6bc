/**
 * Runs index.ts in-process under Pulumi's mocks, with no CLI, no Proxmox and
 * no secrets, and records the graph the engine would see: every resource's
 * type, name, inputs, parent and dependencies (explicit dependsOn and the
 * resources its input Outputs come from). Offline synth uses it in preview
 * mode, where outputs nobody knows yet stay unknown; tests use it with
 * canned provider outputs.
 */
import * as pulumi from "@pulumi/pulumi";
import type { RawStack } from "../stacks/load";

export interface Registered {
  type: string;
  name: string;
  custom: boolean;
  inputs: Record<string, unknown>;
  parent?: string;
  /** Explicit dependsOn plus the resources the inputs' Outputs come from. */
  dependsOn: string[];
  /** The URN the engine gave it. */
  urn: string;
  /** The aliases as the SDK sent them in RegisterResourceRequest (structured: the engine computes the URNs). */
  aliases: AliasSpec[];
}

/** One entry of RegisterResourceRequest.aliases (proto/alias.proto): a URN, or a spec the engine completes. */
export type AliasSpec = { urn: string } | { name: string; type: string; project: string; stack: string; parentUrn: string; noParent: boolean };

type AliasMessage = { hasUrn(): boolean; getUrn(): string; getSpec(): { getName(): string; getType(): string; getProject(): string; getStack(): string; getParenturn(): string; getNoparent(): boolean } | undefined };
type RegisterRequest = { getType(): string; getName(): string; getAliasesList(): AliasMessage[] };
type MonitorLike = { registerResource(req: RegisterRequest, callback: (err: unknown, res?: { getUrn(): string }) => void): Promise<void> };

/** What the SDK sent and what the mock monitor answered, per type::name: aliases reach the mocks' newResource only through the request. */
function recordRegistrations(into: Map<string, { urn: string; aliases: AliasSpec[] }>): void {
  const monitor = pulumi.runtime.getMonitor() as unknown as MonitorLike;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) =>
    register(req, (err, res) => {
      if (res) {
        const aliases = req.getAliasesList().map((a): AliasSpec => {
          const spec = a.getSpec();
          if (a.hasUrn() || !spec) return { urn: a.getUrn() };
          return { name: spec.getName(), type: spec.getType(), project: spec.getProject(), stack: spec.getStack(), parentUrn: spec.getParenturn(), noParent: spec.getNoparent() };
        });
        into.set(`${req.getType()}::${req.getName()}`, { urn: res.getUrn(), aliases });
      }
      callback(err, res);
    });
}

export interface OfflineRun {
  resources: Registered[];
  exports: Record<string, unknown>;
}

export interface OfflineOptions {
  /** Preview leaves provider-computed outputs unknown, as `pulumi preview` does. */
  preview: boolean;
  /** Outputs a provider would report, by resource name; the rest echo the inputs. */
  outputsOf?: (name: string, inputs: Record<string, unknown>) => Record<string, unknown>;
  /** Called for each resource as it registers. */
  onRegister?: (name: string) => void;
  /** The program's module, loaded fresh for each run. */
  load: () => Promise<Record<string, unknown>>;
}

/** Hands a raw stack to the SDK the way the engine does: JSON strings, secret keys listed. */
export function setEngineConfig(raw: RawStack): void {
  const all: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw.values)) all[`phoenix:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  pulumi.runtime.setAllConfig(all, [...raw.secretKeys].map((k) => `phoenix:${k}`));
}

// The SDK keeps the resources an Output depends on in an internal field; it is how the engine learns data dependencies.
type WithResources = { allResources?: () => Promise<Set<pulumi.Resource>> };

async function outputResources(value: unknown, into: Set<pulumi.Resource>, depth = 0): Promise<void> {
  if (depth > 8 || value === null || value === undefined) return;
  if (pulumi.Output.isInstance(value)) {
    for (const r of (await (value as unknown as WithResources).allResources?.()) ?? []) into.add(r);
    return;
  }
  if (pulumi.Resource.isInstance(value)) return;
  if (Array.isArray(value)) {
    for (const v of value) await outputResources(v, into, depth + 1);
  } else if (typeof value === "object" && !(value instanceof Promise)) {
    for (const v of Object.values(value)) await outputResources(v, into, depth + 1);
  }
}

export async function runOffline(raw: RawStack, opts: OfflineOptions): Promise<OfflineRun> {
  const pending: { resource: pulumi.Resource; type: string; name: string; parent?: pulumi.Resource; deps: pulumi.Resource[]; props: unknown }[] = [];
  const inputs = new Map<string, Record<string, unknown>>();
  // The transformation runs before CustomResource's constructor marks the object, so what is custom comes from the monitor.
  const customs = new Set<string>();
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        inputs.set(`${args.type}::${args.name}`, args.inputs as Record<string, unknown>);
        if (args.custom) customs.add(`${args.type}::${args.name}`);
        return { id: opts.preview ? undefined : `${args.name}-id`, state: { ...args.inputs, ...(opts.outputsOf?.(args.name, args.inputs) ?? {}) } };
      },
      call: (args) => args.inputs,
    },
    "phoenix",
    "offline",
    opts.preview,
  );
  const registrations = new Map<string, { urn: string; aliases: AliasSpec[] }>();
  recordRegistrations(registrations);
  setEngineConfig(raw);
  let exports: Record<string, unknown> = {};
  let failure: unknown;
  // A renderer that throws inside an Output's apply rejects promises of the SDK's that nobody
  // awaits; Node would end the process on the first one. They are this run's failure instead.
  const rejected: unknown[] = [];
  const onRejection = (reason: unknown) => void rejected.push(reason);
  process.on("unhandledRejection", onRejection);
  try {
    // Transformations attach to the root stack, which only exists inside runInPulumiStack.
    await pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((args) => {
        opts.onRegister?.(args.name);
        const dependsOn = args.opts.dependsOn;
        const deps = Array.isArray(dependsOn) ? (dependsOn as pulumi.Resource[]) : dependsOn ? [dependsOn as pulumi.Resource] : [];
        pending.push({ resource: args.resource, type: args.type, name: args.name, parent: args.opts.parent, deps, props: args.props });
        return undefined;
      });
      // A program failure is rethrown below: rejecting here would surface as an unhandled stack output error.
      try {
        exports = await opts.load();
      } catch (e) {
        failure = e;
      }
      return {};
    });
    await new Promise((r) => setTimeout(r, 50));
    if (failure !== undefined) throw failure;
    const names = new Map(pending.map((p) => [p.resource, p.name]));
    const resources: Registered[] = [];
    for (const p of pending) {
      const fromData = new Set<pulumi.Resource>();
      await outputResources(p.props, fromData);
      const deps = [...new Set([...p.deps, ...fromData])].map((d) => names.get(d)).filter((n): n is string => n !== undefined && n !== p.name);
      const key = `${p.type}::${p.name}`;
      const registration = registrations.get(key);
      resources.push({
        type: p.type,
        name: p.name,
        custom: customs.has(key),
        inputs: inputs.get(key) ?? {},
        parent: p.parent ? names.get(p.parent) : undefined,
        dependsOn: [...new Set(deps)],
        urn: registration?.urn ?? "",
        aliases: registration?.aliases ?? [],
      });
    }
    if (rejected.length > 0) throw rejected[0];
    return { resources, exports };
  } catch (e) {
    // The program's own error, else the first rejection: it explains the rest (every resource built on a failed input fails too).
    throw e === failure ? e : (rejected[0] ?? e);
  } finally {
    process.off("unhandledRejection", onRejection);
  }
}
