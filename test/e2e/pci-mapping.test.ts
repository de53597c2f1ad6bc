/**
 * The harness's translation of hardware.mapping.PciLegacy (the vm-passthrough GPUs' mapping),
 * run against the simulator: created, updated and deleted the way bpg v0.111.1 does it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPveClient, type PveApi } from "../../providers/pve";
import { startSimulator, type Simulator } from "../pve-sim/server";
import type { StateEntry } from "./engine";
import { proxmoxTranslations, TYPES } from "./translations";

describe("PCI mapping translation (vm-passthrough GPUs)", () => {
  let sim: Simulator;
  let api: PveApi;
  beforeAll(async () => {
    sim = await startSimulator({ timing: { taskDurationMs: 5 }, seed: "prod", nodeName: "pve" });
    api = createPveClient({ endpoint: sim.endpoint, auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret }, tls: { caPem: sim.caPem } });
  });
  afterAll(async () => {
    api?.close();
    await sim?.stop();
  });

  const inputs = { name: "phoenix-gpu-1", comment: "RTX 4090 (0000:41:00.0), passed through by Phoenix", maps: [{ node: "pve", path: "0000:41:00.0", id: "10de:2684", iommuGroup: 32 }] };

  it("creates the mapping with bpg's map entry, updates its comment in place, and deletes it", async () => {
    const t = proxmoxTranslations(api)[TYPES.pciMapping]!;
    const { id, outputs } = await t.create(inputs);
    expect(id).toBe("phoenix-gpu-1");
    expect(outputs).toMatchObject({ id: "phoenix-gpu-1", description: inputs.comment, map: ["id=10de:2684,node=pve,path=0000:41:00.0,iommugroup=32"] });
    const entry = { type: TYPES.pciMapping, name: "host-pci-gpu-1", id, inputs, outputs, dependencies: [] } as unknown as StateEntry;
    const updated = await t.update(entry, { ...inputs, comment: undefined });
    expect(updated.description).toBeUndefined();
    expect(await t.read(entry)).toMatchObject({ map: ["id=10de:2684,node=pve,path=0000:41:00.0,iommugroup=32"] });
    await t.delete(entry);
    expect(await t.read(entry)).toBeUndefined();
    expect(sim.state.mappings.size).toBe(0);
  });
});
