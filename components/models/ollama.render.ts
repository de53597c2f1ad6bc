/**
 * Ollama's unit: the pinned release from its own versioned directory,
 * configured through the environment variables that release reads, with the
 * declared models kept loaded so the VRAM the stack counts for them stays
 * theirs.
 */
import { fileList, type RenderedFile } from "../render/files";
import { assertListed } from "./args";
import { optionListFor } from "../../stacks/options/option-list";
import { gpuEnvironment } from "./gpu";
import { OLLAMA_ENV_LISTS } from "../../stacks/options/ollama";
import type { OllamaSpec } from "./server";
import { renderServiceUnit } from "./systemd";

/** Each release lives in its own directory (binary plus its GPU runner libraries), so an upgrade is a new path. */
export function ollamaHome(version: string): string {
  return `/opt/ollama/${version}`;
}

export function ollamaBin(version: string): string {
  return `${ollamaHome(version)}/bin/ollama`;
}

/** The name /api/tags lists a model under: Ollama adds the tag `latest` when none is given. */
export function ollamaTagged(name: string): string {
  const last = name.slice(name.lastIndexOf("/") + 1);
  return last.includes(":") ? name : `${name}:latest`;
}

// Settings the renderer turns into variables itself; any other becomes OLLAMA_<NAME> and must be one the release reads.
const HANDLED = new Set(["engine", "version", "sha256", "port", "modelsDir", "models"]);
const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

export function ollamaEnvironment(spec: OllamaSpec): Record<string, string> {
  const s = spec.server;
  const list = optionListFor(OLLAMA_ENV_LISTS, "Ollama", spec.version);
  const env: Record<string, string> = {
    OLLAMA_HOST: `0.0.0.0:${s.port}`,
    OLLAMA_MODELS: s.modelsDir,
    // Never unload: the GPU budget already reserves every declared model's VRAM.
    OLLAMA_KEEP_ALIVE: "-1",
    OLLAMA_MAX_LOADED_MODELS: String(s.models.length),
  };
  for (const [key, value] of Object.entries(s)) {
    if (!HANDLED.has(key) && value !== undefined) env[`OLLAMA_${snake(key)}`] = String(value);
  }
  assertListed(Object.keys(env), list);
  // CUDA_DEVICE_ORDER is the CUDA runtime's, read by the runners Ollama starts, not by Ollama itself.
  return { ...env, ...gpuEnvironment(spec) };
}

export function renderOllamaFiles(spec: OllamaSpec): RenderedFile[] {
  return fileList([
    {
      path: spec.unitFile,
      content: renderServiceUnit({
        description: `Ollama ${spec.version} serving ${spec.server.models.map((m) => m.name).join(", ")} (Phoenix model server ${spec.vmid})`,
        user: spec.user.name,
        group: spec.user.name,
        workingDirectory: spec.user.home,
        environment: ollamaEnvironment(spec),
        argv: [ollamaBin(spec.version), "serve"],
      }),
    },
  ]);
}
