/**
 * Composition of the tiers from a validated configuration, and the stack's
 * outputs. Components register here as they are built; until then the outputs
 * are what the configuration alone determines.
 */
import type { LoadedStack } from "./engine";
import { gpuAllocation, type GpuAllocation } from "./plan";
import type { Guest, StackConfig } from "./schema";

export interface GuestOutput {
  name: string;
  kind: "lxc" | "vm";
  ip: string;
  role: string;
}

export interface ModelOutput {
  id: string;
  kind: "chat" | "embedding";
  engine: "vllm" | "ollama" | "llamacpp";
  guest: number;
}

export interface StackOutputs {
  guests: Record<string, GuestOutput>;
  models: ModelOutput[];
  gpuAllocation: GpuAllocation[];
}

export function buildStack(stack: LoadedStack): StackOutputs {
  return describeStack(stack.config);
}

export function describeStack(config: StackConfig): StackOutputs {
  const guests: Record<string, GuestOutput> = {};
  for (const g of config.guests) {
    guests[String(g.vmid)] = { name: g.name, kind: g.kind, ip: g.network.ip === "dhcp" ? "dhcp" : g.network.ip.split("/")[0]!, role: g.role?.type ?? "none" };
  }
  return { guests, models: config.guests.flatMap(modelsOf), gpuAllocation: gpuAllocation(config) };
}

export function modelsOf(g: Guest): ModelOutput[] {
  if (g.role?.type !== "model-server") return [];
  const s = g.role.server;
  switch (s.engine) {
    case "vllm":
      return [{ id: s.servedModelName, kind: s.task === "embed" ? "embedding" : "chat", engine: "vllm", guest: g.vmid }];
    case "llamacpp":
      return [{ id: s.servedModelName, kind: s.kind, engine: "llamacpp", guest: g.vmid }];
    case "ollama":
      return s.models.map((m) => ({ id: m.name, kind: m.kind, engine: "ollama" as const, guest: g.vmid }));
  }
}
