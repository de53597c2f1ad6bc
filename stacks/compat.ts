/**
 * Combinations of GPU architecture, host driver, CUDA and engine version that
 * are known not to work, refused at validation with the evidence beside each
 * rule. Only what an upstream source shows broken is refused; anything else
 * passes (this is no allow-list). A guest's NVIDIA user-space is the host
 * driver's own version (the cuda layer installs it from the host's .run
 * installer, providers/template/layers.ts), so the host driver is the driver
 * every guest's CUDA runs on.
 */
import { templateVersion } from "./plan";
import type { Gpu, StackConfig } from "./schema";

export interface CompatIssue {
  path: string;
  message: string;
}

/**
 * Compute capability by model name, for GPUs that declare none.
 * unverified: NVIDIA's table (https://developer.nvidia.com/cuda-gpus) was not
 * readable from this workplace; the values are the ones the bug reports cited
 * in the rules below print (vllm-project/vllm#21633: "RTX 5070 Ti with CUDA
 * capability sm_120"). Declare host.gpus[].computeCapability to be sure.
 */
const KNOWN_CAPABILITIES: readonly [RegExp, string][] = [
  [/\bRTX (PRO )?50\d0\b|RTX PRO \d{4} Blackwell/i, "12.0"],
  [/\bRTX 40\d0\b/i, "8.9"],
  [/\bRTX 30\d0\b/i, "8.6"],
];

export function computeCapability(gpu: Pick<Gpu, "model" | "computeCapability">): string | undefined {
  return gpu.computeCapability ?? KNOWN_CAPABILITIES.find(([re]) => re.test(gpu.model))?.[1];
}

/** "12.0" → "120", the form CMAKE_CUDA_ARCHITECTURES and nvcc's sm_ names use. */
export const cudaArch = (capability: string): string => capability.replace(".", "");

/** Numeric comparison of dotted versions; a `b` prefix (llama.cpp tags) is ignored. */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.replace(/^[bv]/, "").split(/[.-]/).map((p) => parseInt(p, 10) || 0);
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The oldest Linux driver each CUDA release runs on.
 * unverified: from the CUDA Toolkit release notes, table "CUDA Toolkit and
 * Corresponding Driver Versions" (12.8 GA: >= 570.26; 12.9 GA: >= 575.51.03;
 * 13.0 GA: >= 580.65.06), which could not be fetched here; corroborated for
 * 12.8 by vllm-project/vllm#18995, whose 570.133.20 driver reports "CUDA
 * Version: 12.8".
 */
const MIN_DRIVER: Record<string, string> = { "12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06" };

/** vLLM's PyPI wheels bring their own CUDA runtime through torch: the driver must be new enough for it. */
const VLLM_WHEEL_CUDA: Record<string, string> = {
  // vllm@v0.11.0 requirements/cuda.txt pins torch==2.8.0, whose PyPI wheels are built with CUDA 12.8.
  // unverified: the tag's file could not be read at that commit; corroborated by public installs of
  // vllm==0.11.0 alongside torch==2.8.0 cu128 wheels.
  "0.11.0": "12.8",
};

export function compatibilityIssues(config: StackConfig): CompatIssue[] {
  const issues: CompatIssue[] = [];
  const driver = config.host.nvidiaDriver?.version;
  const gpuById = new Map(config.host.gpus.map((g) => [g.id, g]));

  // Driver × CUDA, for every template that installs a CUDA runtime on the host driver's user-space.
  config.templates.forEach((t, i) => {
    const cuda = t.kind === "lxc" ? t.versions.cuda : undefined;
    const min = cuda && MIN_DRIVER[cuda];
    if (driver && min && compareVersions(driver, min) < 0) {
      issues.push({ path: `templates[${i}].versions.cuda`, message: `template ${t.vmid}: CUDA ${cuda} needs NVIDIA driver ${min} or newer, and its user-space is the host's ${driver}: upgrade host.nvidiaDriver or pin an older CUDA` });
    }
  });

  config.guests.forEach((g, i) => {
    if (g.kind !== "lxc" || g.gpus.length === 0) return;
    const label = `CT ${g.vmid} ${g.name}`;
    const cuda = templateVersion(config, g.clone, "cuda");
    const gpus = g.gpus.map((id) => gpuById.get(id)).filter((x): x is Gpu => x !== undefined);
    const server = g.role?.type === "model-server" ? g.role.server : undefined;
    const engineVersion = server ? (server.version ?? templateVersion(config, g.clone, server.engine)) : undefined;
    const at = (suffix: string) => `guests[${i}].${suffix}`;

    for (const gpu of gpus) {
      const cc = computeCapability(gpu);
      if (cc === undefined) continue;
      const blackwell = compareVersions(cc, "12.0") >= 0;
      const gpuName = `GPU ${gpu.id} (${gpu.model}, sm_${cudaArch(cc)})`;

      // CUDA 12.8 is the first toolkit that compiles for and runs on sm_120: its release notes add
      // "support for ... SM_120" (unverified: the notes could not be fetched here); Ollama added
      // 120 to its CUDA 12 preset only once its builds used 12.8 (ollama/ollama#9426, below).
      if (blackwell && cuda && compareVersions(cuda, "12.8") < 0) {
        issues.push({ path: at("clone"), message: `${label}: ${gpuName} needs CUDA 12.8 or newer, and its template chain pins CUDA ${cuda}: clone it from a template with versions.cuda "12.8" or newer` });
      }
      if (!server || engineVersion === undefined) continue;

      if (server.engine === "vllm" && blackwell) {
        // vllm-project/vllm#21633: "v0.10.0 built with early version of pytorch that does not support
        // sm-120 ... v0.9.2 works with SM-120". vllm-project/vllm#18995: vllm/vllm-openai:latest of
        // 2025-05-31 (0.9.0) fails on an RTX 5090 with "no kernel image is available for execution on the device".
        if (compareVersions(engineVersion, "0.9.2") < 0 || compareVersions(engineVersion, "0.10.0") === 0) {
          issues.push({ path: at("role.server.version"), message: `${label}: vLLM ${engineVersion}'s wheels carry a PyTorch without sm_120 kernels, so it cannot run on ${gpuName} (vllm-project/vllm#21633, #18995): pin 0.11.0` });
        }
        // FP8 block-quantized checkpoints (such as Qwen3-*-FP8) run on sm_120 too: vLLM's CUTLASS block-FP8
        // GEMM is built for sm_90/sm_100 only and falls back to its Triton kernel there, which Triton
        // compiles on the guest (hence gcc and Python headers in the vllm layer). Slower, not broken: no refusal.
      }
      if (server.engine === "ollama" && blackwell && compareVersions(engineVersion, "0.5.13") < 0) {
        // ollama@v0.5.13 CMakePresets.json: "CUDA 12" gains 120 in CMAKE_CUDA_ARCHITECTURES (commit a14912858,
        // "build: add compute capability 12.0 to CUDA 12 preset", ollama/ollama#9426); older releases ship no sm_120 runner.
        issues.push({ path: at("role.server.version"), message: `${label}: Ollama ${engineVersion}'s CUDA runners are not built for sm_120 (added in 0.5.13, ollama/ollama#9426), so it would run ${gpuName} on the CPU: pin 0.5.13 or newer` });
      }
      if (server.engine === "llamacpp" && server.cudaArchitectures !== undefined) {
        // ggml-cuda kernels built for other architectures do not load: CUDA reports "no kernel image is
        // available" (the same failure as vllm-project/vllm#18995); a -virtual (PTX) entry of the same arch JITs.
        const archs = server.cudaArchitectures.split(";").map((a) => a.replace(/[af]?(-real|-virtual)?$/, ""));
        if (!archs.includes(cudaArch(cc))) {
          issues.push({ path: at("role.server.cudaArchitectures"), message: `${label}: llama.cpp would be built for ${server.cudaArchitectures}, which leaves out ${gpuName}: add ${cudaArch(cc)}` });
        }
      }
    }

    if (server?.engine === "vllm" && engineVersion !== undefined && driver) {
      const wheelCuda = VLLM_WHEEL_CUDA[engineVersion];
      const min = wheelCuda && MIN_DRIVER[wheelCuda];
      if (min && compareVersions(driver, min) < 0) {
        issues.push({ path: at("role.server"), message: `${label}: vLLM ${engineVersion}'s wheels use CUDA ${wheelCuda}, which needs NVIDIA driver ${min} or newer; the host runs ${driver}: upgrade host.nvidiaDriver` });
      }
    }
  });
  return issues;
}
