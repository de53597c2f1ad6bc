/**
 * The device nodes a GPU container gets: /dev/nvidia<N> of exactly its GPUs
 * plus the driver's shared control nodes. Everything is read from what the
 * host driver reports, so nothing depends on a hard-coded major or on the
 * order the host enumerates the cards in. N is the device minor the kernel
 * module assigned, which need not be nvidia-smi's index (NVIDIA/nvidia-docker#1432:
 * "Minor number is the actual minor number associated with the GPU device
 * registered with the kernel ... the number appended to the file name for each
 * device"; "index" is NVML's order, "not 100% guaranteed" to be the same).
 */
import type { Gpu } from "../../stacks/schema";

/** What the host NVIDIA driver resource reports (providers/host/nvidia-driver). */
export interface HostGpuInfo {
  /** `minor` is the "Device Minor" of /proc/driver/nvidia/gpus/<bus>/information: the N of /dev/nvidiaN. */
  gpus: { index: number; minor: number; busId: string }[];
  deviceNodes: { path: string; major: number }[];
  /** The driver version installed on the host; a guest's user-space must match it. */
  driverVersion: string;
}

export interface GuestDevice {
  path: string;
  /** Group owning the node inside the guest: video (44) on Ubuntu, which CUDA's user-space expects. */
  gid: number;
  mode: string;
}

export const VIDEO_GID = 44;
const SHARED_NODES = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

/** "00000000:01:00.0" (nvidia-smi) and "0000:01:00.0" (lspci) name the same function. */
export function samePciAddress(a: string, b: string): boolean {
  const norm = (x: string) => {
    const [domain, bus, rest] = x.toLowerCase().split(":");
    return `${parseInt(domain ?? "0", 16)}:${bus}:${rest}`;
  };
  return norm(a) === norm(b);
}

export function gpuDevices(guest: string, assigned: readonly number[], declared: readonly Gpu[], host: HostGpuInfo): GuestDevice[] {
  if (assigned.length === 0) return [];
  const present = new Set(host.deviceNodes.map((n) => n.path));
  const need = (path: string, why: string): GuestDevice => {
    if (!present.has(path)) throw new Error(`${guest}: the host has no ${path} (${why}); check the NVIDIA driver on the host (nvidia-smi, nvidia-persistenced) before giving this guest GPUs`);
    return { path, gid: VIDEO_GID, mode: "0666" };
  };
  const perGpu = [...assigned].sort((a, b) => a - b).map((id) => {
    const gpu = declared.find((g) => g.id === id);
    const reported = gpu && host.gpus.find((g) => samePciAddress(g.busId, gpu.pci));
    if (!gpu || !reported) throw new Error(`${guest}: GPU ${id} (${gpu?.pci ?? "undeclared"}) is not among the GPUs the host driver reports (${host.gpus.map((g) => g.busId).join(", ") || "none"})`);
    return need(`/dev/nvidia${reported.minor}`, `GPU ${id}`);
  });
  const caps = host.deviceNodes.filter((n) => n.path.startsWith("/dev/nvidia-caps/")).map((n) => need(n.path, "MIG capabilities"));
  return [...perGpu, ...SHARED_NODES.map((p) => need(p, "driver control node")), ...caps];
}

/** What nvidia-smi inside the guest must report: exactly its GPUs, on the host's driver version. */
export function expectedGpuView(guest: string, assigned: readonly number[], declared: readonly Gpu[], host: HostGpuInfo): { busIds: string[]; driverVersion: string } | undefined {
  if (assigned.length === 0) return undefined;
  const busIds = [...assigned].sort((a, b) => a - b).map((id) => {
    const gpu = declared.find((g) => g.id === id);
    const reported = gpu && host.gpus.find((g) => samePciAddress(g.busId, gpu.pci));
    if (!reported) throw new Error(`${guest}: GPU ${id} is not among the GPUs the host driver reports`);
    return reported.busId;
  });
  return { busIds, driverVersion: host.driverVersion };
}
