import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { zfsPoolProvider as provider, type ZfsPoolInputs, type ZfsPoolOutputs } from "../../providers/host/zfs-pool";
import { parsePoolStatus } from "../../providers/host/zfs.scripts";
import { DISKS } from "../rig/sandbox";
import { startSshd, type SshRig } from "../rig/sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
});
afterAll(async () => {
  await rig?.stop();
});

const inputs = (over: Partial<ZfsPoolInputs> = {}): ZfsPoolInputs => ({
  connection: rig.connection,
  name: "quickOS",
  vdevType: "mirror",
  disks: [DISKS.a, DISKS.b],
  poolOptions: { ashift: "12", autotrim: "on" },
  filesystemProperties: { compression: "lz4", atime: "off" },
  allowDestroy: false,
  ...over,
});

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

  it("creates the pool on the declared empty disks only", async () => {
    const res = await provider.create(inputs());
    outs = res.outs!;
    expect(res.id).toBe("quickOS");
    const s = rig.sandbox.state();
    expect(s.pools.quickOS).toEqual({ vdevType: "mirror", disks: [DISKS.a, DISKS.b], options: { ashift: "12", autotrim: "on" } });
    expect(s.datasets.quickOS).toEqual({ compression: "lz4", atime: "off" });
    expect(s.disks[DISKS.c]).toEqual({ signatures: [], partitions: [] });
    expect(rig.sandbox.calls("wipefs").filter((c) => c.includes("-a"))).toEqual([]);
    expect(outs.topologyDrift).toBe("");
  });

  it("a second create adopts the pool and runs no zpool create", async () => {
    rig.sandbox.clearCalls();
    expect((await provider.create(inputs())).outs).toEqual(outs);
    expect(rig.sandbox.calls("zpool").filter((c) => c[1] === "create")).toEqual([]);
  });

  it("create refuses an existing pool of another layout", async () => {
    await expect(provider.create(inputs({ vdevType: "single", disks: [DISKS.a] }))).rejects.toThrow(/ZFS pool quickOS already exists with another layout \(declared single of .*, found mirror of /);
  });

  it("never wipes a disk holding data unless the pool allows destruction", async () => {
    await expect(provider.create(inputs({ name: "scratch", vdevType: "single", disks: [DISKS.used] }))).rejects.toThrow(
      /disk .*980_PRO.* is not empty \(signatures: gpt PMBR ; partitions: .*-part1 \); refusing to create pool scratch on it\. Wipe it yourself or set allowDestroy: true/,
    );
    expect(rig.sandbox.state().disks[DISKS.used]!.signatures).toEqual(["gpt", "PMBR"]);
    expect(rig.sandbox.state().pools.scratch).toBeUndefined();
    const res = await provider.create(inputs({ name: "scratch", vdevType: "single", disks: [DISKS.used], allowDestroy: true }));
    expect(res.outs!.topologyDrift).toBe("");
    expect(rig.sandbox.calls("wipefs").filter((c) => c.includes("-a"))).toEqual([["wipefs", "-a", DISKS.used]]);
    expect(rig.sandbox.calls("zpool").find((c) => c[1] === "create")).toEqual(["zpool", "create", "-f", "-o", "ashift=12", "-o", "autotrim=on", "-O", "compression=lz4", "-O", "atime=off", "scratch", DISKS.used]);
    await provider.delete!("scratch", res.outs!);
  });

  it("refuses a disk that does not exist", async () => {
    await expect(provider.create(inputs({ name: "fastData", vdevType: "single", disks: ["/dev/disk/by-id/nvme-nothere"] }))).rejects.toThrow(/disk\(s\) \/dev\/disk\/by-id\/nvme-nothere not found on 127\.0\.0\.1/);
  });

  it("diff: layout changes replace (delete first), allowDestroy changes in place", async () => {
    expect(await provider.diff!("quickOS", outs, inputs({ allowDestroy: true }))).toMatchObject({ changes: true, replaces: [] });
    expect(await provider.diff!("quickOS", outs, inputs({ disks: [DISKS.a, DISKS.c] }))).toMatchObject({ replaces: ["disks"], deleteBeforeReplace: true });
    expect(await provider.diff!("quickOS", outs, inputs())).toMatchObject({ changes: false });
  });

  it("update changes allowDestroy without touching the pool", async () => {
    rig.sandbox.clearCalls();
    const res = await provider.update!("quickOS", outs, inputs({ allowDestroy: true }));
    expect(res.outs).toMatchObject({ allowDestroy: true, topologyDrift: "" });
    expect(rig.sandbox.calls("zpool").filter((c) => c[1] !== "list" && c[1] !== "status")).toEqual([]);
    outs = res.outs!;
  });

  it("read reports topology drift after an out-of-band change", async () => {
    rig.sandbox.update((s) => (s.pools.quickOS!.disks = [DISKS.a]));
    rig.sandbox.update((s) => (s.pools.quickOS!.vdevType = "single"));
    const res = await provider.read!("quickOS", outs);
    expect(res.props).toMatchObject({ vdevType: "single", disks: [DISKS.a], topologyDrift: `declared mirror of ${DISKS.a}, ${DISKS.b}, found single of ${DISKS.a}` });
    expect((await provider.diff!("quickOS", res.props!, inputs({ allowDestroy: true }))).replaces).toEqual(["vdevType", "disks"]);
  });

  it("delete is refused without allowDestroy and destroys the pool with it", async () => {
    await expect(provider.delete!("quickOS", { ...outs, allowDestroy: false })).rejects.toThrow(/refusing to destroy ZFS pool quickOS and every dataset in it/);
    expect(rig.sandbox.state().pools.quickOS).toBeDefined();
    await provider.delete!("quickOS", outs);
    expect(rig.sandbox.state().pools.quickOS).toBeUndefined();
    expect(await provider.read!("quickOS", outs)).toEqual({ id: "", props: {} });
  });
});
