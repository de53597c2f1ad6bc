/**
 * The setup scripts of the LXC template layers: pure renderers from a typed
 * spec to bash. Each runs inside the container being built, checks before it
 * changes anything, prints `changed <what>` for every change it makes, and so
 * may run any number of times (a retried build re-runs it from the top).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { APT_GET, aptGetUpdate } from "../ssh/apt";
import { INSTALLED_FN, renderScript, shellQuote, writeFileIfChanged } from "../ssh/script";

export interface BaseLayer {
  layer: "base";
  /** IANA zone, e.g. America/New_York. */
  timezone: string;
  /** A UTF-8 locale such as en_US.UTF-8. */
  locale: string;
  /** Packages installed on top of BASE_PACKAGES. */
  packages: string[];
  /** The internal root CA, trusted system-wide once it exists. */
  caPem?: string;
}

export interface CudaLayer {
  layer: "cuda";
  /** The host driver's installed version: the user-space libraries must be exactly this one. */
  driverVersion: string;
  /** The same .run installer the host installed its driver from. */
  runfileUrl: string;
  runfileSha256?: string;
  /** CUDA runtime major.minor, e.g. 12.8. */
  cuda: string;
}

export interface VllmLayer {
  layer: "vllm";
  /** Exact vLLM release, e.g. 0.11.0. */
  vllm: string;
  /** Hash-locked requirements (pip --require-hashes); defaults to the repository's lock for the release (vllmLock). */
  requirements?: string;
}

export type LayerSpec = BaseLayer | CudaLayer | VllmLayer;

export const BASE_PACKAGES = ["ca-certificates", "curl", "locales", "tzdata", "openssh-server", "unattended-upgrades"];
/** Ubuntu 24.04's repository: the base template is Ubuntu 24.04 (templates[].source.catalogue). */
export const CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64";
export const CUDA_KEYRING = "cuda-keyring_1.1-1_all.deb";
export const VLLM_VENV = "/opt/vllm";
export const CA_PATH = "/usr/local/share/ca-certificates/phoenix-root-ca.crt";
export const SSHD_HARDENING_PATH = "/etc/ssh/sshd_config.d/50-phoenix-hardening.conf";

export const SSHD_HARDENING = `# Managed by Phoenix
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
X11Forwarding no
MaxAuthTries 3
`;

export const AUTO_UPGRADES = `// Managed by Phoenix
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
`;

/** Security updates only: anything else changes what the template's clones run, and goes through a rebuild. */
export const UNATTENDED_UPGRADES = `// Managed by Phoenix
Unattended-Upgrade::Allowed-Origins {
        "\${distro_id}:\${distro_codename}-security";
        "\${distro_id}ESMApps:\${distro_codename}-apps-security";
        "\${distro_id}ESM:\${distro_codename}-infra-security";
};
Unattended-Upgrade::Automatic-Reboot "false";
`;

/**
 * The container's NVIDIA user-space comes from the host's .run installer, so no package may
 * bring another libcuda: a second copy of another version breaks every CUDA program.
 */
export const NO_NVIDIA_DRIVER_PACKAGES = `# Managed by Phoenix: NVIDIA user-space comes from the host driver's installer
Package: nvidia-* libnvidia-* cuda-drivers* xserver-xorg-video-nvidia-*
Pin: version *
Pin-Priority: -1
`;

const LIB_DIR = "/usr/lib/x86_64-linux-gnu";


/** Installs whichever of `packages` is not installed, with one apt-get update first; needs INSTALLED_FN. */
function ensurePackages(packages: readonly string[]): string {
  return `wanted=(${packages.map(shellQuote).join(" ")})
missing=()
for p in "\${wanted[@]}"; do
  if ! installed "$p"; then missing+=("$p"); fi
done
if [ \${#missing[@]} -gt 0 ]; then
  ${aptGetUpdate("", "  ")}
  DEBIAN_FRONTEND=noninteractive ${APT_GET} install -y --no-install-recommends "\${missing[@]}"
  echo "changed packages \${missing[*]}"
fi`;
}

/** Runs `then` (shell lines) only when writing the file changed it. */
function writeThen(path: string, content: string, then: string): string {
  return `out="$(
${writeFileIfChanged(path, content)}
)"
if [ -n "$out" ]; then echo "$out"; ${then}; fi`;
}

function renderBase(spec: BaseLayer): string {
  const m = /^([A-Za-z_]+)\.UTF-8$/.exec(spec.locale);
  if (!m) throw new Error(`base layer: locale ${spec.locale} must be a UTF-8 locale such as en_US.UTF-8`);
  const localeName = `${m[1]}.utf8`;
  return [
    ensurePackages([...BASE_PACKAGES, ...spec.packages]),
    `if ! locale -a | grep -qx ${shellQuote(localeName)}; then locale-gen ${shellQuote(spec.locale)}; echo ${shellQuote(`changed locale ${spec.locale}`)}; fi`,
    writeFileIfChanged("/etc/default/locale", `LANG=${spec.locale}\n`),
    `zone=${shellQuote(`/usr/share/zoneinfo/${spec.timezone}`)}`,
    `if [ "$(readlink "$R/etc/localtime" || true)" != "$zone" ]; then ln -sfn "$zone" "$R/etc/localtime"; echo ${shellQuote(`changed timezone ${spec.timezone}`)}; fi`,
    writeFileIfChanged("/etc/timezone", `${spec.timezone}\n`),
    writeFileIfChanged("/etc/apt/apt.conf.d/20auto-upgrades", AUTO_UPGRADES),
    writeFileIfChanged("/etc/apt/apt.conf.d/52phoenix-unattended-upgrades", UNATTENDED_UPGRADES),
    "if ! systemctl is-enabled unattended-upgrades >/dev/null 2>&1; then systemctl enable unattended-upgrades; echo 'changed enabled unattended-upgrades'; fi",
    writeFileIfChanged(SSHD_HARDENING_PATH, SSHD_HARDENING),
    ...(spec.caPem === undefined ? [] : [writeThen(CA_PATH, spec.caPem, "update-ca-certificates")]),
  ].join("\n");
}

function renderCuda(spec: CudaLayer): string {
  const m = /^(\d+)\.(\d+)$/.exec(spec.cuda);
  if (!m) throw new Error(`cuda layer: CUDA version ${spec.cuda} must be major.minor, e.g. 12.8`);
  const runtime = `cuda-libraries-${m[1]}-${m[2]}`;
  const verify = spec.runfileSha256
    ? `  if ! printf '%s  %s\\n' ${shellQuote(spec.runfileSha256)} "$runfile" | sha256sum -c --quiet -; then
    rm -f "$runfile"
    echo "the NVIDIA installer from $url does not have the configured sha256" >&2
    exit 1
  fi`
    : "";
  return [
    `v=${shellQuote(spec.driverVersion)}`,
    `url=${shellQuote(spec.runfileUrl)}`,
    'cache="$R/var/cache/phoenix"',
    'mkdir -p "$cache"',
    // The kernel module is the host's; only the libraries go in, and they must be the same version.
    `if [ ! -e "$R${LIB_DIR}/libcuda.so.$v" ]; then
  runfile="$cache/NVIDIA-Linux-x86_64-$v.run"
  curl -fsSL -o "$runfile.part" "$url"
  mv -f "$runfile.part" "$runfile"
${verify}
  sh "$runfile" --silent --accept-license --no-kernel-module --no-x-check --no-nouveau-check --no-nvidia-modprobe --no-dkms --no-opengl-files
  rm -f "$runfile"
  echo "changed nvidia user-space $v"
fi`,
    writeFileIfChanged("/etc/apt/preferences.d/phoenix-no-nvidia-driver", NO_NVIDIA_DRIVER_PACKAGES),
    `if ! installed cuda-keyring; then
  curl -fsSL -o "$cache/${CUDA_KEYRING}" ${shellQuote(`${CUDA_REPO}/${CUDA_KEYRING}`)}
  dpkg -i "$cache/${CUDA_KEYRING}"
  rm -f "$cache/${CUDA_KEYRING}"
  echo 'changed cuda-keyring'
fi`,
    ensurePackages([runtime]),
  ].join("\n");
}

/** Where the hash-locked requirements of each vLLM release live in this repository: vllm-locks/generate.sh writes them. */
export const VLLM_LOCK_DIR = path.join(__dirname, "vllm-locks");

/** The repository's lock for a vLLM release, or undefined when none has been generated. */
export function vllmLock(version: string): string | undefined {
  if (!/^\d+\.\d+\.\d+(\.post\d+)?$/.test(version)) throw new Error(`vllm layer: vLLM version ${version} must be an exact release such as 0.11.0`);
  const file = path.join(VLLM_LOCK_DIR, `${version}.txt`);
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
}

/**
 * Every requirement pinned with == and at least one --hash: pip's --require-hashes mode refuses
 * anything else at install time too (pip docs, "Hash-checking mode"); this fails the render first.
 */
function checkLock(version: string, lock: string): void {
  const requirements = lock
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.replace(/(^|\s)#.*$/, "").trim())
    .filter((l) => l !== "");
  const vllm = requirements.find((r) => /^vllm==/i.test(r));
  if (!vllm?.startsWith(`vllm==${version} `)) throw new Error(`vllm layer: the lock for ${version} does not pin vllm==${version}`);
  const bad = requirements.find((r) => !/^[A-Za-z0-9._-]+(\[[A-Za-z0-9._,-]+\])?==\S+(\s*;[^-]*)?(\s+--hash=sha256:[0-9a-f]{64})+$/.test(r));
  if (bad !== undefined) throw new Error(`vllm layer: the lock for ${version} has a requirement without an exact pin and sha256 hashes: ${bad.slice(0, 120)}`);
}

/**
 * vLLM into its own virtualenv, from hash-locked wheels, plus what vLLM 0.11.0 compiles on the guest at run time:
 * - gcc: vLLM compiles the model with torch.compile/Inductor by default, and Triton builds a small C launcher
 *   for each kernel on first use; triton python/triton/runtime/build.py looks for $CC, then gcc, then clang,
 *   and raises "Failed to find C compiler. Please specify via CC environment variable." (vllm-project/vllm#15329).
 * - python3-dev: that launcher includes Python.h from sysconfig's include path (same file).
 * unverified at the exact Triton release vLLM 0.11.0 resolves to (3.4.0 with torch 2.8.0): read from the
 *   stored versions of build.py around it.
 * No nvcc: the one vLLM path that would JIT-compile CUDA on a request, FlashInfer's top-k/top-p sampler,
 * is switched off in the unit (components/models/vllm.render.ts vllmEnvironment).
 */
function renderVllm(spec: VllmLayer): string {
  const lock = spec.requirements ?? vllmLock(spec.vllm);
  if (lock === undefined) {
    throw new Error(`vllm layer: no hash-locked requirements for vLLM ${spec.vllm} (providers/template/vllm-locks/${spec.vllm}.txt): run providers/template/vllm-locks/generate.sh ${spec.vllm} on a machine that reaches PyPI and commit the file`);
  }
  checkLock(spec.vllm, lock);
  const lockPath = `${VLLM_VENV}-requirements/${spec.vllm}.txt`;
  return [
    ensurePackages(["python3-venv", "python3-dev", "gcc"]),
    writeFileIfChanged(lockPath, lock),
    `venv="$R"${shellQuote(VLLM_VENV)}`,
    `v=${shellQuote(spec.vllm)}`,
    `if [ ! -x "$venv/bin/pip" ]; then python3 -m venv "$venv"; echo ${shellQuote(`changed venv ${VLLM_VENV}`)}; fi`,
    `have="$("$venv/bin/pip" show vllm 2>/dev/null | sed -n 's/^Version: //p' || true)"`,
    // --no-deps: the lock is the whole resolved set, so pip installs exactly it and resolves nothing itself.
    `if [ "$have" != "$v" ]; then "$venv/bin/pip" install --no-cache-dir --require-hashes --no-deps -r "$R"${shellQuote(lockPath)}; echo "changed vllm $v"; fi`,
  ].join("\n");
}

/** The layer's setup script, to run inside the container (see renderInContainer). */
export function renderLayer(spec: LayerSpec): string {
  const body = spec.layer === "base" ? renderBase(spec) : spec.layer === "cuda" ? renderCuda(spec) : renderVllm(spec);
  return renderScript(`${INSTALLED_FN}\n${body}`);
}

/**
 * Run last, just before the template is stopped, so its clones start clean: an empty machine-id
 * makes systemd give each clone its own at first boot (DHCP client ids and journals derive from
 * it), and the package cache is not copied into every clone. Unlike the layers it changes
 * something every time, because every boot of the build container sets a machine-id.
 */
export function renderSeal(): string {
  return renderScript(`
if [ -s "$R/etc/machine-id" ]; then : > "$R/etc/machine-id"; fi
${APT_GET} clean
`);
}

const CT_DELIMITER = "PHOENIX_CT_EOF";

/**
 * A node-side script that runs `script` in container `vmid` with `pct exec`, fed on stdin. As in
 * runScript, the script is a function called with stdin from /dev/null, so bash has read all of
 * it before apt or an installer could read (and swallow) the rest.
 */
export function renderInContainer(vmid: number, script: string): string {
  if (script.split("\n").includes(CT_DELIMITER)) throw new Error(`container ${vmid}: script contains the heredoc delimiter line ${CT_DELIMITER}`);
  return ["set -euo pipefail", `pct exec ${vmid} -- bash -s <<'${CT_DELIMITER}'`, "phoenix_layer() {", script, "}", "phoenix_layer </dev/null", CT_DELIMITER, ""].join("\n");
}
