import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { zfsDatasetProvider as provider, type ZfsDatasetInputs, type ZfsDatasetOutputs } from "../../providers/host/zfs-dataset";
import { startSshd, type SshRig } from "../rig/sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
  rig.sandbox.update((s) => {
    s.pools.quickOS = { vdevType: "mirror", disks: [], options: {} };
    s.datasets.quickOS = {};
    // Someone else's dataset with a property Phoenix is never told about.
    s.datasets["quickOS/foreign"] = { compression: "gzip" };
  });
});
afterAll(async () => {
  await rig?.stop();
});

const inputs = (over: Partial<ZfsDatasetInputs> = {}): ZfsDatasetInputs => ({
  node: "pve",
  connection: rig.connection,
  pool: "quickOS",
  name: "vm-disks",
  properties: { recordsize: "128K", compression: "lz4", quota: "800G" },
  allowDestroy: false,
  ...over,
});

describe("ZfsDataset provider", () => {
  let outs: ZfsDatasetOutputs;

  it("check accepts unknowns during preview and names bad inputs", async () => {
    const ok = await provider.check!({} as ZfsDatasetInputs, { node: "pve", connection: UNKNOWN, pool: UNKNOWN, name: "x", properties: UNKNOWN, allowDestroy: UNKNOWN } as never);
    expect(ok.failures).toEqual([]);
    const bad = await provider.check!({} as ZfsDatasetInputs, { ...inputs(), name: "/abs", properties: { "Bad Key": "x", quota: "1 G" } } as never);
    expect(bad.failures!.map((f) => f.property).sort()).toEqual(["name", "properties.Bad Key", "properties.quota"]);
    expect(bad.failures![0]!.reason).toMatch(/^ZFS dataset quickOS\/\/abs: /);
    const badKey = await provider.check!({} as ZfsDatasetInputs, { ...inputs(), connection: { ...rig.connection, hostKey: "AAAAC3NzaC1lZDI1NTE5" } } as never);
    expect(badKey.failures).toEqual([{ property: "connection.hostKey", reason: expect.stringMatching(/expected an OpenSSH public key line .* or a SHA256 fingerprint/) }]);
        const defaulted = await provider.check!({} as ZfsDatasetInputs, { node: "pve", connection: rig.connection, pool: "quickOS", name: "a" } as never);
    expect(defaulted.inputs).toMatchObject({ properties: {}, allowDestroy: false });
  });

  it("creates the dataset with its properties", async () => {
    const res = await provider.create(inputs());
    outs = res.outs!;
    expect(res.id).toBe("quickOS/vm-disks");
    expect(rig.sandbox.state().datasets["quickOS/vm-disks"]).toEqual({ recordsize: "128K", compression: "lz4", quota: "800G" });
    expect(outs.properties).toEqual({ recordsize: "128K", compression: "lz4", quota: "800G" });
  });

  it("a second create adopts the existing dataset without changing anything", async () => {
    rig.sandbox.clearCalls();
    const res = await provider.create(inputs());
    expect(res.outs).toEqual(outs);
    expect(rig.sandbox.calls("zfs").filter((c) => ["create", "set", "destroy"].includes(c[1]!))).toEqual([]);
  });

  it("refuses to adopt a dataset that exists with other values", async () => {
    await expect(provider.create(inputs({ properties: { recordsize: "16K" } }))).rejects.toThrow(
      /ZFS dataset quickOS\/vm-disks already exists with recordsize=131072 \(declared 16K\).*zfs set recordsize=16K quickOS\/vm-disks/,
    );
  });

  it("diff: a property change is an in-place update, a rename or another pool a replacement", async () => {
    const d1 = await provider.diff!("quickOS/vm-disks", outs, inputs({ properties: { recordsize: "128K", compression: "zstd", quota: "800G" } }));
    expect(d1).toMatchObject({ changes: true, replaces: [] });
    expect(await provider.diff!("quickOS/vm-disks", { ...outs, __provider: "serialized" } as never, inputs())).toMatchObject({ changes: false });
    expect((await provider.diff!("quickOS/vm-disks", outs, inputs({ name: "vm-images" }))).replaces).toEqual(["name"]);
    expect((await provider.diff!("quickOS/vm-disks", outs, inputs({ pool: "fastData" }))).replaces).toEqual(["pool"]);
    expect((await provider.diff!("quickOS/vm-disks", outs, { ...inputs(), name: UNKNOWN })).replaces).toEqual(["name"]);
    // Another address of the same node is an update; another node is another dataset.
    expect(await provider.diff!("quickOS/vm-disks", outs, inputs({ connection: { ...rig.connection, host: "localhost" } }))).toMatchObject({ changes: true, replaces: [] });
    expect((await provider.diff!("quickOS/vm-disks", outs, inputs({ node: "pve2" }))).replaces).toEqual(["node"]);
  });

  it("updates changed properties in place and leaves undeclared ones alone", async () => {
    rig.sandbox.clearCalls();
    const next = inputs({ properties: { recordsize: "128K", compression: "zstd", quota: "1T" } });
    const res = await provider.update!("quickOS/vm-disks", outs, next);
    outs = res.outs!;
    expect(rig.sandbox.calls("zfs").filter((c) => c[1] === "set")).toEqual([["zfs", "set", "compression=zstd", "quota=1T", "quickOS/vm-disks"]]);
    expect(outs.properties).toEqual(next.properties);
    expect(rig.sandbox.state().datasets["quickOS/foreign"]).toEqual({ compression: "gzip" });
  });

  it("read reports an out-of-band change, so refresh shows drift", async () => {
    rig.sandbox.update((s) => (s.datasets["quickOS/vm-disks"]!.quota = "500G"));
    const res = await provider.read!("quickOS/vm-disks", outs);
    expect(res.props!.properties).toEqual({ recordsize: "128K", compression: "zstd", quota: String(500 * 2 ** 30) });
    expect((await provider.diff!("quickOS/vm-disks", res.props!, inputs({ properties: outs.properties }))).changes).toBe(true);
  });

  it("read reports a dataset destroyed out of band as gone", async () => {
    rig.sandbox.update((s) => (s.datasets["quickOS/tmp"] = {}));
    expect(await provider.read!("quickOS/tmp", { ...outs, name: "tmp" })).toMatchObject({ id: "quickOS/tmp" });
    rig.sandbox.update((s) => delete s.datasets["quickOS/tmp"]);
    expect(await provider.read!("quickOS/tmp", { ...outs, name: "tmp" })).toEqual({ id: "", props: {} });
  });

  it("delete is refused while allowDestroy is false, and destroys only the dataset once allowed", async () => {
    await expect(provider.delete!("quickOS/vm-disks", outs)).rejects.toThrow(/refusing to destroy ZFS dataset quickOS\/vm-disks: .*set allowDestroy: true/);
    expect(rig.sandbox.state().datasets["quickOS/vm-disks"]).toBeDefined();
    const allowed = await provider.update!("quickOS/vm-disks", outs, inputs({ properties: outs.properties, allowDestroy: true }));
    await provider.delete!("quickOS/vm-disks", allowed.outs!);
    expect(Object.keys(rig.sandbox.state().datasets).sort()).toEqual(["quickOS", "quickOS/foreign"]);
  });

  it("replacement on rename: the new dataset is created, the old one kept unless destruction is allowed", async () => {
    const old = (await provider.create(inputs({ name: "iso" }))).outs!;
    const renamed = await provider.create(inputs({ name: "iso-images" }));
    expect(renamed.id).toBe("quickOS/iso-images");
    await expect(provider.delete!("quickOS/iso", old)).rejects.toThrow(/refusing to destroy/);
    expect(Object.keys(rig.sandbox.state().datasets)).toEqual(expect.arrayContaining(["quickOS/iso", "quickOS/iso-images"]));
  });

  it("create fails with the zfs message when the pool does not exist", async () => {
    await expect(provider.create(inputs({ pool: "nopool", name: "x" }))).rejects.toThrow(/create ZFS dataset nopool\/x on .* failed \(exit 1\):\ncannot create 'nopool\/x': parent does not exist/);
  });
});
