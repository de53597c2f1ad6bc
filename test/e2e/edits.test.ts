/**
 * Edits that must not destroy anything on the node, applied to the dev stack end to end (its pool
 * made a mirror, so disks can be reordered). Each scenario counts the destructive host commands
 * (zpool destroy, zfs destroy, wipefs -a, nvidia-uninstall) and reads Phoenix's own files back:
 * none may run or vanish unless the scenario allows it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RawStack } from "../../stacks/load";
import { destructiveCalls, zfsAndDriverWrites } from "../rig/destructive";
import { DEV_FILE } from "../stacks/fixtures";
import { changed, edited, failuresOf, loadProgram } from "./support";
import { startWorld, type World } from "./world";

const DISK_1 = "/dev/disk/by-id/nvme-SIM_NVME_0001";
const DISK_2 = "/dev/disk/by-id/nvme-SIM_NVME_0002";
const DISK_3 = "/dev/disk/by-id/nvme-SIM_NVME_0003";
/** What Phoenix put on the node that an undoing delete would remove. */
const PHOENIX_FILES = ["etc/modprobe.d/zfs.conf", "tank/iso/snippets/phoenix-vm-1001.yaml", "tank/iso/snippets/phoenix-vm-1002.yaml", "etc/modprobe.d/phoenix-nouveau.conf"];

// The raw stack is untyped YAML: edits reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Values = Record<string, any>;
const pool = (v: Values) => v.host.zfs.pools[0];

describe("edits that touch nothing on the node they must not", () => {
  let w: World;
  let current: RawStack;
  const files = () => Object.fromEntries(PHOENIX_FILES.map((f) => [f, w.rig.sandbox.exists(f) ? w.rig.sandbox.read(f) : undefined]));
  let before: Record<string, string | undefined>;
  /** The user-data volume each Portainer VM was created with (bpg's initialization.user_data_file_id, a force-new input). */
  const userDataIds = () => ["vm-1001", "vm-1002"].map((name) => ([...w.state.resources.values()].find((e) => e.name === name)?.inputs.initialization as { userDataFileId?: string } | undefined)?.userDataFileId);
  /** Changes to what Phoenix keeps on the node: its host resources and the VMs' user-data files. */
  const hostChanges = (r: Awaited<ReturnType<World["apply"]>>) => changed(r).filter((c) => / (host-|vm-\d+-user-data)/.test(c));
  const apply = async (edit: (v: Values) => void) => {
    current = edited(current, edit);
    w.sim.log.clear();
    w.rig.sandbox.clearCalls();
    return w.apply(current);
  };

  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000 });
    for (const d of [DISK_2, DISK_3]) {
      w.rig.sandbox.update((s) => (s.disks[d] = { signatures: [], partitions: [] }));
      w.rig.sandbox.write(d.slice(1), "");
    }
    current = edited(w.raw, (v) => Object.assign(pool(v), { topology: "mirror", disks: [DISK_1, DISK_2] }));
    const first = await w.apply(current);
    expect(failuresOf(first)).toEqual([]);
    before = files();
    expect(Object.values(before).every((c) => c !== undefined)).toBe(true);
    expect(w.rig.sandbox.state().pools.tank).toMatchObject({ vdevType: "mirror", disks: [DISK_1, DISK_2] });
  }, 180_000);
  afterAll(async () => w?.stop());

  it("the pool may now be destroyed when removed, and wipe disks when created: recorded, nothing runs", async () => {
    const r = await apply((v) => Object.assign(pool(v), { allowDestroy: true, wipeDisksOnCreate: true }));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update host-pool-tank"]);
    expect(w.rig.sandbox.calls()).toEqual([]);
  }, 60_000);

  it("the node's SSH address changes (127.0.0.1 → localhost): host resources are updated in place, nothing on the node is undone", async () => {
    const ids = userDataIds();
    const datasets = () => Object.keys(w.rig.sandbox.state().datasets).filter((d) => d.startsWith("tank/")).sort();
    const datasetsBefore = datasets();
    const r = await apply((v) => (v.proxmox.nodes[0].ssh.host = "localhost"));
    expect(failuresOf(r)).toEqual([]);
    expect(hostChanges(r).filter((c) => !c.startsWith("update "))).toEqual([]);
    expect(hostChanges(r)).toEqual(expect.arrayContaining(["update host-pool-tank", "update host-nvidia", "update host-zfs-arc", "update host-dataset-tank-iso", "update vm-1001-user-data"]));
    expect(changed(r).filter((c) => /^(replace|delete) vm-/.test(c))).toEqual([]);
    expect(destructiveCalls(w.rig.sandbox)).toEqual([]);
    expect(zfsAndDriverWrites(w.rig.sandbox)).toEqual([]);
    expect(files()).toEqual(before);
    expect(w.rig.sandbox.state().pools.tank).toMatchObject({ vdevType: "mirror", disks: [DISK_1, DISK_2] });
    expect(datasets()).toEqual(datasetsBefore);
    expect(datasetsBefore).toContain("tank/models");
    expect(w.rig.sandbox.state().nvidia.installed).toBe("580.95.05");
    expect(userDataIds()).toEqual(ids);
  }, 60_000);

  it("a pool property changes: applied with zfs set on the pool's root file system, nothing destroyed", async () => {
    const r = await apply((v) => (pool(v).properties = { compression: "lz4" }));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update host-pool-tank"]);
    expect(zfsAndDriverWrites(w.rig.sandbox)).toEqual([["zfs", "set", "compression=lz4", "tank"]]);
    expect(destructiveCalls(w.rig.sandbox)).toEqual([]);
    expect(w.rig.sandbox.state().datasets.tank).toMatchObject({ compression: "lz4" });
    expect(files()).toEqual(before);
  }, 60_000);

  it("the pool's disks are reordered: no change at all", async () => {
    const r = await apply((v) => (pool(v).disks = [DISK_2, DISK_1]));
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual([]);
    expect(w.rig.sandbox.calls()).toEqual([]);
  }, 60_000);

  it("the pool's disk set or ashift changes: refused before any call, with the manual procedure", async () => {
    const disks = await apply((v) => (pool(v).disks = [DISK_1, DISK_3]));
    expect(failuresOf(disks)).toEqual([expect.stringMatching(/host-pool-tank: ZFS pool tank on pve-dev: refusing to change it:\n- the configuration declares mirror of .*0001, .*0003 but the pool is mirror of .*0001, .*0002\. .*zpool replace tank <old disk> <new disk>/)]);
    expect(w.rig.sandbox.calls()).toEqual([]);
    const ashift = await apply((v) => Object.assign(pool(v), { disks: [DISK_1, DISK_2], ashift: 13 }));
    expect(failuresOf(ashift)).toEqual([expect.stringMatching(/host-pool-tank: [\s\S]*pool option ashift changes from 12 to 13/)]);
    expect(w.rig.sandbox.calls()).toEqual([]);
    expect(w.rig.sandbox.state().pools.tank).toMatchObject({ vdevType: "mirror", disks: [DISK_1, DISK_2], options: { ashift: "12" } });
    current = edited(current, (v) => (pool(v).ashift = 12));
  }, 60_000);

  it("another storage gains snippets content: the VMs' user-data file ids stay, no VM is replaced", async () => {
    const ids = userDataIds();
    expect(ids).toEqual(["tank-iso:snippets/phoenix-vm-1001.yaml", "tank-iso:snippets/phoenix-vm-1002.yaml"]);
    const r = await apply((v) => v.host.zfs.datasets.unshift({ pool: "tank", name: "scratch", storage: { id: "tank-scratch", type: "dir", content: ["snippets"] } }));
    expect(failuresOf(r)).toEqual([]);
    // Only the new dataset and what registers it as a storage; no VM, no user-data file.
    expect(changed(r).filter((c) => !c.startsWith("create host-storage-tank-scratch"))).toEqual(["create host-dataset-tank-scratch"]);
    expect(changed(r)).toContain("create host-storage-tank-scratch");
    expect(userDataIds()).toEqual(ids);
    expect(destructiveCalls(w.rig.sandbox)).toEqual([]);
    expect(files()).toEqual(before);
  }, 60_000);
});
