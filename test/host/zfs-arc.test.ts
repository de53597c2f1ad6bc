import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { arcMinFor, zfsArcLimitProvider as provider, type ZfsArcLimitInputs, type ZfsArcLimitOutputs } from "../../providers/host/zfs-arc";
import { mergeModprobeOption, readModprobeOption } from "../../providers/host/zfs.scripts";
import { startSshd, type SshRig } from "../rig/sshd";

const GiB = 2 ** 30;
const CONF = "/etc/modprobe.d/zfs.conf";
const RUNTIME = "sys/module/zfs/parameters/zfs_arc_max";
const RUNTIME_MIN = "sys/module/zfs/parameters/zfs_arc_min";
const MiB = 2 ** 20;

describe("zfs_arc_min beside a low zfs_arc_max (openzfs arc_tuning_update, pve-docs local-zfs.adoc)", () => {
  it("is needed when the maximum is at or below the default minimum of RAM/32", () => {
    // 512 GiB of RAM: the default arc_c_min is 16 GiB, so 8 GiB and exactly 16 GiB would be ignored.
    expect(arcMinFor(8 * GiB, 512 * GiB, undefined, 0)).toBe(4 * GiB);
    expect(arcMinFor(16 * GiB, 512 * GiB, undefined, 0)).toBe(8 * GiB);
    expect(arcMinFor(16 * GiB + 1, 512 * GiB, undefined, 0)).toBeUndefined();
    // Never below the 32 MiB floor, and still below the maximum.
    expect(arcMinFor(64 * MiB, 512 * GiB, undefined, 0)).toBe(32 * MiB);
  });
  it("keeps a hand-set minimum below the maximum, replaces one at or above it, and drops its own when unneeded", () => {
    expect(arcMinFor(8 * GiB, 512 * GiB, 2 * GiB, 0)).toBeUndefined();
    expect(arcMinFor(8 * GiB, 512 * GiB, 8 * GiB, 0)).toBe(4 * GiB);
    expect(arcMinFor(8 * GiB, 64 * GiB, 2 * GiB, 0)).toBeUndefined();
    expect(arcMinFor(32 * GiB, 512 * GiB, 4 * GiB, 4 * GiB)).toBeUndefined();
    expect(arcMinFor(8 * GiB, 512 * GiB, 4 * GiB, 4 * GiB)).toBe(4 * GiB);
  });
});

describe("zfs.conf merge", () => {
  it("sets the parameter inside an existing options line, keeping the others", () => {
    const conf = "# tuned by hand\noptions zfs zfs_arc_min=1073741824 zfs_arc_max=2\noptions spl spl_kmem_cache_slab_limit=16384\n";
    expect(mergeModprobeOption(conf, "zfs", "zfs_arc_max", "8")).toBe("# tuned by hand\noptions zfs zfs_arc_min=1073741824 zfs_arc_max=8\noptions spl spl_kmem_cache_slab_limit=16384\n");
  });
  it("adds a line when zfs has none, and is stable when applied twice", () => {
    const once = mergeModprobeOption("options spl x=1\n", "zfs", "zfs_arc_max", "8");
    expect(once).toBe("options spl x=1\noptions zfs zfs_arc_max=8\n");
    expect(mergeModprobeOption(once, "zfs", "zfs_arc_max", "8")).toBe(once);
  });
  it("removes only the parameter, and a line left empty", () => {
    expect(mergeModprobeOption("options zfs zfs_arc_max=8\noptions zfs zfs_prefetch_disable=1 zfs_arc_max=9\n", "zfs", "zfs_arc_max", undefined)).toBe("options zfs zfs_prefetch_disable=1\n");
    expect(readModprobeOption("options zfs zfs_arc_max=8\noptions zfs zfs_arc_max=9\n", "zfs", "zfs_arc_max")).toBe("9");
  });
});

describe("ZfsArcLimit provider", () => {
  let rig: SshRig;
  let outs: ZfsArcLimitOutputs;
  beforeAll(async () => {
    rig = await startSshd();
    rig.sandbox.write(CONF.slice(1), "options zfs zfs_prefetch_disable=1\n");
  });
  afterAll(async () => {
    await rig?.stop();
  });
  const inputs = (maxBytes: number): ZfsArcLimitInputs => ({ node: "pve", connection: rig.connection, maxBytes });

  it("check refuses a limit ZFS would ignore and lets unknowns through", async () => {
    expect((await provider.check!({} as ZfsArcLimitInputs, inputs(1000))).failures![0]!.reason).toMatch(/maxBytes must be a whole number of bytes of at least 67108864/);
    expect((await provider.check!({} as ZfsArcLimitInputs, { node: "pve", connection: rig.connection, maxBytes: UNKNOWN } as never)).failures).toEqual([]);
  });

  it("create persists the limit beside existing options, applies it now and rebuilds the initramfs of a ZFS root", async () => {
    const res = await provider.create(inputs(16 * GiB));
    expect(res.id).toBe("zfs-arc-max-pve");
    outs = res.outs!;
    expect(rig.sandbox.read(CONF.slice(1))).toBe(`options zfs zfs_prefetch_disable=1 zfs_arc_max=${16 * GiB}\n`);
    expect(rig.sandbox.read(RUNTIME).trim()).toBe(String(16 * GiB));
    expect(outs).toMatchObject({ persistedBytes: 16 * GiB, runtimeBytes: 16 * GiB });
    expect(rig.sandbox.calls("update-initramfs")).toEqual([["update-initramfs", "-u", "-k", "all"]]);
  });

  it("a second create changes nothing", async () => {
    rig.sandbox.clearCalls();
    expect((await provider.create(inputs(16 * GiB))).outs).toEqual(outs);
    expect(rig.sandbox.calls("update-initramfs")).toEqual([]);
  });

  it("update changes the limit in place", async () => {
    expect(await provider.diff!("zfs-arc-max", outs, inputs(8 * GiB))).toMatchObject({ changes: true, replaces: [] });
    expect(await provider.diff!("zfs-arc-max", outs, { ...inputs(8 * GiB), connection: { ...rig.connection, host: "localhost" } })).toMatchObject({ changes: true, replaces: [] });
    expect(await provider.diff!("zfs-arc-max", outs, { ...inputs(8 * GiB), node: "pve2" })).toMatchObject({ replaces: ["node"] });
    outs = (await provider.update!("zfs-arc-max", outs, inputs(8 * GiB))).outs!;
    expect(rig.sandbox.read(CONF.slice(1))).toBe(`options zfs zfs_prefetch_disable=1 zfs_arc_max=${8 * GiB}\n`);
    expect(outs).toMatchObject({ maxBytes: 8 * GiB, persistedBytes: 8 * GiB, runtimeBytes: 8 * GiB });
  });

  it("read reports a runtime value changed out of band, and diff wants to restore it", async () => {
    rig.sandbox.write(RUNTIME, `${4 * GiB}\n`);
    const res = await provider.read!("zfs-arc-max", outs);
    expect(res.props).toMatchObject({ persistedBytes: 8 * GiB, runtimeBytes: 4 * GiB });
    expect((await provider.diff!("zfs-arc-max", res.props!, inputs(8 * GiB))).changes).toBe(true);
    await provider.update!("zfs-arc-max", res.props!, inputs(8 * GiB));
    expect(rig.sandbox.read(RUNTIME).trim()).toBe(String(8 * GiB));
  });

  it("delete returns to the module default and keeps the other options", async () => {
    await provider.delete!("zfs-arc-max", outs);
    expect(rig.sandbox.read(CONF.slice(1))).toBe("options zfs zfs_prefetch_disable=1\n");
    expect(rig.sandbox.read(RUNTIME).trim()).toBe("0");
  });

  it("on a host with more than 32× the limit in RAM, also sets zfs_arc_min, persisted and first at runtime", async () => {
    rig.sandbox.write("proc/meminfo", `MemTotal:       ${512 * 1024 * 1024} kB\n`);
    rig.sandbox.clearCalls();
    const res = await provider.create(inputs(8 * GiB));
    expect(rig.sandbox.read(CONF.slice(1))).toBe(`options zfs zfs_prefetch_disable=1 zfs_arc_max=${8 * GiB} zfs_arc_min=${4 * GiB}\n`);
    expect(rig.sandbox.read(RUNTIME_MIN).trim()).toBe(String(4 * GiB));
    expect(rig.sandbox.read(RUNTIME).trim()).toBe(String(8 * GiB));
    expect(res.outs).toMatchObject({ minBytes: 4 * GiB, runtimeMinBytes: 4 * GiB });
    // Raised above RAM/32, Phoenix's own minimum goes again; the running one is left (harmlessly lower).
    const up = (await provider.update!("zfs-arc-max", res.outs!, inputs(32 * GiB))).outs!;
    expect(rig.sandbox.read(CONF.slice(1))).toBe(`options zfs zfs_prefetch_disable=1 zfs_arc_max=${32 * GiB}\n`);
    expect(up.minBytes).toBe(0);
  });

  it("refuses a limit not below the node's memory, which ZFS ignores", async () => {
    await expect(provider.create(inputs(1024 * GiB))).rejects.toThrow(/is not below the node's memory .* ZFS would ignore it/);
  });
});
