/**
 * Kernel-upgrade preflight: every kernel installed on the node (what a reboot may pick) must have
 * the pinned NVIDIA driver's DKMS module built, or the GPUs come up without a driver after the
 * reboot (NVIDIA/open-gpu-kernel-modules#1143: 550/555 DKMS fails to build on 6.17-pve). Pure but
 * for the command, which the doctor runs on the node.
 */
import { kernelsWithoutModule } from "../../providers/host/nvidia.scripts";
import type { ExecResult } from "./channels";
import type { Diagnosis, Finding } from "./diagnose";

/** Prints `bootkernel <release>` per installed kernel image and `dkms <status line>` per built module. */
export const KERNEL_MODULE_COMMAND =
  'R="${PHOENIX_ROOT:-}"; for f in "$R"/boot/vmlinuz-*; do [ -e "$f" ] && echo "bootkernel ${f##*/vmlinuz-}"; done; dkms status -m nvidia 2>/dev/null | sed "s/^/dkms /"; true';

export interface KernelModuleCheck {
  finding: Finding;
  diagnosis?: Diagnosis;
}

export function kernelModuleCheck(version: string, res: ExecResult): KernelModuleCheck {
  const lines = res.stdout.split("\n");
  const pick = (key: string) => lines.filter((l) => l.startsWith(`${key} `)).map((l) => l.slice(key.length + 1));
  const kernels = pick("bootkernel");
  const dkms = pick("dkms");
  const base = { service: "node", layer: "host" as const, check: "nvidia-dkms" };
  if (res.code !== 0 || kernels.length === 0) return { finding: { ...base, status: "fail", failure: "probe-error", detail: `no installed kernel found under /boot (exit ${res.code}): ${res.stderr.trim()}` } };
  // Registered with DKMS: "nvidia/<v>, <kernel>, <arch>: installed" once built, "nvidia/<v>: added" before.
  if (!dkms.some((l) => l.startsWith(`nvidia/${version},`) || l.startsWith(`nvidia/${version}:`))) {
    return { finding: { ...base, status: "warn", detail: `DKMS has no nvidia ${version} module yet; pulumi up installs the driver` } };
  }
  const missing = kernelsWithoutModule(kernels, dkms, version);
  if (missing.length === 0) return { finding: { ...base, status: "ok", detail: `nvidia ${version} is built for every installed kernel (${kernels.join(", ")})` } };
  const detail = `nvidia ${version} is not built for installed kernel(s) ${missing.join(", ")}: rebooting into one leaves the GPUs without a driver`;
  return {
    finding: { ...base, status: "fail", failure: "kernel-module-missing", detail },
    diagnosis: {
      ...base,
      detail,
      failure: "kernel-module-missing",
      hints: [
        `before rebooting: dkms install -m nvidia -v ${version} -k <kernel> on the node (the build log is under /var/lib/dkms/nvidia/${version}/), then dkms status -m nvidia`,
        "if it does not build, pin a driver version that supports that kernel (host.nvidiaDriver.version) or keep booting the current kernel: proxmox-boot-tool kernel pin <running kernel>",
      ],
    },
  };
}
