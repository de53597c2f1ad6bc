import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gpuCards, implementation, type GpuFunctionsInputs } from "../../providers/hardware/gpu-functions";
import { startSimulator, type Simulator } from "../pve-sim/server";

let sim: Simulator;
let inputs: GpuFunctionsInputs;

beforeAll(async () => {
  sim = await startSimulator({ timing: { taskDurationMs: 5 } });
  inputs = { api: { endpoint: sim.endpoint, tokenId: sim.token.id, tokenSecret: sim.token.secret, caPem: sim.caPem }, node: "pve", addresses: ["0000:41:00.0", "0000:01:00.0"] };
});
afterAll(() => sim.stop());

describe("GpuFunctions against the simulator", () => {
  it("reads each card's functions and IOMMU group from the node's PCI listing", async () => {
    const { id, outs } = await implementation.create(inputs);
    expect(id).toBe("pve/gpus");
    expect(outs.cards).toEqual([
      { address: "0000:41:00.0", iommuGroup: 32, functions: [{ path: "0000:41:00.0", id: "10de:2684" }, { path: "0000:41:00.1", id: "10de:22ba" }] },
      { address: "0000:01:00.0", iommuGroup: 14, functions: [{ path: "0000:01:00.0", id: "10de:2204" }, { path: "0000:01:00.1", id: "10de:1aef" }] },
    ]);
    // a pure read: nothing was written to the node
    expect(sim.log.mutating()).toHaveLength(0);
  });

  it("fails naming a GPU the node does not have", async () => {
    await expect(implementation.create({ ...inputs, addresses: ["0000:09:00.0"] })).rejects.toThrow("GPU 0000:09:00.0 is not in node pve's PCI listing");
  });

  it("lets preview unknowns through check and rejects a malformed address", async () => {
    const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
    expect((await implementation.check({}, { ...inputs, addresses: unknown })).failures).toEqual([]);
    const bad = await implementation.check({}, { ...inputs, addresses: ["01:00.0"] });
    expect(bad.failures?.map((f) => f.property)).toEqual(["addresses[0]"]);
  });
});

describe("gpuCards", () => {
  it("puts the GPU function first even when its audio function sorts before it", () => {
    const devices = [
      { id: "0000:05:00.1", class: "0x040300", vendor: "0x10de", device: "0x22eb", iommugroup: 3 },
      { id: "0000:05:00.0", class: "0x030000", vendor: "0x10de", device: "0x2d04", iommugroup: 3 },
    ];
    expect(gpuCards("n", devices, ["0000:05:00.0"])[0]?.functions.map((f) => f.id)).toEqual(["10de:2d04", "10de:22eb"]);
  });
});
