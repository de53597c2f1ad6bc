/**
 * The node's SSH address changes (127.0.0.1 → localhost, another port, user or key): every host
 * resource is the same resource on the same node. The diff is an update, never a replacement
 * (a replacement's delete would undo on this very machine what its create just did), and the
 * update runs nothing on the node. Only another node is another resource.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as pulumi from "@pulumi/pulumi";
import { EXPORTS_BEGIN } from "../../providers/host/exports";
import { nodeFileProvider } from "../../providers/host/node-file";
import { nvidiaDriverProvider } from "../../providers/host/nvidia-driver";
import { zfsArcLimitProvider } from "../../providers/host/zfs-arc";
import { zfsDatasetProvider } from "../../providers/host/zfs-dataset";
import type { SshConnection } from "../../providers/ssh";
import { destructiveCalls } from "../rig/destructive";
import { startSshd, type SshRig } from "../rig/sshd";

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
  rig.sandbox.update((s) => {
    s.pools.tank = { vdevType: "single", disks: [], options: {} };
    s.datasets.tank = {};
  });
});
afterAll(async () => {
  await rig?.stop();
});

type Provider = pulumi.dynamic.ResourceProvider;
const cases: Array<[string, Provider, (c: SshConnection) => Record<string, unknown>]> = [
  ["ZFS ARC limit", zfsArcLimitProvider, (connection) => ({ node: "pve", connection, maxBytes: 2 ** 32 })],
  ["NVIDIA driver", nvidiaDriverProvider, (connection) => ({ node: "pve", connection, version: "580.95.05" })],
  ["ZFS dataset", zfsDatasetProvider, (connection) => ({ node: "pve", connection, pool: "tank", name: "models", properties: { recordsize: "1M" }, allowDestroy: true })],
  ["/etc/exports block", nodeFileProvider, (connection) => ({ node: "pve", connection, path: "/etc/exports", mode: "0644", exports: [{ path: "/tank/models", clients: [{ host: "10.0.0.102", options: ["rw"] }] }] })],
  ["user-data snippet", nodeFileProvider, (connection) => ({ node: "pve", connection, path: "/tank/iso/snippets/phoenix-vm-1001.yaml", mode: "0640", content: "#cloud-config\n" })],
];

describe.each(cases)("%s", (_name, provider, args) => {
  let outs: Record<string, unknown>;
  const moved: SshConnection[] = [];
  beforeAll(async () => {
    const checked = await provider.check!({}, args(rig.connection));
    expect(checked.failures).toEqual([]);
    outs = (await provider.create(checked.inputs)).outs;
    moved.push({ ...rig.connection, host: "localhost" }, { ...rig.connection, port: 2022, username: "phoenix" }, { ...rig.connection, privateKey: "another key" });
  }, 60_000);

  it("another address, port, user or key: an update, and the update runs nothing on the node", async () => {
    const before = { conf: rig.sandbox.exists("etc/modprobe.d/zfs.conf") ? rig.sandbox.read("etc/modprobe.d/zfs.conf") : undefined, state: rig.sandbox.state() };
    rig.sandbox.clearCalls();
    for (const connection of moved) {
      const news = (await provider.check!(outs, args(connection))).inputs;
      expect(await provider.diff!("id", outs, news)).toEqual({ changes: true, replaces: [], deleteBeforeReplace: false });
      // A driver waiting for a reboot is still not reinstalled: only the address moved.
      const res = await provider.update!("id", { ...outs, rebootRequired: true }, news);
      expect(res.outs).toMatchObject({ connection });
    }
    expect(rig.sandbox.calls()).toEqual([]);
    expect(destructiveCalls(rig.sandbox)).toEqual([]);
    expect(rig.sandbox.state()).toEqual({ ...before.state, calls: [] });
    if (before.conf !== undefined) expect(rig.sandbox.read("etc/modprobe.d/zfs.conf")).toBe(before.conf);
  });

  it("another node: another resource", async () => {
    const news = (await provider.check!(outs, { ...args(rig.connection), node: "pve2" })).inputs;
    expect((await provider.diff!("id", outs, news)).replaces).toEqual(["node"]);
  });

  it("state written before node was an input: the same node, no replacement", async () => {
    const { node: _node, ...legacy } = outs;
    const news = (await provider.check!(legacy, args({ ...rig.connection, host: "localhost" }))).inputs;
    expect((await provider.diff!("id", legacy, news)).replaces).toEqual([]);
  });
});

describe("what the resources left on the node", () => {
  it("is still there after the address changes", () => {
    expect(rig.sandbox.read("etc/exports")).toContain(EXPORTS_BEGIN);
    expect(rig.sandbox.read("tank/iso/snippets/phoenix-vm-1001.yaml")).toBe("#cloud-config\n");
    expect(rig.sandbox.read("etc/modprobe.d/zfs.conf")).toContain(`zfs_arc_max=${2 ** 32}`);
    expect(rig.sandbox.state().nvidia.installed).toBe("580.95.05");
    expect(rig.sandbox.state().datasets["tank/models"]).toEqual({ recordsize: "1M" });
  });
});
