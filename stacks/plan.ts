/** Pure planning over a validated configuration: figures other parts report or check. */
import type { StackConfig } from "./schema";

export interface GpuUser {
  guest: string;
  engine: "vllm" | "ollama" | "llamacpp";
  /** Fraction of the card's memory this server takes on this GPU. */
  share: number;
  memoryGiB: number;
}

export interface GpuAllocation {
  gpu: number;
  model: string;
  memoryGiB: number;
  /** Sum of vLLM gpuMemoryUtilization on this GPU. */
  vllmUtilization: number;
  totalGiB: number;
  users: GpuUser[];
}

/**
 * Per-GPU memory budget of the model servers. vLLM reserves its utilization
 * fraction on every GPU it spans; Ollama and llama.cpp declare VRAM in GiB for
 * the whole server, spread evenly over its GPUs.
 */
export function gpuAllocation(config: StackConfig): GpuAllocation[] {
  const table = new Map<number, GpuAllocation>(
    config.host.gpus.map((g) => [g.id, { gpu: g.id, model: g.model, memoryGiB: g.memoryGiB, vllmUtilization: 0, totalGiB: 0, users: [] }]),
  );
  for (const guest of config.guests) {
    if (guest.role?.type !== "model-server" || guest.gpus.length === 0) continue;
    const server = guest.role.server;
    const label = `${guest.vmid} ${guest.name}`;
    for (const id of guest.gpus) {
      const alloc = table.get(id);
      if (!alloc) continue;
      let memoryGiB: number;
      if (server.engine === "vllm") {
        memoryGiB = server.gpuMemoryUtilization * alloc.memoryGiB;
        alloc.vllmUtilization += server.gpuMemoryUtilization;
      } else {
        const vram = server.engine === "ollama" ? server.models.reduce((sum, m) => sum + m.vramGiB, 0) : server.vramGiB;
        memoryGiB = vram / guest.gpus.length;
      }
      alloc.totalGiB += memoryGiB;
      alloc.users.push({ guest: label, engine: server.engine, share: Math.round((memoryGiB / alloc.memoryGiB) * 1000) / 1000, memoryGiB });
    }
  }
  return [...table.values()];
}
