/** Pure planning for IOMMU/vfio host preparation: kernel arguments, modules, which ids vfio-pci claims. */

export type CpuVendor = "intel" | "amd";
export type GpuMode = "vm-passthrough" | "lxc-shared";

export interface GpuDeclaration {
  /** A label for messages, e.g. `rtx5090-vm`. */
  name: string;
  mode: GpuMode;
  /** `vendor:device` of every function of the card (GPU and its HDMI audio), e.g. `10de:2b85`. */
  ids: string[];
}

export const PCI_ID = /^[0-9a-f]{4}:[0-9a-f]{4}$/;

export function cpuVendorOf(vendorId: string): CpuVendor {
  if (vendorId === "GenuineIntel") return "intel";
  if (vendorId === "AuthenticAMD") return "amd";
  throw new Error(`unsupported CPU vendor "${vendorId}" in /proc/cpuinfo: IOMMU arguments are known only for Intel and AMD`);
}

/**
 * What the kernel needs on its command line for passthrough. pve-docs qm-pci-passthrough.adoc
 * (9.1.3): "With AMD CPUs IOMMU is enabled by default. With recent kernels (6.8 or newer), this
 * is also true for Intel CPUs", so `intel_iommu=on` only before 6.8, or to undo an
 * `intel_iommu=` of another value already on the line; never `amd_iommu=on`, which is no valid
 * value. `iommu=pt` (passthrough mode) is kept for every host.
 */
export function iommuArgs(vendor: CpuVendor, kernelRelease: string, configured = ""): string[] {
  const intelSet = configured.trim().split(/\s+/).find((a) => keyOf(a) === "intel_iommu");
  const intelOn = vendor === "intel" && (!kernelAtLeast(kernelRelease, 6, 8) || (intelSet !== undefined && intelSet !== "intel_iommu=on"));
  return [...(intelOn ? ["intel_iommu=on"] : []), "iommu=pt"];
}

function keyOf(arg: string): string {
  const i = arg.indexOf("=");
  return i < 0 ? arg : arg.slice(0, i);
}

/**
 * Adds `wanted` to a kernel command line: an argument already present with another value is
 * changed where it stands (so `intel_iommu=off` becomes `=on`), everything else is kept in
 * order, nothing is duplicated.
 */
export function mergeKernelArgs(existing: string, wanted: string[]): string {
  const args = existing.trim().split(/\s+/).filter(Boolean);
  for (const w of wanted) {
    const i = args.findIndex((a) => keyOf(a) === keyOf(w));
    if (i < 0) args.push(w);
    else args[i] = w;
  }
  return args.join(" ");
}

export function missingKernelArgs(cmdline: string, wanted: string[]): string[] {
  const args = new Set(cmdline.trim().split(/\s+/));
  return wanted.filter((w) => !args.has(w));
}

const GRUB_LINE = /^GRUB_CMDLINE_LINUX_DEFAULT=(?:"([^"]*)"|'([^']*)'|(\S*))\s*$/;

/** The arguments GRUB passes by default, from /etc/default/grub. */
export function grubDefaultArgs(grubDefault: string): string {
  for (const line of grubDefault.split("\n")) {
    const m = GRUB_LINE.exec(line);
    if (m) return m[1] ?? m[2] ?? m[3] ?? "";
  }
  return "";
}

/** Rewrites only the GRUB_CMDLINE_LINUX_DEFAULT line (appending one if absent). */
export function setGrubDefaultArgs(grubDefault: string, wanted: string[]): string {
  const lines = grubDefault.replace(/\n$/, "").split("\n");
  const i = lines.findIndex((l) => GRUB_LINE.test(l));
  const merged = `GRUB_CMDLINE_LINUX_DEFAULT="${mergeKernelArgs(grubDefaultArgs(grubDefault), wanted)}"`;
  if (i < 0) lines.push(merged);
  else lines[i] = merged;
  return lines.join("\n") + "\n";
}

/** `6.8.12-4-pve` ≥ 6.2? */
export function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) throw new Error(`cannot read the kernel version from uname -r output "${release}"`);
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

/** vfio_virqfd was folded into vfio in 6.2; listing it there makes systemd-modules-load fail. */
export function vfioModules(release: string): string[] {
  return ["vfio", "vfio_iommu_type1", "vfio_pci", ...(kernelAtLeast(release, 6, 2) ? [] : ["vfio_virqfd"])];
}

export interface VfioPlan {
  /** Claimed by vfio-pci at boot: every function of every vm-passthrough GPU. */
  vfioIds: string[];
  /** Left to the host driver for containers. */
  sharedIds: string[];
}

/**
 * vfio-pci binds by vendor:device id, so it cannot tell two cards of one model apart: an id
 * both passed through and shared would take the shared card away from the containers.
 */
export function planVfio(gpus: GpuDeclaration[]): VfioPlan {
  const pick = (mode: GpuMode) => [...new Set(gpus.filter((g) => g.mode === mode).flatMap((g) => g.ids.map((i) => i.toLowerCase())))].sort();
  const vfioIds = pick("vm-passthrough");
  const sharedIds = pick("lxc-shared");
  const both = vfioIds.filter((i) => sharedIds.includes(i));
  if (both.length) {
    const names = gpus.filter((g) => g.ids.some((i) => both.includes(i.toLowerCase()))).map((g) => `${g.name} (${g.mode})`);
    throw new Error(
      `GPUs ${names.join(", ")} share PCI id(s) ${both.join(", ")}: vfio-pci binds by id and would take every card of that model. ` +
        "Give same-model cards the same mode, or pass the VM one through by PCI address instead",
    );
  }
  return { vfioIds, sharedIds };
}

/**
 * vfio-pci gets the declared ids; `softdep … pre: vfio-pci` makes it load before the GPU and
 * audio drivers so it claims those devices first. No driver is blacklisted: the same nvidia
 * driver keeps serving the cards shared with containers.
 */
export function renderVfioModprobeConf(vfioIds: string[]): string {
  return [
    "# Managed by Phoenix: GPUs declared vm-passthrough are claimed by vfio-pci.",
    `options vfio-pci ids=${vfioIds.join(",")}`,
    "softdep nvidia pre: vfio-pci",
    "softdep nouveau pre: vfio-pci",
    "softdep snd_hda_intel pre: vfio-pci",
    "",
  ].join("\n");
}

export function readVfioIds(conf: string | undefined): string[] {
  const m = /^options\s+vfio-pci\s+.*\bids=(\S+)/m.exec(conf ?? "");
  return m ? m[1]!.split(",").sort() : [];
}

export function renderModulesLoadConf(modules: string[]): string {
  return ["# Managed by Phoenix: vfio for GPUs passed through to VMs.", ...modules, ""].join("\n");
}

/** Module names after `blacklist` that would take the host driver away from shared GPUs. */
export const NVIDIA_HOST_MODULES = ["nvidia", "nvidia_drm", "nvidia_modeset", "nvidia_uvm", "nvidia-drm", "nvidia-modeset", "nvidia-uvm"];
