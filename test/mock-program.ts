/**
 * Runs index.ts under Pulumi's mocks and records what it registers: every
 * resource's type, name, inputs, parent and dependsOn, so tests can assert the
 * graph the engine would see.
 */
import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import type { RawStack } from "../stacks/load";

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  parent?: string;
  dependsOn: string[];
}

/** What the host driver reports in these tests: the cards in the opposite order to their config ids. */
export const MOCK_NVIDIA = {
  gpus: [
    { index: 0, busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 },
    { index: 1, busId: "00000000:01:00.0", name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 },
  ],
  deviceNodes: ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"].map((path) => ({ path, major: path.includes("uvm") ? 509 : 195 })),
};

/** Outputs the real providers would report, for the resources whose outputs the program consumes. */
function mockOutputs(name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  if (name.endsWith("-nvidia")) return MOCK_NVIDIA;
  if (name.endsWith("-gpu-functions")) {
    const cards = (inputs.addresses as string[]).map((address, i) => ({
      address,
      iommuGroup: 14 + i,
      functions: [
        { path: address, id: "10de:2d04" },
        { path: address.replace(/\.0$/, ".1"), id: "10de:22eb" },
      ],
    }));
    return { cards };
  }
  return {};
}

export interface Program {
  resources: Registered[];
  exports: Record<string, unknown>;
  byName(name: string): Registered;
  ofType(type: string): Registered[];
  /** Every resource `name` depends on, directly or through the resources it depends on. */
  dependenciesOf(name: string): Set<string>;
}

/** Hands a raw stack to the SDK the way the engine does: JSON strings, secret keys listed. */
export function setEngineConfig(raw: RawStack): void {
  const all: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw.values)) all[`phoenix:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  pulumi.runtime.setAllConfig(all, [...raw.secretKeys].map((k) => `phoenix:${k}`));
}

export async function runProgram(raw: RawStack, onRegister?: (name: string) => void): Promise<Program> {
  const resources: Registered[] = [];
  const inputs = new Map<string, Record<string, unknown>>();
  const names = new WeakMap<pulumi.Resource, string>();
  const pending: { name: string; type: string; parent?: pulumi.Resource; deps: pulumi.Resource[] }[] = [];
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        inputs.set(`${args.type}::${args.name}`, args.inputs as Record<string, unknown>);
        return { id: `${args.name}-id`, state: { ...args.inputs, ...mockOutputs(args.name, args.inputs) } };
      },
      call: (args) => args.inputs,
    },
    "phoenix",
    "test",
    false,
  );
  setEngineConfig(raw);
  vi.resetModules();
  let exports: Record<string, unknown> = {};
  let failure: unknown;
  // Transformations attach to the root stack, which only exists inside runInPulumiStack.
  await pulumi.runtime.runInPulumiStack(async () => {
    pulumi.runtime.registerStackTransformation((args) => {
      names.set(args.resource, args.name);
      onRegister?.(args.name);
      const deps = Array.isArray(args.opts.dependsOn) ? (args.opts.dependsOn as pulumi.Resource[]) : args.opts.dependsOn ? [args.opts.dependsOn as pulumi.Resource] : [];
      pending.push({ name: args.name, type: args.type, parent: args.opts.parent, deps });
      resources.push({ type: args.type, name: args.name, inputs: {}, dependsOn: [] });
      return undefined;
    });
    // A program failure is rethrown below: rejecting here would surface as an unhandled stack output error.
    try {
      exports = (await import("../index")) as Record<string, unknown>;
    } catch (e) {
      failure = e;
    }
    return {};
  });
  if (failure !== undefined) throw failure;
  // Let every registration and apply settle.
  await new Promise((r) => setTimeout(r, 50));
  for (const p of pending) {
    const r = resources.find((x) => x.name === p.name && x.type === p.type)!;
    r.parent = p.parent ? names.get(p.parent) : undefined;
    r.dependsOn = p.deps.map((d) => names.get(d) ?? "?");
    r.inputs = inputs.get(`${p.type}::${p.name}`) ?? {};
  }
  const byName = (name: string) => {
    const found = resources.find((r) => r.name === name);
    if (!found) throw new Error(`no resource named ${name}; have ${resources.map((r) => r.name).join(", ")}`);
    return found;
  };
  const children = (name: string) => resources.filter((r) => r.parent === name).map((r) => r.name);
  const dependenciesOf = (name: string): Set<string> => {
    const seen = new Set<string>();
    const walk = (n: string) => {
      for (const d of [...byName(n).dependsOn, ...children(n)]) {
        if (seen.has(d)) continue;
        seen.add(d);
        walk(d);
      }
    };
    walk(name);
    return seen;
  };
  return { resources, exports, byName, ofType: (type) => resources.filter((r) => r.type === type), dependenciesOf };
}
