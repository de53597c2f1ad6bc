import { describe, expect, it } from "vitest";
import { expectedGpuView, gpuDevices, samePciAddress } from "../../components/guest/gpu";
import type { Gpu } from "../../stacks/schema";

const declared: Gpu[] = [
  { id: 0, pci: "0000:01:00.0", model: "RTX 5060 Ti", memoryGiB: 16, mode: "lxc-shared" },
  { id: 1, pci: "0000:02:00.0", model: "RTX 5060 Ti", memoryGiB: 16, mode: "lxc-shared" },
];
// The host enumerates the cards in the other order: config id 1 is /dev/nvidia0.
const host = {
  driverVersion: "580.95.05",
  gpus: [
    { index: 0, minor: 0, busId: "00000000:02:00.0" },
    { index: 1, minor: 1, busId: "00000000:01:00.0" },
  ],
  deviceNodes: [
    { path: "/dev/nvidia0", major: 195 },
    { path: "/dev/nvidia1", major: 195 },
    { path: "/dev/nvidiactl", major: 195 },
    { path: "/dev/nvidia-uvm", major: 509 },
    { path: "/dev/nvidia-uvm-tools", major: 509 },
    { path: "/dev/nvidia-caps/nvidia-cap1", major: 235 },
  ],
};

describe("gpuDevices", () => {
  it("passes exactly the assigned GPU, found by PCI address, plus the shared nodes", () => {
    expect(gpuDevices("CT 802", [0], declared, host).map((d) => d.path)).toEqual([
      "/dev/nvidia1",
      "/dev/nvidiactl",
      "/dev/nvidia-uvm",
      "/dev/nvidia-uvm-tools",
      "/dev/nvidia-caps/nvidia-cap1",
    ]);
    expect(gpuDevices("CT 914", [1], declared, host)[0]).toEqual({ path: "/dev/nvidia0", gid: 44, mode: "0666" });
  });

  it("gives a guest without GPUs no device at all", () => {
    expect(gpuDevices("CT 101", [], declared, host)).toEqual([]);
  });

  it("fails naming the guest when the driver does not report the GPU", () => {
    expect(() => gpuDevices("CT 802", [0], declared, { ...host, gpus: [{ index: 0, minor: 0, busId: "00000000:02:00.0" }] })).toThrow(
      "CT 802: GPU 0 (0000:01:00.0) is not among the GPUs the host driver reports (00000000:02:00.0)",
    );
  });

  it("fails when a control node is missing instead of starting a guest that cannot use CUDA", () => {
    const noUvm = { ...host, deviceNodes: host.deviceNodes.filter((n) => !n.path.startsWith("/dev/nvidia-uvm")) };
    expect(() => gpuDevices("CT 802", [0], declared, noUvm)).toThrow("CT 802: the host has no /dev/nvidia-uvm");
  });

  it("compares PCI addresses across the nvidia-smi and lspci spellings", () => {
    expect(samePciAddress("00000000:01:00.0", "0000:01:00.0")).toBe(true);
    expect(samePciAddress("00000000:01:00.1", "0000:01:00.0")).toBe(false);
  });
});

describe("expectedGpuView", () => {
  it("expects the bus ids of exactly the assigned GPUs and the host's driver version", () => {
    expect(expectedGpuView("CT 802", [0], declared, host)).toEqual({ busIds: ["00000000:01:00.0"], driverVersion: "580.95.05" });
    expect(expectedGpuView("CT 101", [], declared, host)).toBeUndefined();
  });
});
