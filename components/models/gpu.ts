/**
 * Which GPU an engine uses inside its container.
 *
 * The container gets /dev/nvidia<N> of its own GPUs only (components/guest/gpu.ts),
 * so inside it the driver enumerates just those. Each engine still picks devices
 * by index, and two numberings are in play:
 * - CUDA's: without CUDA_DEVICE_ORDER=PCI_BUS_ID it puts the fastest device first,
 *   not the one nvidia-smi calls 0 (CUDA C Programming Guide, "CUDA Environment
 *   Variables": CUDA_DEVICE_ORDER FASTEST_FIRST default / PCI_BUS_ID).
 * - NVML's, which vLLM uses for device properties: "NVML is not affected by
 *   CUDA_VISIBLE_DEVICES, all the related functions work on real physical device
 *   ids" (vllm/platforms/cuda.py, NVML utils), and it maps CUDA device i to NVML
 *   index int(CUDA_VISIBLE_DEVICES.split(",")[i]) (vllm/platforms/interface.py
 *   device_id_to_physical_device_id; unverified at the v0.11.0 tag itself: read
 *   from the stored versions around it). NVML numbers devices in PCI bus order.
 * So every engine's unit sets CUDA_DEVICE_ORDER=PCI_BUS_ID and CUDA_VISIBLE_DEVICES
 * to the in-container indices of its GPUs (0..n-1 in bus order): CUDA, NVML and
 * vLLM then agree. Ollama reads CUDA_VISIBLE_DEVICES too (ollama@v0.12.6
 * envconfig/config.go; discover/runner.go filters each runner with it), and
 * llama.cpp's CUDA backend inherits it from the CUDA runtime.
 *
 * The install checks, inside the guest and before the engine starts, that
 * nvidia-smi lists exactly the declared GPUs in that order: the indices above
 * then name exactly the engine's GPUs.
 */
import { shQuote } from "../render/files";
import type { ModelServerSpec } from "./server";

export function gpuEnvironment(spec: Pick<ModelServerSpec, "gpus">): Record<string, string> {
  if (spec.gpus.length === 0) return {};
  return { CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: spec.gpus.map((_, i) => String(i)).join(",") };
}

/** "0000:01:00.0" and nvidia-smi's "00000000:01:00.0" both become "0:01:00.0". */
function normalPci(pci: string): string {
  const [domain = "0", ...rest] = pci.toLowerCase().split(":");
  return [parseInt(domain, 16).toString(16), ...rest].join(":");
}

/** Shell lines for the install script: fail unless nvidia-smi in the guest lists exactly the spec's GPUs, in order. */
export function renderGpuViewCheck(spec: Pick<ModelServerSpec, "gpus" | "vmid">): string {
  if (spec.gpus.length === 0) return "";
  const want = spec.gpus.map((g) => normalPci(g.pci)).join(" ");
  return `# The unit's CUDA_VISIBLE_DEVICES counts on this guest seeing exactly its GPUs, in PCI bus order.
gpus_seen=$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader | tr 'A-F' 'a-f' | sed -E 's/^0*([0-9a-f]+):/\\1:/' | paste -sd ' ' -)
if [ "$gpus_seen" != ${shQuote(want)} ]; then
  echo "guest ${spec.vmid}: nvidia-smi sees GPUs [$gpus_seen], expected exactly [${want}]: check the container's /dev/nvidia* entries" >&2
  exit 1
fi`;
}
