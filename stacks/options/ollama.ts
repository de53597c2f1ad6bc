/**
 * Environment variables `ollama serve` reads, per pinned Ollama version
 * (Ollama takes its server settings from the environment, not from options).
 *
 * 0.12.6: envconfig/config.go at tag v0.12.6, the variables AsMap() reports
 * (`ollama serve --help` prints the same list),
 * https://github.com/ollama/ollama/blob/v0.12.6/envconfig/config.go.
 * Only the server, storage and scheduling variables a Phoenix server can set
 * are listed; anything else is refused until checked there and added.
 */
import type { OptionList } from "./option-list";

const V0_12_6 = [
  "OLLAMA_HOST",
  "OLLAMA_MODELS",
  "OLLAMA_KEEP_ALIVE",
  "OLLAMA_MAX_LOADED_MODELS",
  "OLLAMA_NUM_PARALLEL",
  "OLLAMA_MAX_QUEUE",
  "OLLAMA_ORIGINS",
  "OLLAMA_DEBUG",
  "OLLAMA_FLASH_ATTENTION",
  "OLLAMA_KV_CACHE_TYPE",
  "OLLAMA_CONTEXT_LENGTH",
  "OLLAMA_LOAD_TIMEOUT",
  "OLLAMA_SCHED_SPREAD",
  "OLLAMA_GPU_OVERHEAD",
  "OLLAMA_NOPRUNE",
  // config.go AsMap(), on every OS but darwin; discover/runner.go filters each runner to one GPU with it.
  "CUDA_VISIBLE_DEVICES",
];

export const OLLAMA_ENV_LISTS: readonly OptionList[] = [
  { engine: "Ollama", version: "0.12.6", source: "https://github.com/ollama/ollama/blob/v0.12.6/envconfig/config.go", options: new Set(V0_12_6) },
];
