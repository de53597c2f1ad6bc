/**
 * A compose host's cloud-init user data: the Docker host's (components/docker/cloud-init.ts, Docker
 * pinned from its repository) plus, with `nvidia`, the driver, CUDA and the NVIDIA container toolkit
 * for the GPU passed through to the VM, and the VM's Docker stacks started with `docker compose`.
 * node_exporter, Alloy and the GPU exporter come later through the guest agent, once cloud-init
 * (and so the driver) is done (components/observability/vm-agents.ts).
 * It holds no secret: validation refuses secretEnv on a compose host, the Tailscale key arrives
 * later through the guest agent (components/tailscale).
 *
 * Upstream pins:
 * - the driver from Ubuntu's restricted archive (signed by Ubuntu's archive key the image trusts):
 *   nvidia-driver-<branch>-open, e.g. 580.173.02-0ubuntu0.24.04.1 in noble-updates (packages.ubuntu.com);
 * - CUDA from NVIDIA's repository for ubuntu2404 (providers/template/layers.ts CUDA_REPO), signed by
 *   key 3bf863cc.pub, fingerprint EB693B3035CD5710E231E123A4B469963BF863CC ("cudatools
 *   <cudatools@nvidia.com>", as pinned by many public configurations; unverified against NVIDIA's page);
 * - nvidia-container-toolkit from https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH),
 *   key https://nvidia.github.io/libnvidia-container/gpgkey, fingerprint
 *   C95B321B61E88C1809C4F759DDCAE044F796ECB0 (NVIDIA's install guide fetches that key; the
 *   fingerprint is the one public configurations pin, unverified against NVIDIA's page); then
 *   `nvidia-ctk runtime configure --runtime=docker` and a Docker restart, as that guide says.
 */
import * as pulumi from "@pulumi/pulumi";
import { renderVmUserData } from "../docker/cloud-init";
import { NodeFile } from "../../providers/host/node-file";
import { shellQuote } from "../../providers/ssh/script";
import { APT_GET, aptGetUpdate } from "../../providers/ssh/apt";
import type { SshConnection } from "../../providers/ssh";
import { snippetStorage } from "../../stacks/plan";
import type { StackConfig, VmGuest } from "../../stacks/schema";
import type { RenderedFile } from "../render/files";

export const CUDA_APT_KEY_FINGERPRINT = "EB693B3035CD5710E231E123A4B469963BF863CC";
export const NVIDIA_CONTAINER_TOOLKIT_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0";
const CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2404/x86_64";
const TOOLKIT_REPO = "https://nvidia.github.io/libnvidia-container";
/**
 * Pinned together: nvidia-container-toolkit depends on `nvidia-container-toolkit-base (= <its own version>)`
 * (nvidia-container-toolkit v1.17.8 packaging/debian/control, @VERSION@ filled by packaging/debian/prepare), so
 * pinning the toolkit alone leaves apt's candidate for -base at the repository's newest and the install fails.
 */
const TOOLKIT_PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base"];
export const NVIDIA_INSTALLER = "/usr/local/sbin/phoenix-nvidia-install";
/** Where a compose host's stacks live; each in its own folder with its compose file. */
export const STACKS_DIR = "/opt/phoenix/stacks";

export type GpuStack = NonNullable<Extract<NonNullable<VmGuest["role"]>, { type: "compose-host" }>["nvidia"]>;

/** A shell function that fetches a key, refuses it unless its fingerprint is the pinned one, and installs it dearmored. */
const FETCH_KEY = `fetch_key() { # url fingerprint keyring
  local tmp fpr
  tmp=$(mktemp)
  curl -fsSL -o "$tmp" "$1"
  fpr=$(gpg --show-keys --with-colons "$tmp" | awk -F: '$1 == "fpr" { print $10; exit }')
  if [ "$fpr" != "$2" ]; then echo "repository key $1 has fingerprint $fpr, not the pinned $2" >&2; rm -f "$tmp"; exit 1; fi
  gpg --dearmor --yes -o "$3" "$tmp"
  rm -f "$tmp"
}`;

/** The script the user data runs once: driver, CUDA and the container toolkit at their pinned versions, held. */
export function renderNvidiaInstall(n: GpuStack): string {
  const cudaPackage = `cuda-toolkit-${n.cuda.replace(".", "-")}`;
  const driver = `nvidia-driver-${n.branch}-open`;
  return `#!/usr/bin/env bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
${FETCH_KEY}
fetch_key ${shellQuote(`${CUDA_REPO}/3bf863cc.pub`)} ${CUDA_APT_KEY_FINGERPRINT} /usr/share/keyrings/cuda-archive-keyring.gpg
printf '%s\\n' ${shellQuote(`deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] ${CUDA_REPO}/ /`)} > /etc/apt/sources.list.d/cuda.list
fetch_key ${shellQuote(`${TOOLKIT_REPO}/gpgkey`)} ${NVIDIA_CONTAINER_TOOLKIT_KEY_FINGERPRINT} /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
printf '%s\\n' ${shellQuote(`deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] ${TOOLKIT_REPO}/stable/deb/amd64 /`)} > /etc/apt/sources.list.d/nvidia-container-toolkit.list
${aptGetUpdate("-q")}
${APT_GET} install -y -q ${shellQuote(`${driver}=${n.driver}`)} ${cudaPackage} ${TOOLKIT_PACKAGES.map((p) => shellQuote(`${p}=${n.containerToolkit}`)).join(" ")}
apt-mark hold ${driver} ${cudaPackage} ${TOOLKIT_PACKAGES.join(" ")}
nvidia-ctk runtime configure --runtime=docker
systemctl restart docker
modprobe nvidia || echo "nvidia: the module loads at the next boot" >&2
`;
}

export interface ComposeHostUserDataArgs {
  config: StackConfig;
  guest: VmGuest;
  /** SSH to the node that holds the snippet storage. */
  connection: pulumi.Input<SshConnection>;
  caRootPem: pulumi.Input<string>;
  /** A compose file named by the stack, read from the project. */
  projectFile: (file: string, configPath: string) => string;
}

/** The user data's extra files and commands: the NVIDIA installer, each stack's compose file and env, then `docker compose up`. */
export function composeHostParts(a: Omit<ComposeHostUserDataArgs, "connection" | "caRootPem">): { files: RenderedFile[]; run: string[][] } {
  const { guest: g } = a;
  const i = a.config.guests.indexOf(g);
  const role = g.role?.type === "compose-host" ? g.role : undefined;
  const files: RenderedFile[] = [];
  const run: string[][] = [];
  if (role?.nvidia) {
    files.push({ path: NVIDIA_INSTALLER, content: renderNvidiaInstall(role.nvidia), mode: "0755" });
    run.push([NVIDIA_INSTALLER]);
  }
  g.dockerStacks.forEach((s, k) => {
    const dir = `${STACKS_DIR}/${s.name}`;
    files.push({ path: `${dir}/compose.yaml`, content: a.projectFile(s.compose, `guests[${i}].dockerStacks[${k}].compose`), mode: "0644" });
    // docker compose reads .env beside the compose file; values are quoted for it as JSON strings are.
    files.push({ path: `${dir}/.env`, content: Object.entries(s.env).map(([k2, v]) => `${k2}=${JSON.stringify(v)}\n`).join(""), mode: "0600" });
    run.push(["docker", "compose", "--project-directory", dir, "--project-name", s.name, "up", "-d"]);
  });
  return { files, run };
}

export function composeHostUserData(name: string, a: ComposeHostUserDataArgs, opts: pulumi.CustomResourceOptions): { file: NodeFile; fileId: string } {
  const { config, guest: g } = a;
  const store = snippetStorage(config.host)!;
  const { files, run } = composeHostParts(a);
  const file = `phoenix-vm-${g.vmid}.yaml`;
  const content = pulumi.output(a.caRootPem).apply((caRootPem) => renderVmUserData(config, g, caRootPem, { files, run }));
  return {
    file: new NodeFile(name, { node: config.host.node ?? config.proxmox.nodes[0]!.name, connection: a.connection, path: `${store.dir}/snippets/${file}`, mode: "0640", content }, opts),
    fileId: `${store.id}:snippets/${file}`,
  };
}
