import { rmSync, statSync } from "fs";
import { join } from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { implementation, type LxcRootConfigInputs, type LxcRootConfigOutputs } from "../../providers/guest/lxc-root-config";
import { gpuViewProblem, idmapLines } from "../../providers/guest/lxc-root-config.render";
import { hostIdOf, planIdmap } from "../../stacks/idmap";
import { startSshd, type SshRig } from "../rig/sshd";

const VMID = 802;
const ID = `pve/${VMID}`;
const CONF = `etc/pve/lxc/${VMID}.conf`;
const DRIVER = "580.95.05";
const GPU0 = "00000000:01:00.0";
const GPU1 = "00000000:02:00.0";
/** www-data inside; its group is passed through so the container shares it with the node's services. */
const IDMAP = planIdmap({ uids: [], gids: [33] });

// A clone that inherited a GPU line and a bind mount from its template, next to a volume mount
// Phoenix does not own, and a snapshot whose own lines a rewrite must not touch.
const SEED_CURRENT = [
  "arch: amd64",
  "hostname: vllm-chat",
  "memory: 8192",
  "dev3: /dev/nvidia7,gid=44,mode=0666",
  "features: nesting=1",
  "mp1: /fastData/old-models,mp=/old-models",
  "mp2: local-zfs:subvol-802-disk-1,mp=/data,size=8G",
  "rootfs: local-zfs:subvol-802-disk-0,size=8G",
  "unprivileged: 1",
];
const SNAPSHOT = ["[before-gpu]", "arch: amd64", "dev3: /dev/nvidia7,gid=44,mode=0666", "lxc.idmap: u 0 100000 65536", "lxc.idmap: g 0 100000 65536", "unprivileged: 1", ""].join("\n");
const UNOWNED = ["arch: amd64", "hostname: vllm-chat", "memory: 8192", "mp2: local-zfs:subvol-802-disk-1,mp=/data,size=8G", "rootfs: local-zfs:subvol-802-disk-0,size=8G", "unprivileged: 1"];
const SUBUID = "root:100000:65536\n";
const SUBGID = "root:100000:65536\nphoenix:200000:65536\n";

let rig: SshRig;
let inputs: LxcRootConfigInputs;
let outs: LxcRootConfigOutputs;

beforeAll(async () => {
  rig = await startSshd();
  rig.sandbox.write(CONF, SEED_CURRENT.join("\n") + "\n\n" + SNAPSHOT);
  rig.sandbox.write(`run/pct/${VMID}.status`, "running\n");
  rig.sandbox.write("etc/subuid", SUBUID);
  rig.sandbox.write("etc/subgid", SUBGID);
  rig.sandbox.update((s) => {
    s.nvidia.installed = DRIVER;
    s.nvidia.loaded = DRIVER;
    s.nvidia.gpus = [
      { busId: GPU0, name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 },
      { busId: GPU1, name: "NVIDIA GeForce RTX 5070 Ti", memoryMiB: 16303 },
    ];
    s.containers[String(VMID)] = { aptInstalled: [], systemdEnabled: [], locales: [], caUpdates: 0, venvs: {}, nvidiaUserspace: DRIVER };
  });
  inputs = {
    transport: { kind: "ssh", connection: rig.connection },
    node: "pve",
    vmid: VMID,
    devices: [
      { path: "/dev/nvidia0", gid: 44, mode: "0666" },
      { path: "/dev/nvidiactl", gid: 44, mode: "0666" },
    ],
    mounts: [{ hostPath: "/fastData/models", path: "/models", readOnly: true, owner: { uid: hostIdOf(33, [], true), gid: hostIdOf(33, [33], true), mode: "0750" } }],
    features: { nesting: true, keyctl: true, fuse: false },
    idmap: IDMAP.ranges,
    subuid: IDMAP.subuid,
    subgid: IDMAP.subgid,
  };
});
afterAll(async () => {
  await rig?.stop();
});

/** The config file split the way PVE reads it: the current section, then the snapshots verbatim. */
const sections = () => {
  const text = rig.sandbox.read(CONF);
  const cut = text.indexOf("\n[");
  const current = (cut < 0 ? text : text.slice(0, cut)).split("\n").filter((l) => l !== "");
  // Blank lines carry nothing for PVE, and the pct stand-in adds one at the end on every set.
  return { current, snapshots: cut < 0 ? "" : text.slice(cut + 1).trimEnd() + "\n" };
};
const owned = (lines: string[]) => lines.filter((l) => /^(dev\d+|mp\d+|features|lxc\.idmap):/.test(l) && !/^mp\d+: [^/]/.test(l)).sort();
/** pct calls that change a container; config and status only read. */
const pctChanges = () => rig.sandbox.calls("pct").filter((c) => c[1] !== "config" && c[1] !== "status");
const hostDir = () => statSync(join(rig.sandbox.root, "fastData/models"));
/** An update from the given old outputs, as the engine runs it; resolves to the new outputs. */
const apply = (o: LxcRootConfigOutputs, i: LxcRootConfigInputs) => implementation.update(ID, o, i).then((r) => r.outs as LxcRootConfigOutputs);

describe("LxcRootConfig over SSH with pct", () => {
  it("converges an inherited clone to exactly the declared settings and reboots it", async () => {
    rig.sandbox.clearCalls();
    const created = await implementation.create(inputs);
    expect(created.id).toBe(ID);
    outs = created.outs as LxcRootConfigOutputs;

    const { current, snapshots } = sections();
    expect(owned(current)).toEqual(
      [
        "dev0: /dev/nvidia0,gid=44,mode=0666",
        "dev1: /dev/nvidiactl,gid=44,mode=0666",
        "mp0: /fastData/models,mp=/models,ro=1",
        "features: keyctl=1,nesting=1",
        ...idmapLines(IDMAP.ranges).map((l) => `lxc.idmap: ${l}`),
      ].sort(),
    );
    // lxc.idmap is order-sensitive for LXC, so the lines must keep planIdmap's order.
    expect(current.filter((l) => l.startsWith("lxc.idmap:"))).toEqual(["lxc.idmap: u 0 100000 65536", "lxc.idmap: g 0 100000 33", "lxc.idmap: g 33 33 1", "lxc.idmap: g 34 100034 65502"]);
    expect(current.filter((l) => !owned([l]).length)).toEqual(UNOWNED);
    expect(snapshots).toBe(SNAPSHOT);

    expect(rig.sandbox.read("etc/subgid")).toBe(SUBGID + "root:33:1\n");
    // No uid passes through, so /etc/subuid has nothing to gain.
    expect(rig.sandbox.read("etc/subuid")).toBe(SUBUID);

    const dir = hostDir();
    expect(dir.isDirectory()).toBe(true);
    expect({ uid: dir.uid, gid: dir.gid, mode: dir.mode & 0o7777 }).toEqual({ uid: 100033, gid: 33, mode: 0o750 });

    expect(pctChanges().map((c) => c[1])).toEqual(["set", "reboot"]);
    expect(pctChanges()[1]).toEqual(["pct", "reboot", String(VMID)]);
    expect(rig.sandbox.read(`run/pct/${VMID}.status`)).toBe("running\n");

    expect(outs.actual).toEqual({
      dev0: "/dev/nvidia0,gid=44,mode=0666",
      dev1: "/dev/nvidiactl,gid=44,mode=0666",
      mp0: "/fastData/models,mp=/models,ro=1",
      features: "keyctl=1,nesting=1",
    });
    expect(outs.actualIdmap).toEqual(idmapLines(IDMAP.ranges));
  });

  it("changes nothing on a second create or an update with the same inputs", async () => {
    const before = { conf: statSync(join(rig.sandbox.root, CONF)), subgid: statSync(join(rig.sandbox.root, "etc/subgid")), dir: hostDir() };
    rig.sandbox.clearCalls();
    // A retried create adopts the converged container.
    expect((await implementation.create(inputs)).outs).toEqual(outs);
    outs = await apply(outs, inputs);
    expect(rig.sandbox.calls("pct").length).toBeGreaterThan(0);
    expect(pctChanges()).toEqual([]);
    // ctime moves on any write, chown or chmod, so an unchanged ctime proves nothing was touched.
    expect(statSync(join(rig.sandbox.root, CONF)).ctimeMs).toBe(before.conf.ctimeMs);
    expect(statSync(join(rig.sandbox.root, "etc/subgid")).ctimeMs).toBe(before.subgid.ctimeMs);
    expect(hostDir().ctimeMs).toBe(before.dir.ctimeMs);
    // What the node reports, read in whatever key order its file has, is what was declared.
    expect(await implementation.diff(ID, outs, inputs)).toMatchObject({ changes: false, replaces: [] });
  });

  it("updates a changed device in place; only node or vmid would replace", async () => {
    const news = { ...inputs, devices: [{ path: "/dev/nvidia1", gid: 44, mode: "0666" }, inputs.devices[1]!] };
    expect(await implementation.diff(ID, outs, news)).toMatchObject({ changes: true, replaces: [] });
    const inPlace: Array<Partial<LxcRootConfigInputs>> = [
      { mounts: [] },
      { features: { nesting: false, keyctl: false, fuse: true } },
      { idmap: [] },
      { subuid: ["root:1000:1"] },
      { subgid: [] },
      { verifyGpus: { busIds: [GPU1], driverVersion: DRIVER } },
      { transport: { kind: "ssh", connection: { ...rig.connection, port: 2222 } } },
    ];
    for (const change of inPlace) expect(await implementation.diff(ID, outs, { ...inputs, ...change }), JSON.stringify(change)).toMatchObject({ changes: true, replaces: [] });
    expect((await implementation.diff(ID, outs, { ...inputs, node: "pve2" })).replaces).toEqual(["node"]);
    expect((await implementation.diff(ID, outs, { ...inputs, vmid: 803 })).replaces).toEqual(["vmid"]);

    rig.sandbox.clearCalls();
    outs = await apply(outs, news);
    inputs = news;
    expect(pctChanges()).toEqual([
      ["pct", "set", String(VMID), "--dev0", "/dev/nvidia1,gid=44,mode=0666"],
      ["pct", "reboot", String(VMID)],
    ]);
    expect(sections().current).toContain("dev0: /dev/nvidia1,gid=44,mode=0666");
    expect(outs.actual.dev0).toBe("/dev/nvidia1,gid=44,mode=0666");
    expect(await implementation.diff(ID, outs, inputs)).toMatchObject({ changes: false });
  });

  it("read reports an out-of-band change and diff asks to converge it", async () => {
    const { current } = sections();
    // Someone made the models mount writable by hand and dropped the id map.
    const edited = current.filter((l) => !l.startsWith("lxc.idmap:")).map((l) => l.replace("mp=/models,ro=1", "mp=/models"));
    rig.sandbox.write(CONF, edited.join("\n") + "\n\n" + SNAPSHOT);
    expect(sections().snapshots).toBe(SNAPSHOT);
    const { id, props } = await implementation.read(ID, outs);
    expect(id).toBe(ID);
    const drifted = props as LxcRootConfigOutputs;
    expect(drifted.actual.mp0).toBe("/fastData/models,mp=/models");
    expect(drifted.actualIdmap).toEqual([]);
    expect(await implementation.diff(ID, drifted, inputs)).toMatchObject({ changes: true, replaces: [] });

    // Only the id map gone is drift too: without it the passthrough silently stops.
    const idmapOnly = { ...drifted, actual: outs.actual };
    expect(await implementation.diff(ID, idmapOnly, inputs)).toMatchObject({ changes: true, replaces: [] });

    outs = await apply(drifted, inputs);
    expect(outs.actual.mp0).toBe("/fastData/models,mp=/models,ro=1");
    expect(outs.actualIdmap).toEqual(idmapLines(IDMAP.ranges));
    expect(sections().snapshots).toBe(SNAPSHOT);
  });

  it("checks with nvidia-smi inside the running container that it sees exactly its GPUs on the host's driver", async () => {
    // dev0 is /dev/nvidia1 since the previous test: the host's second GPU.
    const matching = { ...inputs, verifyGpus: { busIds: [GPU1], driverVersion: DRIVER } };
    rig.sandbox.clearCalls();
    outs = await apply(outs, matching);
    expect(rig.sandbox.calls("pct")).toContainEqual(["pct", "exec", String(VMID), "--", "nvidia-smi", "--query-gpu=pci.bus_id,driver_version", "--format=csv,noheader"]);
    expect(rig.sandbox.calls("nvidia-smi")).toHaveLength(1);

    const otherGpu = { busIds: [GPU0], driverVersion: DRIVER };
    await expect(apply(outs, { ...inputs, verifyGpus: otherGpu })).rejects.toThrow(`CT ${VMID} on pve: ${gpuViewProblem(otherGpu, [`${GPU1}, ${DRIVER}`])}`);
    const bothGpus = { busIds: [GPU0, GPU1], driverVersion: DRIVER };
    await expect(apply(outs, { ...inputs, verifyGpus: bothGpus })).rejects.toThrow(`CT ${VMID} on pve: ${gpuViewProblem(bothGpus, [`${GPU1}, ${DRIVER}`])}`);
    // The stack declares a newer driver than the node has loaded.
    const newerDriver = { busIds: [GPU1], driverVersion: "580.105.08" };
    await expect(apply(outs, { ...inputs, verifyGpus: newerDriver })).rejects.toThrow(`CT ${VMID} on pve: ${gpuViewProblem(newerDriver, [`${GPU1}, ${DRIVER}`])}`);

    // User-space that does not match the module: nvidia-smi itself fails, and the error says so.
    rig.sandbox.update((s) => (s.containers[String(VMID)]!.nvidiaUserspace = "575.64.05"));
    await expect(apply(outs, matching)).rejects.toThrow(/check the GPUs inside CT 802 on pve[\s\S]*Driver\/library version mismatch/);
    rig.sandbox.update((s) => (s.containers[String(VMID)]!.nvidiaUserspace = DRIVER));

    // A stopped container cannot be asked; the check waits for an apply that finds it running.
    rig.sandbox.write(`run/pct/${VMID}.status`, "stopped\n");
    rig.sandbox.clearCalls();
    await apply(outs, { ...inputs, verifyGpus: otherGpu });
    expect(rig.sandbox.calls("nvidia-smi")).toEqual([]);
    rig.sandbox.write(`run/pct/${VMID}.status`, "running\n");
    inputs = matching;
  });

  it("delete removes the declared devices, bind mounts and id map, and leaves the container and its data", async () => {
    rig.sandbox.clearCalls();
    await implementation.delete(ID, outs);
    const { current, snapshots } = sections();
    expect(owned(current)).toEqual(["features: nesting=1"]);
    expect(current.filter((l) => !owned([l]).length)).toEqual(UNOWNED);
    expect(snapshots).toBe(SNAPSHOT);
    expect(pctChanges().at(-1)).toEqual(["pct", "reboot", String(VMID)]);
    expect(rig.sandbox.read(`run/pct/${VMID}.status`)).toBe("running\n");
    // The host directory holds the models and other delegations may rely on /etc/subgid: both stay.
    expect(hostDir().isDirectory()).toBe(true);
    expect(rig.sandbox.read("etc/subgid")).toBe(SUBGID + "root:33:1\n");

    // Once the container is gone with its own resource, deleting the settings is a no-op.
    rmSync(join(rig.sandbox.root, CONF));
    await expect(implementation.delete(ID, outs)).resolves.toBeUndefined();
  });
});
