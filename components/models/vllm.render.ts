/**
 * vLLM's files on a model server cloned from the vLLM template: a systemd
 * unit whose command line is rendered from the typed engine settings, and,
 * when the server requires an API key, the root-only environment file that
 * holds it (the key never appears on a command line, where `ps` shows it).
 */
import { VLLM_VENV } from "../../providers/template/layers";
import { assertModelApiKey } from "../../stacks/placeholder";
import { fileList, type RenderedFile } from "../render/files";
import { assertListed, flagsOf, settingsToArgs } from "./args";
import { optionListFor } from "../../stacks/options/option-list";
import { gpuEnvironment } from "./gpu";
import type { VllmSpec } from "./server";
import { renderServiceUnit } from "./systemd";
import { VLLM_OPTION_LISTS, VLLM_REASONING_PARSERS } from "../../stacks/options/vllm";

/** Where the vLLM template layer installs its virtualenv: a contract with that layer. */
/** The golden vLLM template's virtualenv, where its layer installed vLLM. */
export const VLLM_HOME = VLLM_VENV;
export const VLLM_BIN = `${VLLM_HOME}/bin/vllm`;
export const VLLM_ENV_FILE = "/etc/phoenix/vllm.env";
/** vLLM reads the key from here when --api-key is not given (vllm/entrypoints/openai/api_server.py). */
export const VLLM_API_KEY_VAR = "VLLM_API_KEY";

// Settings that are not `vllm serve` options of the same name: the renderer places them itself.
const NOT_OPTIONS = new Set(["engine", "version", "model", "task", "requireApiKey"]);

export function vllmArgv(spec: VllmSpec): string[] {
  const s = spec.server;
  const list = optionListFor(VLLM_OPTION_LISTS, "vLLM", spec.version);
  const argv = [
    VLLM_BIN,
    "serve",
    s.model,
    // The guest firewall admits only Traefik; inside the guest every address may answer.
    "--host",
    "0.0.0.0",
    ...settingsToArgs(s, { skip: NOT_OPTIONS }),
    ...(s.task === "embed" ? ["--runner", "pooling", "--convert", "embed"] : ["--runner", "generate"]),
  ];
  assertListed(flagsOf(argv), list);
  if (s.reasoningParser !== undefined) assertListed([s.reasoningParser], optionListFor(VLLM_REASONING_PARSERS, "vLLM", spec.version));
  return argv;
}

/**
 * The unit's environment: the GPU selection (./gpu.ts) and the sampler.
 *
 * Sampler: with top_k/top_p in a request (Qwen3's generation_config.json sets both, and vLLM applies
 * the model's generation config by default) the v1 TopKTopPSampler uses FlashInfer when it is
 * importable and VLLM_USE_FLASHINFER_SAMPLER "is not False" (vllm/v1/sample/ops/topk_topp_sampler.py:
 * the variable is None by default and "interpreted as True"); flashinfer-python 0.3.x ships no
 * prebuilt sampling kernels and JIT-compiles them with nvcc on first use, which the template does not
 * have. VLLM_USE_FLASHINFER_SAMPLER=0 (vllm/envs.py: bool(int(...))) selects forward_native, PyTorch's
 * own top-k/top-p: no compiler on the request path, and the answer is the same distribution.
 * unverified at the v0.11.0 tag itself: the stored versions on both sides of it read as above.
 */
export function vllmEnvironment(spec: VllmSpec): Record<string, string> {
  return { ...gpuEnvironment(spec), VLLM_USE_FLASHINFER_SAMPLER: "0" };
}

/** The unit, and the key's environment file when the server requires one; apiKey is phoenix:modelApiKey. */
export function renderVllmFiles(spec: VllmSpec, apiKey?: string): RenderedFile[] {
  const s = spec.server;
  if (s.requireApiKey && apiKey === undefined) throw new Error(`guest ${spec.vmid} (${spec.guestName}) requires an API key: pass phoenix:modelApiKey to the renderer`);
  if (apiKey !== undefined) assertModelApiKey(apiKey);
  const withKey = s.requireApiKey && apiKey !== undefined;
  const unit: RenderedFile = {
    path: spec.unitFile,
    // The version is in the unit so that a new template release restarts the service.
    content: renderServiceUnit({
      description: `vLLM ${spec.version} serving ${s.servedModelName} (Phoenix model server ${spec.vmid})`,
      user: spec.user.name,
      group: spec.user.name,
      workingDirectory: spec.user.home,
      argv: vllmArgv(spec),
      environment: vllmEnvironment(spec),
      ...(withKey ? { environmentFile: VLLM_ENV_FILE } : {}),
    }),
  };
  if (!withKey) return fileList([unit]);
  return fileList([unit, { path: VLLM_ENV_FILE, content: `${VLLM_API_KEY_VAR}=${apiKey}\n`, mode: "0600", owner: "root:root" }]);
}
