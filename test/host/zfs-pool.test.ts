import { rmSync, symlinkSync, writeFileSync } from "fs";
import { join } from "path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { zfsPoolProvider as provider, type ZfsPoolInputs, type ZfsPoolOutputs } from "../../providers/host/zfs-pool";
import { parsePoolStatus } from "../../providers/host/zfs.scripts";
import { destructiveCalls, zfsAndDriverWrites } from "../rig/destructive";
import { DISKS } from "../rig/sandbox";
import { startSshd, type SshRig } from "../rig/sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
  // As udev makes them: every by-id name is a link to the kernel's device, and one disk has two names.
  const link = (name: string, dev: string) => {
    rmSync(join(rig.sandbox.root, name.slice(1)), { force: true });
    symlinkSync(`../../${dev}`, join(rig.sandbox.root, name.slice(1)));
  };
  for (const dev of ["nvme0n1", "nvme1n1", "nvme2n1"]) writeFileSync(join(rig.sandbox.root, "dev", dev), "");
  link(DISKS.a, "nvme0n1");
  link(DISKS.b, "nvme1n1");
  link(DISKS.c, "nvme2n1");
  link(WWN_A, "nvme0n1");
});
afterAll(async () => {
  await rig?.stop();
});
beforeEach(() => rig.sandbox.clearCalls());

/** Another by-id name of DISKS.a. */
const WWN_A = "/dev/disk/by-id/nvme-eui.0025385b41a00001";

const inputs = (over: Partial<ZfsPoolInputs> = {}): ZfsPoolInputs => ({
  node: "pve",
  connection: rig.connection,
  name: "quickOS",
  vdevType: "mirror",
  disks: [DISKS.a, DISKS.b],
  poolOptions: { ashift: "12", autotrim: "on" },
  filesystemProperties: { compression: "lz4", atime: "off" },
  wipeDisksOnCreate: false,
  allowDestroy: false,
  ...over,
});

const writes = () => zfsAndDriverWrites(rig.sandbox);

describe("zpool status parsing", () => {
  it("maps leaf partitions back to the whole disks and names the layout", () => {
    const status = [
      "  pool: tank",
      "config:",
      "",
      "\tNAME                          STATE     READ WRITE CKSUM",
      "\ttank                          ONLINE       0     0     0",
      "\t  raidz1-0                    ONLINE       0     0     0",
      "\t    /dev/disk/by-id/b-part1   ONLINE       0     0     0",
      "\t    /dev/disk/by-id/a-part1   ONLINE       0     0     0",
      "\t    /dev/disk/by-id/c-part1   ONLINE       0     0     0",
      "\tlogs",
      "\t  /dev/disk/by-id/slog-part1  ONLINE       0     0     0",
      "",
    ];
    expect(parsePoolStatus(status)).toEqual({ vdevType: "raidz1", disks: ["/dev/disk/by-id/a", "/dev/disk/by-id/b", "/dev/disk/by-id/c"] });
    expect(parsePoolStatus(["\tNAME  STATE", "\tp  ONLINE", "\t  /dev/disk/by-id/x-part1  ONLINE"])).toEqual({ vdevType: "single", disks: ["/dev/disk/by-id/x"] });
  });
});

describe("ZfsPool provider", () => {
  let outs: ZfsPoolOutputs;

  it("check wants by-id disks in a count the layout supports, and lets unknowns through", async () => {
    const bad = await provider.check!({} as ZfsPoolInputs, { ...inputs(), disks: ["/dev/sda"] } as never);
    expect(bad.failures!.map((f) => `${f.property}: ${f.reason}`)).toEqual([
      "disks[0]: ZFS pool quickOS: disks[0] must be a /dev/disk/by-id/ path (sdX names change between boots), got \"/dev/sda\"",
      "disks: ZFS pool quickOS: mirror needs at least 2 disks, got 1",
    ]);
    expect((await provider.check!({} as ZfsPoolInputs, { ...inputs(), disks: UNKNOWN, vdevType: UNKNOWN } as never)).failures).toEqual([]);
  });

  it("creates the pool on the declared empty disks only, and records every by-id name of its disks", async () => {
    const res = await provider.create(inputs());
    outs = res.outs!;
    expect(res.id).toBe("quickOS");
    const s = rig.sandbox.state();
    expect(s.pools.quickOS).toEqual({ vdevType: "mirror", disks: [DISKS.a, DISKS.b], options: { ashift: "12", autotrim: "on" } });
    expect(s.datasets.quickOS).toEqual({ compression: "lz4", atime: "off" });
    expect(s.disks[DISKS.c]).toEqual({ signatures: [], partitions: [] });
    expect(destructiveCalls(rig.sandbox)).toEqual([]);
    expect(outs).toMatchObject({ topologyDrift: "", disks: [DISKS.a, DISKS.b], devices: { [DISKS.a]: "/dev/nvme0n1", [DISKS.b]: "/dev/nvme1n1", [WWN_A]: "/dev/nvme0n1" } });
  });

  it("a second create adopts the pool and runs no zpool create", async () => {
    expect((await provider.create(inputs())).outs).toEqual(outs);
    expect(writes()).toEqual([]);
  });

  it("create refuses an existing pool of another layout", async () => {
    await expect(provider.create(inputs({ vdevType: "single", disks: [DISKS.a] }))).rejects.toThrow(/ZFS pool quickOS already exists with another layout \(declared single of .*, found mirror of /);
  });

  it("never wipes a disk holding data unless the pool says wipeDisksOnCreate", async () => {
    await expect(provider.create(inputs({ name: "scratch", vdevType: "single", disks: [DISKS.used], allowDestroy: true }))).rejects.toThrow(
      /disk .*980_PRO.* is not empty \(signatures: gpt PMBR ; partitions: .*-part1 \); refusing to create pool scratch on it\. Wipe it yourself or set wipeDisksOnCreate: true/,
    );
    expect(rig.sandbox.state().disks[DISKS.used]!.signatures).toEqual(["gpt", "PMBR"]);
    expect(rig.sandbox.state().pools.scratch).toBeUndefined();
    const res = await provider.create(inputs({ name: "scratch", vdevType: "single", disks: [DISKS.used], wipeDisksOnCreate: true, allowDestroy: true }));
    expect(res.outs!.topologyDrift).toBe("");
    expect(destructiveCalls(rig.sandbox)).toEqual([`wipefs -a ${DISKS.used}`]);
    expect(rig.sandbox.calls("zpool").find((c) => c[1] === "create")).toEqual(["zpool", "create", "-f", "-o", "ashift=12", "-o", "autotrim=on", "-O", "compression=lz4", "-O", "atime=off", "scratch", DISKS.used]);
    await provider.delete!("scratch", res.outs!);
  });

  it("never wipes a disk of an imported pool, under any of its names, even with wipeDisksOnCreate (a pool renamed in the file)", async () => {
    await expect(provider.create(inputs({ name: "renamed", disks: [WWN_A, DISKS.c], wipeDisksOnCreate: true }))).rejects.toThrow(
      /disk .*eui\.0025385b41a00001 is in use by an imported ZFS pool .*; refusing to create pool renamed on it/,
    );
    expect(destructiveCalls(rig.sandbox)).toEqual([]);
    expect(rig.sandbox.calls("zpool").filter((c) => c[1] === "create")).toEqual([]);
    expect(rig.sandbox.state().pools.quickOS).toBeDefined();
  });

  it("refuses a disk that does not exist", async () => {
    await expect(provider.create(inputs({ name: "fastData", vdevType: "single", disks: ["/dev/disk/by-id/nvme-nothere"] }))).rejects.toThrow(/disk\(s\) \/dev\/disk\/by-id\/nvme-nothere not found on pve/);
  });

  it("another SSH address, port, user or key: an update that runs nothing on the node", async () => {
    for (const connection of [{ ...rig.connection, host: "localhost" }, { ...rig.connection, port: 2222 }, { ...rig.connection, username: "admin" }]) {
      expect(await provider.diff!("quickOS", outs, inputs({ connection }))).toEqual({ changes: true, replaces: [], deleteBeforeReplace: false });
      const res = await provider.update!("quickOS", outs, inputs({ connection }));
      expect(res.outs).toMatchObject({ connection, disks: outs.disks, devices: outs.devices });
    }
    expect(rig.sandbox.calls()).toEqual([]);
  });

  it("disks in another order, or under another by-id name of the same disk: no change", async () => {
    expect(await provider.diff!("quickOS", outs, inputs({ disks: [DISKS.b, DISKS.a] }))).toMatchObject({ changes: false });
    expect(await provider.diff!("quickOS", outs, inputs({ disks: [DISKS.b, WWN_A] }))).toMatchObject({ changes: false });
    expect(rig.sandbox.calls()).toEqual([]);
  });

  it("another disk set, layout or ashift: the diff fails with the manual procedure, before any call", async () => {
    await expect(provider.diff!("quickOS", outs, inputs({ disks: [DISKS.a, DISKS.c] }))).rejects.toThrow(
      /ZFS pool quickOS on pve: refusing to change it:\n- the configuration declares mirror of .*100001, .*100003 but the pool is mirror of .*100001, .*100002\..*Phoenix never recreates a pool; .*zpool replace quickOS <old disk> <new disk>/,
    );
    await expect(provider.diff!("quickOS", outs, inputs({ vdevType: "raidz1", disks: [DISKS.a, DISKS.b, DISKS.c] }))).rejects.toThrow(/zpool attach quickOS <member or raidz vdev> <new disk>/);
    await expect(provider.diff!("quickOS", outs, inputs({ poolOptions: { ashift: "13", autotrim: "on" } }))).rejects.toThrow(/pool option ashift changes from 12 to 13: ZFS fixes it when the pool is created; keep ashift: 12/);
    await expect(provider.diff!("quickOS", outs, inputs({ filesystemProperties: { compression: "lz4", atime: "off", casesensitivity: "insensitive" } }))).rejects.toThrow(/root file system property casesensitivity changes from \(unset\) to insensitive/);
    await expect(provider.diff!("quickOS", outs, inputs({ node: "pve2" }))).rejects.toThrow(/the node changes from pve to pve2/);
    expect(rig.sandbox.calls()).toEqual([]);
  });

  it("pool and root file system properties change in place: zpool set, zfs set, nothing destroyed", async () => {
    const next = inputs({ poolOptions: { ashift: "12", autotrim: "off" }, filesystemProperties: { compression: "zstd", atime: "off" }, allowDestroy: true, wipeDisksOnCreate: true });
    expect(await provider.diff!("quickOS", outs, next)).toEqual({ changes: true, replaces: [], deleteBeforeReplace: false });
    const res = await provider.update!("quickOS", outs, next);
    expect(writes()).toEqual([
      ["zpool", "set", "autotrim=off", "quickOS"],
      ["zfs", "set", "compression=zstd", "quickOS"],
    ]);
    expect(destructiveCalls(rig.sandbox)).toEqual([]);
    expect(rig.sandbox.state().pools.quickOS).toEqual({ vdevType: "mirror", disks: [DISKS.a, DISKS.b], options: { ashift: "12", autotrim: "off" } });
    expect(rig.sandbox.state().datasets.quickOS).toEqual({ compression: "zstd", atime: "off" });
    outs = res.outs!;
    expect(outs).toMatchObject({ poolOptions: { ashift: "12", autotrim: "off" }, filesystemProperties: { compression: "zstd", atime: "off" }, topologyDrift: "" });
    expect(await provider.diff!("quickOS", outs, next)).toMatchObject({ changes: false });
  });

  it("read: a member listed under another by-id name is the declared disk; a property changed by hand shows as drift", async () => {
    rig.sandbox.update((s) => {
      s.pools.quickOS!.disks = [WWN_A, DISKS.b];
      s.pools.quickOS!.options.autotrim = "on";
    });
    const res = await provider.read!("quickOS", outs);
    expect(res.props).toMatchObject({ vdevType: "mirror", disks: [DISKS.a, DISKS.b], topologyDrift: "", poolOptions: { ashift: "12", autotrim: "on" } });
    const back = inputs({ poolOptions: { ashift: "12", autotrim: "off" }, filesystemProperties: { compression: "zstd", atime: "off" }, allowDestroy: true });
    expect(await provider.diff!("quickOS", res.props!, back)).toMatchObject({ changes: true, replaces: [] });
    outs = (await provider.update!("quickOS", res.props!, back)).outs!;
    expect(rig.sandbox.state().pools.quickOS!.options.autotrim).toBe("off");
    expect(destructiveCalls(rig.sandbox)).toEqual([]);
  });

  it("read reports topology drift after an out-of-band change, and the diff refuses to act on it", async () => {
    rig.sandbox.update((s) => {
      s.pools.quickOS!.disks = [DISKS.a];
      s.pools.quickOS!.vdevType = "single";
    });
    const res = await provider.read!("quickOS", outs);
    expect(res.props).toMatchObject({ vdevType: "single", disks: [DISKS.a], topologyDrift: `declared mirror of ${DISKS.a}, ${DISKS.b}, found single of ${DISKS.a}` });
    await expect(provider.diff!("quickOS", res.props!, inputs({ allowDestroy: true }))).rejects.toThrow(/declares mirror of .* but the pool is single of .*zpool attach quickOS/);
    rig.sandbox.update((s) => {
      s.pools.quickOS!.disks = [DISKS.a, DISKS.b];
      s.pools.quickOS!.vdevType = "mirror";
    });
  });

  it("state from before node, devices and wipeDisksOnCreate: no replacement, disks compared by name", async () => {
    const { node: _n, devices: _d, wipeDisksOnCreate: _w, ...old } = outs;
    const legacy = { ...old, allowDestroy: true } as ZfsPoolOutputs;
    expect(await provider.diff!("quickOS", legacy, inputs({ disks: [DISKS.b, DISKS.a], allowDestroy: true }))).toMatchObject({ changes: true, replaces: [] });
  });

  it("delete is refused without allowDestroy and destroys the pool with it", async () => {
    await expect(provider.delete!("quickOS", { ...outs, allowDestroy: false })).rejects.toThrow(/refusing to destroy ZFS pool quickOS and every dataset in it/);
    expect(rig.sandbox.state().pools.quickOS).toBeDefined();
    await provider.delete!("quickOS", outs);
    expect(rig.sandbox.state().pools.quickOS).toBeUndefined();
    expect(await provider.read!("quickOS", outs)).toEqual({ id: "", props: {} });
  });
});
