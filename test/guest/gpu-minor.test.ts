import { describe, expect, it } from "vitest";
import { gpuDevices } from "../../components/guest/gpu";
import { parseGpuRows } from "../../providers/host/nvidia.scripts";
import type { Gpu } from "../../stacks/schema";

// NVIDIA/nvidia-docker#1432: /dev/nvidia<N> is the device minor; nvidia-smi's index is NVML's order and may differ.
const declared: Gpu[] = [
  { id: 0, pci: "0000:01:00.0", model: "RTX 5060 Ti", memoryGiB: 16, mode: "lxc-shared" },
  { id: 1, pci: "0000:02:00.0", model: "RTX 5060 Ti", memoryGiB: 16, mode: "lxc-shared" },
];

describe("GPU device paths by minor number", () => {
  it("reads each GPU's minor from /proc/driver/nvidia/gpus/<bus>/information, joined by bus id", () => {
    const rows = ["0, 00000000:01:00.0, NVIDIA GeForce RTX 5060 Ti, 16311, 580.95.05", "1, 00000000:02:00.0, NVIDIA GeForce RTX 5060 Ti, 16311, 580.95.05"];
    const { gpus } = parseGpuRows(rows, ["0000:01:00.0 1", "0000:02:00.0 0"]);
    expect(gpus.map((g) => [g.index, g.minor, g.busId])).toEqual([
      [0, 1, "00000000:01:00.0"],
      [1, 0, "00000000:02:00.0"],
    ]);
    expect(() => parseGpuRows(rows, ["0000:01:00.0 1"])).toThrow(/GPU 00000000:02:00.0 but \/proc\/driver\/nvidia\/gpus\/0000:02:00.0\/information gives no Device Minor/);
  });

  it("gives a container /dev/nvidia<minor>, not /dev/nvidia<index>", () => {
    const host = {
      driverVersion: "580.95.05",
      gpus: [
        { index: 0, minor: 1, busId: "00000000:01:00.0" },
        { index: 1, minor: 0, busId: "00000000:02:00.0" },
      ],
      deviceNodes: ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"].map((path) => ({ path, major: 195 })),
    };
    expect(gpuDevices("CT 802", [0], declared, host)[0]!.path).toBe("/dev/nvidia1");
    expect(gpuDevices("CT 914", [1], declared, host)[0]!.path).toBe("/dev/nvidia0");
  });
});
