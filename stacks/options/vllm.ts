/**
 * Options `vllm serve` accepts, per pinned vLLM version.
 *
 * 0.11.0: from the v0.11.0 reference pages generated from the argument parser
 * (vllm/engine/arg_utils.py EngineArgs.add_cli_args, vllm/entrypoints/openai/cli_args.py
 * FrontendArgs, vllm/entrypoints/cli/serve.py):
 *   https://docs.vllm.ai/en/v0.11.0/configuration/engine_args.html
 *   https://docs.vllm.ai/en/v0.11.0/cli/serve.html
 * Only the groups a Phoenix model server can set are listed (serve, Frontend,
 * ModelConfig, LoadConfig, ParallelConfig, CacheConfig, SchedulerConfig); an
 * option outside them is refused until someone checks it against those pages
 * and adds it here. `--task` is left out on purpose: 0.11.0 keeps it only as
 * a deprecated alias of --runner/--convert.
 */
import type { OptionList } from "./option-list";

const V0_11_0 = [
  // serve
  "--headless",
  "--api-server-count",
  "--config",
  "--disable-log-stats",
  "--enable-log-requests",
  "--no-enable-log-requests",
  // Frontend
  "--host",
  "--port",
  "--uds",
  "--uvicorn-log-level",
  "--disable-uvicorn-access-log",
  "--allow-credentials",
  "--allowed-origins",
  "--allowed-methods",
  "--allowed-headers",
  "--api-key",
  "--lora-modules",
  "--chat-template",
  "--chat-template-content-format",
  "--response-role",
  "--ssl-keyfile",
  "--ssl-certfile",
  "--ssl-ca-certs",
  "--root-path",
  "--middleware",
  "--return-tokens-as-token-ids",
  "--disable-frontend-multiprocessing",
  "--enable-request-id-headers",
  "--enable-auto-tool-choice",
  "--tool-call-parser",
  "--tool-parser-plugin",
  "--max-log-len",
  "--disable-fastapi-docs",
  "--enable-prompt-tokens-details",
  "--enable-server-load-tracking",
  "--enable-force-include-usage",
  // ModelConfig
  "--model",
  "--runner",
  "--convert",
  "--tokenizer",
  "--tokenizer-mode",
  "--trust-remote-code",
  "--no-trust-remote-code",
  "--dtype",
  "--seed",
  "--hf-config-path",
  "--allowed-local-media-path",
  "--revision",
  "--code-revision",
  "--tokenizer-revision",
  "--max-model-len",
  "--quantization",
  "-q",
  "--enforce-eager",
  "--no-enforce-eager",
  "--max-logprobs",
  "--disable-sliding-window",
  "--skip-tokenizer-init",
  "--served-model-name",
  "--config-format",
  "--hf-token",
  "--hf-overrides",
  "--generation-config",
  "--override-generation-config",
  "--enable-sleep-mode",
  "--model-impl",
  // LoadConfig
  "--load-format",
  "--download-dir",
  "--model-loader-extra-config",
  "--ignore-patterns",
  // ParallelConfig
  "--distributed-executor-backend",
  "--pipeline-parallel-size",
  "-pp",
  "--tensor-parallel-size",
  "-tp",
  "--data-parallel-size",
  "-dp",
  "--enable-expert-parallel",
  "--max-parallel-loading-workers",
  "--disable-custom-all-reduce",
  // CacheConfig
  "--block-size",
  "--gpu-memory-utilization",
  "--swap-space",
  "--kv-cache-dtype",
  "--num-gpu-blocks-override",
  "--enable-prefix-caching",
  "--no-enable-prefix-caching",
  "--cpu-offload-gb",
  "--calculate-kv-scales",
  // SchedulerConfig
  "--max-num-batched-tokens",
  "--max-num-seqs",
  "--enable-chunked-prefill",
  "--no-enable-chunked-prefill",
  "--scheduling-policy",
  // StructuredOutputsConfig (vllm/config/structured_outputs.py reasoning_parser in 0.11.0)
  "--reasoning-parser",
];

/**
 * Reasoning parsers Phoenix has read and may name with --reasoning-parser
 * (registered with ReasoningParserManager.register_module in vllm/reasoning/).
 * - deepseek_r1 (deepseek_r1_reasoning_parser.py): when the output has no <think>, all text up to
 *   </think> is the reasoning and the rest the answer. Right for Qwen3-*-Thinking-2507, whose chat
 *   template opens <think> in the prompt so the output carries only </think>.
 * - qwen3 (qwen3_reasoning_parser.py): in the 0.11 era it returned the whole output as content unless
 *   both <think> and </think> were in it; later releases add "Qwen3-Thinking models add <think> as a
 *   prompt prefix" handling. Right for Qwen3 hybrid models, which emit both tags.
 * unverified at the v0.11.0 tag itself: read from stored versions of those files and from patches
 * that quote the original ("Original parser required both tags").
 */
const REASONING_PARSERS_0_11_0 = ["deepseek_r1", "qwen3"];

export const VLLM_OPTION_LISTS: readonly OptionList[] = [
  { engine: "vLLM", version: "0.11.0", source: "https://docs.vllm.ai/en/v0.11.0/configuration/engine_args.html", options: new Set(V0_11_0) },
];

export const VLLM_REASONING_PARSERS: readonly OptionList[] = [
  { engine: "vLLM", version: "0.11.0", source: "https://github.com/vllm-project/vllm/tree/v0.11.0/vllm/reasoning", options: new Set(REASONING_PARSERS_0_11_0) },
];
