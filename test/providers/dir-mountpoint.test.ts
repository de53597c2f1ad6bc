import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { implementation, type DirMountpointInputs, type DirMountpointOutputs } from "../../providers/storage/dir-mountpoint";
import { startSimulator, type Simulator } from "../pve-sim/server";

let sim: Simulator;
let inputs: DirMountpointInputs;

beforeAll(async () => {
  sim = await startSimulator({ timing: { taskDurationMs: 5 } });
  sim.state.addStorage("tank-iso", "dir", { path: "/tank/iso", content: "iso,vztmpl" }, 100);
  inputs = { api: { endpoint: sim.endpoint, tokenId: sim.token.id, tokenSecret: sim.token.secret, caPem: sim.caPem }, storage: "tank-iso" };
});
afterAll(() => sim.stop());

describe("DirMountpoint against the simulator", () => {
  it("marks the dir storage as a mount point, once", async () => {
    const { id, outs } = await implementation.create(inputs);
    expect(id).toBe("tank-iso");
    expect(sim.state.storage("tank-iso").config).toMatchObject({ path: "/tank/iso", is_mountpoint: "yes" });
    expect((outs as DirMountpointOutputs).isMountpoint).toBe("yes");
    sim.log.clear();
    await implementation.update("tank-iso", outs as DirMountpointOutputs, inputs);
    expect(sim.log.mutating()).toEqual([]);
  });

  it("shows a hand-made removal on refresh and puts it back", async () => {
    delete sim.state.storage("tank-iso").config.is_mountpoint;
    const { props } = await implementation.read("tank-iso", { ...inputs, isMountpoint: "yes" });
    expect((await implementation.diff("tank-iso", props as DirMountpointOutputs, inputs)).changes).toBe(true);
    await implementation.update("tank-iso", props as DirMountpointOutputs, inputs);
    expect(sim.state.storage("tank-iso").config.is_mountpoint).toBe("yes");
  });

  it("refuses a storage that is not a directory", async () => {
    await expect(implementation.create({ ...inputs, storage: "local-zfs" })).rejects.toThrow("storage local-zfs is of type zfspool, not dir");
  });
});
