/**
 * The ZFS path of the snapshot before a change (providers/guest/zfs-snapshot.ts): the commands it
 * renders, which datasets it covers, and, against the PVE simulator and the rig's zfs stand-in over
 * SSH, a bind-mounted container snapshotted through ZFS and rolled back by `npm run rollback`.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { snapshotName, takeChangeSnapshot } from "../../providers/guest/guest-snapshot";
import { keptBy, newerThan, ownerOf, parseZfsList, RENDER_RUNNING_SENDS, renderZfsDestroy, renderZfsList, renderZfsRollback, renderZfsSnapshot, zfsPlan, type NodeRun } from "../../providers/guest/zfs-snapshot";
import { createPveClient, type PveApi } from "../../providers/pve";
import { runCommand } from "../../providers/ssh";
import { runRollback } from "../../scripts/rollback";
import { readStackFile, validateStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { DEBIAN_TEMPLATE, seedTemplate } from "../pve-sim/http";
import { startSimulator, type Simulator } from "../pve-sim";
import { startSshd, type SshRig } from "../rig/sshd";
import { DEV_FILE, PROD_FILE } from "../stacks/fixtures";
import { changeSnapshotPolicy } from "../../components/guest/snapshot";
import { changeSnapshotSection } from "../../scripts/synth/plan";
import { shellcheck } from "../support";

describe("ZFS snapshot commands", () => {
  it("one zfs snapshot per pool, every word quoted for bash", () => {
    expect(renderZfsSnapshot(["quickOS/lxc-disks/subvol-153-disk-0", "fastData/step-ca", "fastData/x y"], "phoenix-install-0a1b2c3d")).toBe(
      ["set -e", "zfs snapshot -- quickOS/lxc-disks/subvol-153-disk-0@phoenix-install-0a1b2c3d", "zfs snapshot -- fastData/step-ca@phoenix-install-0a1b2c3d 'fastData/x y@phoenix-install-0a1b2c3d'"].join("\n"),
    );
    expect(renderZfsDestroy(["t/a@it's $(rm -rf /)"])).toBe("set -e\nzfs destroy -- 't/a@it'\\''s $(rm -rf /)'");
    expect(renderZfsList(["t/a", "t/b c"])).toBe("zfs list -t snapshot,bookmark -H -p -o name,createtxg,creation,userrefs,clones -s createtxg -d 1 -- t/a 't/b c'");
    expect(renderZfsRollback(["rpool/data/subvol-103-disk-0", "tank/step-ca"], "p", true)).toBe(
      [
        "set -e",
        "zfs rollback -r -- rpool/data/subvol-103-disk-0@p",
        `out=$(zfs unmount -- rpool/data/subvol-103-disk-0 2>&1) || case $out in *"not currently mounted") ;; *) echo "$out" >&2; exit 1 ;; esac`,
        "zfs rollback -r -- tank/step-ca@p",
      ].join("\n"),
    );
  });

  it("shellcheck accepts what it renders", () => {
    const ds = ["rpool/data/subvol-103-disk-0", "tank/x y"];
    for (const [name, script] of Object.entries({ snapshot: renderZfsSnapshot(ds, "n"), list: renderZfsList(ds), destroy: renderZfsDestroy(["t/a@b"]), rollback: renderZfsRollback(ds, "n", false), sends: RENDER_RUNNING_SENDS })) shellcheck(name, script);
  });

  it("covers a container's ZFS volumes and its bind mounts of declared datasets; names what it cannot", () => {
    const storages = [
      { storage: "local-zfs", type: "zfspool", pool: "rpool/data" },
      { storage: "local", type: "dir" },
    ];
    const config = { rootfs: "local-zfs:subvol-103-disk-0,size=8G", mp1: "/tank/models,mp=/models", mp0: "/tank/step-ca,mp=/etc/step-ca", memory: 512 };
    expect(zfsPlan(config, storages, ["tank/step-ca", "tank/models"])).toEqual({ datasets: ["rpool/data/subvol-103-disk-0", "tank/step-ca", "tank/models"], obstacles: [] });
    // A linked clone's volume is <base>/<name>; its dataset is <pool>/<name>.
    expect(zfsPlan({ rootfs: "local-zfs:basevol-900-disk-0/subvol-103-disk-0,size=8G" }, storages, []).datasets).toEqual(["rpool/data/subvol-103-disk-0"]);
    expect(zfsPlan({ ...config, mp2: "/srv/other,mp=/o", mp3: "local:103/vm-103-disk-1.raw,mp=/x", dev0: "/dev/nvidia0" }, storages, ["tank/step-ca", "tank/models"]).obstacles).toEqual([
      "mp2 is a bind mount of /srv/other, not a dataset of host.zfs.datasets",
      "mp3 is on dir storage local, not a ZFS subvolume",
    ]);
  });

  it("reads zfs list and finds the snapshots a rollback would destroy", () => {
    const list = parseZfsList(
      ["a/r@phoenix-1\t10\t1700000000\t0\t-", "a/r#phoenix-1\t10\t1700000000\t-\t-", "a/r@autosnap_2023-11-14_22:13:20_hourly\t11\t1700000001\t1\t-", "a/r@phoenix-2\t12\t1700000002\t0\tpool/clone1,pool/clone2", "b/d@phoenix-1\t10\t1700000000\t0\t-", ""].join("\n"),
    );
    const { missing, newer } = newerThan(list, ["a/r", "b/d"], "phoenix-1");
    expect(missing).toEqual([]);
    // The bookmark of the target has its createtxg: not newer, not destroyed.
    expect(newer.map((s) => [s.full, ownerOf(s.name), keptBy(s)])).toEqual([
      ["a/r@autosnap_2023-11-14_22:13:20_hourly", "sanoid", ["1 hold (zfs holds)"]],
      ["a/r@phoenix-2", "Phoenix", ["clones pool/clone1, pool/clone2"]],
    ]);
    expect(newer[0]!.creation).toBe(1700000001);
    expect(newerThan(list, ["a/r", "b/d"], "phoenix-2").missing).toEqual(["b/d"]);
  });
});

describe("the stack's view", () => {
  it("prod stays editable under whenUnsupported: refuse: its bind-mounted containers take the ZFS path, its VMs PVE's", () => {
    const loaded = validateStack(readStackFile(PROD_FILE), { requireSecrets: false });
    if (loaded.ok !== true) throw new Error("prod stack");
    const config = loaded.config;
    expect(config.changeSnapshots.whenUnsupported).toBe("refuse");
    const connection = { host: "10.0.0.13", username: "root", privateKey: "k", hostKey: "ssh-ed25519 AAAA" };
    const policies = config.guests.map((g) => ({ g, p: changeSnapshotPolicy(config, g, { endpoint: "https://x", tokenId: "t", tokenSecret: "s" }, connection) }));
    expect(policies.filter(({ p }) => p.obstacles.length > 0).map(({ g, p }) => `${g.name}: ${p.obstacles.join("; ")}`)).toEqual([]);
    const viaZfs = policies.filter(({ p }) => p.zfs !== undefined).map(({ g }) => g.name);
    expect(viaZfs).toEqual(config.guests.filter((g) => g.kind === "lxc" && g.mounts.length > 0).map((g) => g.name));
    expect(viaZfs).toContain("step-ca");
    // Without a connection to the node there is no ZFS path: the bind mounts stop it, as before.
    const ca = config.guests.find((g) => g.name === "step-ca")!;
    expect(changeSnapshotPolicy(config, ca, { endpoint: "https://x", tokenId: "t", tokenSecret: "s" }).obstacles).toEqual(["/etc/step-ca is a bind mount of fastData/step-ca"]);
  });

  it("synth's plan names each guest's method; evaluation logs nothing for a guest that can be snapshotted, and warns once for one that cannot", async () => {
    const loaded = validateStack(readStackFile(PROD_FILE), { requireSecrets: false });
    if (loaded.ok !== true) throw new Error("prod stack");
    const config = loaded.config;
    const text = changeSnapshotSection(config).join("\n");
    expect(text).toMatch(/\| CT \d+ `step-ca` \| ZFS snapshot of its volumes and mounted datasets on the node \(PVE cannot: \/etc\/step-ca is a bind mount of fastData\/step-ca\) \|/);
    const vm = config.guests.find((g) => g.kind === "vm")!;
    expect(text).toContain(`| VM ${vm.vmid} \`${vm.name}\` | PVE snapshot (qm snapshot) |`);
    const pulumi = await import("@pulumi/pulumi");
    const logged: string[] = [];
    const info = vi.spyOn(pulumi.log, "info").mockImplementation(async (m: string) => void logged.push(`info ${m}`));
    const warn = vi.spyOn(pulumi.log, "warn").mockImplementation(async (m: string) => void logged.push(`warn ${m}`));
    try {
      const connection = { host: "10.0.0.13", username: "root", privateKey: "k", hostKey: "ssh-ed25519 AAAA" };
      const api = { endpoint: "https://x", tokenId: "t", tokenSecret: "s" };
      for (let i = 0; i < 3; i++) for (const g of config.guests) changeSnapshotPolicy(config, g, api, connection);
      expect(logged).toEqual([]);
      // No SSH to the node: the bind-mounted CA has no method at all; said once, however many components build its policy.
      const ca = config.guests.find((g) => g.name === "step-ca")!;
      for (let i = 0; i < 3; i++) changeSnapshotPolicy(config, ca, api);
      expect(logged).toEqual([expect.stringMatching(/^warn step-ca \(\d+\) cannot be snapshotted before a change: \/etc\/step-ca is a bind mount/)]);
      const noSsh = { ...config, proxmox: { ...config.proxmox, nodes: config.proxmox.nodes.map(({ ssh: _s, ...n }) => n) } } as StackConfig;
      expect(changeSnapshotSection(noSsh).join("\n")).toMatch(/`step-ca` \| \*\*none\*\*: \/etc\/step-ca is a bind mount of fastData\/step-ca; a change of its install or root settings is refused \|/);
    } finally {
      info.mockRestore();
      warn.mockRestore();
    }
  });
});

describe("a bind-mounted container snapshotted through ZFS, and rolled back", () => {
  const VMID = 103;
  const ROOT_DS = `rpool/data/subvol-${VMID}-disk-0`;
  let sim: Simulator;
  let api: PveApi;
  let rig: SshRig;
  let config: StackConfig;
  const clock = Date.now();
  const run: NodeRun = (command) => runCommand(rig.connection, command);
  const declared = () => config.host.zfs.datasets.map((d) => `${d.pool}/${d.name}`);

  beforeAll(async () => {
    [sim, rig] = await Promise.all([startSimulator({ timing: { taskDurationMs: 2, allocationMs: 1 }, now: () => clock }), startSshd()]);
    seedTemplate(sim);
    api = createPveClient({ endpoint: sim.endpoint, auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret }, tls: { caPem: sim.caPem }, task: { pollIntervalMs: 2 } });
    await api.createContainer("pve", { vmid: VMID, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4", hostname: "step-ca", start: true });
    sim.state.guests.get(VMID)!.config.mp0 = "/tank/step-ca,mp=/etc/step-ca";
    const loaded = validateStack(readStackFile(DEV_FILE), { requireSecrets: false });
    if (loaded.ok !== true) throw new Error("dev stack");
    config = { ...loaded.config, host: { ...loaded.config.host, node: "pve" } };
    // The node's datasets in the zfs stand-in: the container's subvolume is its root file system.
    rig.sandbox.update((s) => {
      s.datasets = { rpool: {}, "rpool/data": {}, [ROOT_DS]: { mountpoint: `/ct/${VMID}` }, tank: {}, "tank/step-ca": {}, "tank/models": {} };
    });
    rig.sandbox.write(`ct/${VMID}/etc/hostname`, "step-ca\n");
    rig.sandbox.write("tank/step-ca/ca.json", "v1\n");
    rig.sandbox.write("tank/models/README", "models\n");
  }, 60_000);
  afterAll(async () => {
    api?.close();
    await Promise.all([sim?.stop(), rig?.stop()]);
  });

  it("takes the change's snapshot through ZFS where PVE cannot, one zfs snapshot per pool, keeping the last N of Phoenix's", async () => {
    const base = { node: "pve", kind: "lxc" as const, vmid: VMID, change: "install", keep: 2, whenUnsupported: "refuse" as const, zfs: { connection: rig.connection, declared: declared() } };
    // The operator's, and another guest's on the same dataset (as on shared-models): neither is this guest's to prune.
    await run("zfs snapshot -- tank/step-ca@mine && zfs snapshot -- tank/step-ca@phoenix-install-0therca0");
    rig.sandbox.clearCalls();
    for (const trigger of ["a", "b", "c"]) expect((await takeChangeSnapshot(api, { ...base, trigger })).taken).toBe(`zfs:${snapshotName("install", trigger)}`);
    expect(rig.sandbox.calls("zfs").filter((c) => c[1] === "snapshot")[0]).toEqual(["zfs", "snapshot", "--", `${ROOT_DS}@${snapshotName("install", "a")}`]);
    const [b, c] = [snapshotName("install", "b"), snapshotName("install", "c")];
    expect(rig.sandbox.state().snapshots).toEqual(["tank/step-ca@mine", "tank/step-ca@phoenix-install-0therca0", `${ROOT_DS}@${b}`, `tank/step-ca@${b}`, `${ROOT_DS}@${c}`, `tank/step-ca@${c}`]);
    // No PVE snapshot was attempted.
    expect(sim.log.find("POST", "/nodes/{node}/lxc/{vmid}/snapshot")).toEqual([]);
    // Neither path: a bind mount of an undeclared path.
    await expect(takeChangeSnapshot(api, { ...base, trigger: "d", zfs: { ...base.zfs, declared: [] } })).rejects.toThrow(/mp0 is a bind mount \(\/tank\/step-ca\); nor by ZFS on the node: mp0 is a bind mount of \/tank\/step-ca, not a dataset/);
  }, 60_000);

  it("rollback stops the guest, rolls back each dataset and starts it; newer snapshots need --destroy-newer, shared datasets --change-shared", async () => {
    const [b, c] = [snapshotName("install", "b"), snapshotName("install", "c")];
    rig.sandbox.write(`ct/${VMID}/etc/hostname`, "broken\n");
    rig.sandbox.write("tank/step-ca/ca.json", "broken\n");
    const out: string[] = [];
    const deps = { load: () => config, api: async () => api, node: async () => run, out: (l: string) => out.push(l) };
    // Going to the older one would destroy the newer: listed with whose and how old, refused, nothing changed.
    expect(await runRollback(["dev", "step-ca", b], deps)).toBe(1);
    const text = out.join("\n");
    expect(text).toMatch(new RegExp(`zfs rollback -r ${ROOT_DS}@${b}[\\s\\S]*it destroys these 2 newer snapshots and bookmarks:\\n {7}${ROOT_DS}@${c} \\(Phoenix's, \\d+ min old, taken \\S+Z\\)\\n {7}tank/step-ca@${c} \\(Phoenix's`));
    expect(text).toContain("refused: 2 newer snapshots and bookmarks would be destroyed (listed above): run again with --destroy-newer to destroy them");
    // --force is for root settings only: it does not destroy snapshots.
    out.length = 0;
    expect(await runRollback(["dev", "step-ca", b, "--force"], deps)).toBe(1);
    expect(rig.sandbox.state().snapshots).toContain(`${ROOT_DS}@${c}`);
    expect(sim.state.guests.get(VMID)!.status).toBe("running");

    // A rollback that fails part-way: said so, with the order and the way to finish; the guest stays stopped.
    out.length = 0;
    const failing: NodeRun = async (command) => (command.includes("zfs rollback") ? { code: 1, stdout: "", stderr: "cannot rollback 'tank/step-ca': dataset is busy" } : run(command));
    expect(await runRollback(["dev", "step-ca"], { ...deps, node: async () => failing })).toBe(1);
    expect(out.join("\n")).toContain(`the datasets are rolled back in this order, and those before the one that failed are already at ${c}: ${ROOT_DS}, tank/step-ca`);
    expect(out.join("\n")).toContain(`run the same command again to finish, or start it as it is (pct start ${VMID})`);
    expect(sim.state.guests.get(VMID)!.status).toBe("stopped");
    await api.setGuestState("pve", "lxc", VMID, "start");

    out.length = 0;
    expect(await runRollback(["dev", "step-ca"], deps), out.join("\n")).toBe(0);
    expect(out.join("\n")).toMatch(new RegExp(`Rolling back its ZFS datasets to ${c}:[\\s\\S]*1\\. stop CT ${VMID}[\\s\\S]*zfs rollback ${ROOT_DS}@${c}, tank/step-ca@${c}[\\s\\S]*3\\. start CT ${VMID}[\\s\\S]*rolled back to ${c} and running`));
    expect(rig.sandbox.read(`ct/${VMID}/etc/hostname`)).toBe("step-ca\n");
    expect(rig.sandbox.read("tank/step-ca/ca.json")).toBe("v1\n");
    const lxc = sim.log.entries.filter((e) => e.method === "POST" && e.path.includes(`/lxc/${VMID}/status/`)).map((e) => e.template).slice(-2);
    expect(lxc).toEqual(["/nodes/{node}/lxc/{vmid}/status/stop", "/nodes/{node}/lxc/{vmid}/status/start"]);
    expect(sim.state.guests.get(VMID)!.status).toBe("running");

    // A dataset other guests mount too: the dev stack's ollama mounts tank/models.
    sim.state.guests.get(VMID)!.config.mp1 = "/tank/models,mp=/models";
    await takeChangeSnapshot(api, { node: "pve", kind: "lxc", vmid: VMID, change: "install", trigger: "e", keep: 2, whenUnsupported: "refuse", zfs: { connection: rig.connection, declared: declared() } });
    out.length = 0;
    expect(await runRollback(["dev", "step-ca"], deps)).toBe(1);
    expect(out.join("\n")).toMatch(/refused: tank\/models is also mounted by ollama \(914\): rolling it back changes their data too; run again with --change-shared/);
    out.length = 0;
    expect(await runRollback(["dev", "step-ca", "--change-shared"], deps), out.join("\n")).toBe(0);
    expect(out.join("\n")).toMatch(/--change-shared: tank\/models is also mounted by ollama/);
    delete sim.state.guests.get(VMID)!.config.mp1;
  }, 60_000);

  it("sanoid's newer snapshots go only with --destroy-newer; a held or cloned one, or a running send, stops the rollback whatever the flags", async () => {
    const e = snapshotName("install", "e");
    // sanoid took one on the CA's dataset after Phoenix's (sanoid v2.3.0: autosnap_<date>_<period>).
    const sanoid = "tank/step-ca@autosnap_2030-01-01_00:00:00_hourly";
    await run(`zfs snapshot -- '${sanoid}'`);
    rig.sandbox.write("tank/step-ca/ca.json", "after sanoid\n");
    const out: string[] = [];
    let sends = "";
    const withSends: NodeRun = (command) => (command === RENDER_RUNNING_SENDS ? Promise.resolve({ code: 0, stdout: sends, stderr: "" }) : run(command));
    const deps = { load: () => config, api: async () => api, node: async () => withSends, out: (l: string) => out.push(l) };

    await run(`zfs hold keep '${sanoid}'`);
    expect(await runRollback(["dev", "step-ca", "--destroy-newer", "--force"], deps)).toBe(1);
    expect(out.join("\n")).toContain(`${sanoid} (sanoid's, `);
    expect(out.join("\n")).toContain(`refused: ${sanoid} is kept by 1 hold (zfs holds): Phoenix does not destroy it`);
    await run(`zfs release keep '${sanoid}'`);
    rig.sandbox.update((s) => void ((s.snapshotMeta ??= {})[sanoid] = { ...s.snapshotMeta[sanoid], clones: ["tank/ca-copy"] }));
    out.length = 0;
    expect(await runRollback(["dev", "step-ca", "--destroy-newer"], deps)).toBe(1);
    expect(out.join("\n")).toContain(`refused: ${sanoid} is kept by clones tank/ca-copy`);
    rig.sandbox.update((s) => void delete s.snapshotMeta![sanoid]!.clones);
    sends = "4242 zfs send -I tank/step-ca@a tank/step-ca@autosnap_2030-01-01_00:00:00_hourly\n";
    out.length = 0;
    expect(await runRollback(["dev", "step-ca", "--destroy-newer"], deps)).toBe(1);
    expect(out.join("\n")).toContain("refused: a zfs send or receive is running on the node (4242 zfs send -I tank/step-ca@a");
    expect(rig.sandbox.state().snapshots).toContain(sanoid);
    expect(rig.sandbox.read("tank/step-ca/ca.json")).toBe("after sanoid\n");

    sends = "";
    out.length = 0;
    expect(await runRollback(["dev", "step-ca", "--destroy-newer"], deps), out.join("\n")).toBe(0);
    expect(out.join("\n")).toContain("--destroy-newer: destroying 1 newer snapshots and bookmarks");
    expect(rig.sandbox.state().snapshots).not.toContain(sanoid);
    expect(rig.sandbox.state().snapshots).toContain(`tank/step-ca@${e}`);
    expect(rig.sandbox.read("tank/step-ca/ca.json")).toBe("v1\n");
  }, 60_000);

  it("a snapshot taken between the plan and the rollback (sanoid's, while the guest stopped) is not destroyed unlisted: refused, the guest started again", async () => {
    const [e, f] = [snapshotName("install", "e"), snapshotName("install", "f")];
    await takeChangeSnapshot(api, { node: "pve", kind: "lxc", vmid: VMID, change: "install", trigger: "f", keep: 5, whenUnsupported: "refuse", zfs: { connection: rig.connection, declared: declared() } });
    rig.sandbox.write("tank/step-ca/ca.json", "after f\n");
    const late = "tank/step-ca@autosnap_2030-01-01_00:15:00_frequently";
    let lists = 0;
    const racing: NodeRun = async (command) => {
      if (command.startsWith("zfs list") && ++lists === 2) await run(`zfs snapshot -- '${late}'`);
      return run(command);
    };
    const out: string[] = [];
    const deps = { load: () => config, api: async () => api, node: async () => racing, out: (l: string) => out.push(l) };
    expect(await runRollback(["dev", "step-ca", e, "--destroy-newer"], deps), out.join("\n")).toBe(1);
    expect(out.join("\n")).toContain(`refused: ${late} appeared since the plan (sanoid's): run again to see the new plan`);
    expect(rig.sandbox.state().snapshots).toEqual(expect.arrayContaining([late, `tank/step-ca@${f}`, `${ROOT_DS}@${f}`]));
    expect(rig.sandbox.read("tank/step-ca/ca.json")).toBe("after f\n");
    expect(sim.state.guests.get(VMID)!.status).toBe("running");
  }, 60_000);
});
