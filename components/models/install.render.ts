/**
 * The per-engine install script of a model server: the engine (vLLM comes
 * with the template and is only checked; Ollama's pinned release archive is
 * verified and unpacked; llama.cpp is built with CUDA from its pinned tag),
 * the service user, the model directory, then the unit through the shared
 * staged installer. Every step is idempotent: a second run changes nothing.
 */
import { shQuote, type RenderedFile } from "../render/files";
import { renderAptEnsure, renderInstallScript } from "../render/install-script";
import { llamaCppHome, llamaServerBin, renderLlamaCppFiles } from "./llamacpp.render";
import { ollamaBin, ollamaHome, renderOllamaFiles } from "./ollama.render";
import { renderGpuViewCheck } from "./gpu";
import { ENGINE_NAMES, type LlamaCppSpec, type ModelServerSpec, type OllamaSpec, type ServiceUser, type VllmSpec } from "./server";
import { renderVllmFiles, VLLM_HOME } from "./vllm.render";

export interface ModelInstallInputs {
  /** phoenix:modelApiKey, for a vLLM server with requireApiKey. */
  apiKey?: string;
}

/** The files a model server's engine needs, for the installer and for an offline synth alike. */
export function renderModelServerFiles(spec: ModelServerSpec, apiKey?: string): RenderedFile[] {
  switch (spec.engine) {
    case "vllm":
      return renderVllmFiles(spec, apiKey);
    case "ollama":
      return renderOllamaFiles(spec);
    case "llamacpp":
      return renderLlamaCppFiles(spec);
  }
}

/** Creates the service user (with the ids the model volume's owner has, when the stack declares them) and its home. */
function userSetup(user: ServiceUser): string {
  const n = user.name;
  const idCheck = (db: "passwd" | "group", id: number | undefined, what: string) =>
    id === undefined
      ? ""
      : `holder=$(getent ${db} ${id} | cut -d: -f1 || true)
if [ -n "$holder" ] && [ "$holder" != ${n} ]; then
  echo "${what} ${id}, which owns the model volume, belongs to $holder; ${n} needs it: rename that account or change the mount's uid/gid" >&2
  exit 1
fi
`;
  return `${idCheck("group", user.gid, "gid")}${idCheck("passwd", user.uid, "uid")}if ! getent group ${n} >/dev/null; then groupadd ${user.gid === undefined ? "--system" : `--gid ${user.gid}`} ${n}; fi
if ! id -u ${n} >/dev/null 2>&1; then
  useradd ${user.uid === undefined ? "--system" : `--uid ${user.uid}`} --gid ${n} --home-dir ${user.home} --no-create-home --shell /usr/sbin/nologin ${n}
fi
install -d -m 0750 -o ${n} -g ${n} ${user.home}`;
}

/** A directory on the shared model volume, created for the service user if missing and never re-owned. */
function dataDir(user: ServiceUser, dir: string): string {
  return `if [ ! -d ${shQuote(dir)} ]; then install -d -m 0755 -o ${user.name} -g ${user.name} ${shQuote(dir)}; fi`;
}

function vllmPrepare(spec: VllmSpec): string {
  const want = shQuote(spec.version);
  // The pin as a variable: messages use it without splicing a quoted word into a double-quoted one.
  return `if [ ! -x ${VLLM_HOME}/bin/vllm ]; then
  echo "vLLM is not installed at ${VLLM_HOME}: guest ${spec.vmid} must be cloned from the vLLM template (layer vllm)" >&2
  exit 1
fi
want=${want}
have=$(${VLLM_HOME}/bin/python -c 'import importlib.metadata as m; print(m.version("vllm"))')
if [ "$have" != ${want} ]; then
  echo "the template installed vLLM $have but guest ${spec.vmid} pins $want: rebuild the template or change the pin" >&2
  exit 1
fi
${userSetup(spec.user)}
${dataDir(spec.user, spec.server.downloadDir)}`;
}

function ollamaPrepare(spec: OllamaSpec): string {
  // ollama@v0.12.6 .github/workflows/release.yaml uploads the archives with `gh release create` and writes
  // no checksum file, so the archive's SHA-256 is pinned in the stack (role.server.sha256).
  const sha256 = spec.server.sha256;
  const v = spec.version;
  const base = `https://github.com/ollama/ollama/releases/download/v${v}`;
  const archive = "ollama-linux-amd64.tgz";
  const home = ollamaHome(v);
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`Ollama ${v}: the archive's sha256 must be 64 lower-case hex characters`);
  const expected = `expected=${sha256}`;
  return `# The archive holds bin/ollama and the GPU runner libraries in lib/ollama; both must come from the same release.
if [ ! -x ${shQuote(ollamaBin(v))} ]; then
  dl=$(mktemp -d)
  curl -fsSL --proto '=https' --tlsv1.2 --retry 3 -o "$dl/archive" ${shQuote(`${base}/${archive}`)}
  ${expected}
  if ! echo "$expected  $dl/archive" | sha256sum -c --quiet -; then
    echo ${shQuote(`Ollama ${v}: checksum mismatch for ${base}/${archive}; nothing installed`)} >&2
    exit 1
  fi
  rm -rf ${shQuote(`${home}.partial`)}
  mkdir -p ${shQuote(`${home}.partial`)}
  tar -xzf "$dl/archive" -C ${shQuote(`${home}.partial`)}
  mv ${shQuote(`${home}.partial`)} ${shQuote(home)}
  rm -rf "$dl"
fi
${userSetup(spec.user)}
${dataDir(spec.user, spec.server.modelsDir)}`;
}

/**
 * CMAKE_CUDA_ARCHITECTURES: the declared list, or the sm_ architectures of the guest's GPUs. Never
 * `native`: CMake resolves it by querying the GPUs visible at configure time, and the build must not
 * depend on the build host's devices (unverified for b6500's ggml/src/ggml-cuda/CMakeLists.txt at
 * that commit: the stored versions set `native` only when CMAKE_CUDA_ARCHITECTURES is undefined).
 */
function llamaCppArchitectures(spec: LlamaCppSpec): string {
  if (spec.server.cudaArchitectures !== undefined) return spec.server.cudaArchitectures;
  const archs = [...new Set(spec.gpus.map((g) => g.arch))];
  if (archs.length === 0 || archs.includes(undefined)) {
    throw new Error(`guest ${spec.vmid} (${spec.guestName}): llama.cpp is built for its GPUs' architectures: declare host.gpus[].computeCapability or role.server.cudaArchitectures`);
  }
  return archs.join(";");
}

function llamaCppPrepare(spec: LlamaCppSpec): string {
  const tag = spec.version;
  const home = llamaCppHome(tag);
  const commit = spec.server.commit;
  const cudaArchitectures = llamaCppArchitectures(spec);
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`llama.cpp ${tag}: the commit must be a full 40-character hex id`);
  if (!/^[A-Za-z0-9;_-]+$/.test(cudaArchitectures)) throw new Error(`llama.cpp ${tag}: CUDA architectures '${cudaArchitectures}' must look like 'native' or '120' or '86;120'`);
  const cuda = /^(\d+)\.(\d+)$/.exec(spec.cuda);
  if (!cuda) throw new Error(`guest ${spec.vmid}: CUDA version ${spec.cuda} must be major.minor, e.g. 12.8`);
  const suffix = `${cuda[1]}-${cuda[2]}`;
  const nvcc = `/usr/local/cuda-${spec.cuda}/bin/nvcc`;
  // Checked after checkout: a moved or re-created tag fails here instead of building other code.
  const pin = `
  if [ "$(git -C "$src" rev-parse HEAD)" != ${commit} ]; then
    echo ${shQuote(`llama.cpp tag ${tag} no longer points at ${commit}; refusing to build it`)} >&2
    exit 1
  fi`;
  // The CUDA template carries the runtime libraries only; the build also needs the compiler, headers and the driver stub, from the
  // same release, and CUB: ggml/src/ggml-cuda (e.g. argsort.cu, sum.cu at b6500) includes <cub/cub.cuh>, which is in cuda-cccl.
  return `${renderAptEnsure(["git", "cmake", "build-essential", `cuda-nvcc-${suffix}`, `cuda-cudart-dev-${suffix}`, `libcublas-dev-${suffix}`, `cuda-driver-dev-${suffix}`, `cuda-cccl-${suffix}`])}
if [ ! -x ${shQuote(llamaServerBin(tag))} ]; then
  src=$(mktemp -d ${shQuote(`/var/tmp/llama.cpp-${tag}.XXXXXX`)})
  git clone --quiet --depth 1 --branch ${shQuote(tag)} https://github.com/ggml-org/llama.cpp.git "$src"${pin}
  # Static ggml: the one binary is all the unit needs.
  cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \\
    -DCMAKE_CUDA_COMPILER=${nvcc} -DCMAKE_CUDA_ARCHITECTURES=${shQuote(cudaArchitectures)} \\
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
  cmake --build "$src/build" --config Release --target llama-server -j "$(nproc)"
  rm -rf ${shQuote(`${home}.partial`)}
  install -D -m 0755 "$src/build/bin/llama-server" ${shQuote(`${home}.partial/bin/llama-server`)}
  mv ${shQuote(`${home}.partial`)} ${shQuote(home)}
  rm -rf "$src"
fi
${userSetup(spec.user)}
if [ ! -r ${shQuote(spec.server.model)} ]; then
  echo ${shQuote(`guest ${spec.vmid}: the model ${spec.server.model} is not there; put the GGUF file on the model volume`)} >&2
  exit 1
fi`;
}

/** After the server answers, pulls the declared models it does not have yet; models it has are never removed. */
function ollamaPulls(spec: OllamaSpec): string {
  const names = spec.server.models.map((m) => shQuote(m.name)).join(" ");
  const bin = shQuote(ollamaBin(spec.version));
  return `export OLLAMA_HOST=127.0.0.1:${spec.server.port}
for _ in $(seq 1 60); do
  if ${bin} list >/dev/null 2>&1; then break; fi
  sleep 1
done
for model in ${names}; do
  if ! ${bin} show "$model" >/dev/null 2>&1; then ${bin} pull "$model"; fi
done`;
}

function enginePrepare(spec: ModelServerSpec): string {
  switch (spec.engine) {
    case "vllm":
      return vllmPrepare(spec);
    case "ollama":
      return ollamaPrepare(spec);
    case "llamacpp":
      return llamaCppPrepare(spec);
  }
}

// curl downloads releases and is what the health script checks the engine with; the GPU view is checked before anything is built.
const prepare = (spec: ModelServerSpec) => [renderAptEnsure(["curl", "ca-certificates"]), renderGpuViewCheck(spec), enginePrepare(spec)].filter((x) => x !== "").join("\n");

export function renderModelInstallScript(spec: ModelServerSpec, inputs: ModelInstallInputs = {}): string {
  const start = `systemctl enable --quiet ${spec.unit}
if ! systemctl is-active --quiet ${spec.unit}; then systemctl start ${spec.unit}; fi`;
  return renderInstallScript({
    name: spec.unit.replace(/\.service$/, ""),
    description: `${ENGINE_NAMES[spec.engine]} ${spec.version} model server on guest ${spec.vmid} (${spec.guestName})`,
    prepare: prepare(spec),
    files: renderModelServerFiles(spec, inputs.apiKey),
    validate: `systemd-analyze verify ${spec.unitFile}`,
    reload: `systemctl daemon-reload
systemctl restart ${spec.unit}`,
    // Only that the engine process runs: loading a model takes minutes, and the health script waits for that.
    verify: `systemctl is-active --quiet ${spec.unit}`,
    finish: spec.engine === "ollama" ? `${start}\n${ollamaPulls(spec)}` : start,
  });
}
