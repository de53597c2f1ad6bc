/**
 * The snapshot before a change (providers/guest/guest-snapshot.ts), the rollback command's
 * arguments and the restore drill (scripts/doctor/restore-drill.ts) against the PVE simulator.
 */
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rootSettingsChanges, snapshotName, snapshotObstacles, snapshotsToPrune, takeChangeSnapshot, implementation } from "../../providers/guest/guest-snapshot";
import { createPveClient, type PveApi } from "../../providers/pve";
import { parseArgs } from "../../scripts/rollback";
import { parseArgs as doctorArgs } from "../../scripts/doctor";
import { restoreDrill } from "../../scripts/doctor/restore-drill";
import { readStackFile, validateStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { DEBIAN_TEMPLATE, seedTemplate } from "../pve-sim/http";
import { startSimulator, type Simulator } from "../pve-sim";
import { DEV_FILE, ROOT } from "../stacks/fixtures";
import { snapshotMethod } from "../../components/guest/snapshot";

describe("snapshot names, pruning and obstacles", () => {
  it("names a snapshot phoenix-<change>-<8 hex>, a valid pve-configid of at most 40 characters", () => {
    expect(snapshotName("install", "abc")).toMatch(/^phoenix-install-[0-9a-f]{8}$/);
    expect(snapshotName("install", "abc")).not.toBe(snapshotName("install", "abd"));
    const long = snapshotName("Root Settings & a very long change name indeed", "x");
    expect(long.length).toBeLessThanOrEqual(40);
    expect(long).toMatch(/^[a-z][a-z0-9_-]+$/i);
  });

  it("prunes only Phoenix's snapshots beyond the newest N", () => {
    const list = [
      { name: "phoenix-install-1", snaptime: 1 },
      { name: "before-upgrade", snaptime: 2 },
      { name: "phoenix-install-2", snaptime: 3 },
      { name: "phoenix-install-3", snaptime: 4 },
      { name: "phoenix-install-4", snaptime: 5 },
    ];
    expect(snapshotsToPrune(list, 3)).toEqual(["phoenix-install-1"]);
    expect(snapshotsToPrune(list, 1)).toEqual(["phoenix-install-1", "phoenix-install-2", "phoenix-install-3"]);
  });

  it("names bind and device mounts and storages without snapshots; skips QEMU cd-roms", () => {
    const types = (id: string) => ({ "local-zfs": "zfspool", local: "dir" })[id];
    expect(snapshotObstacles("lxc", { rootfs: "local-zfs:subvol-1-disk-0,size=8G", mp0: "/tank/models,mp=/models,backup=0", mp1: "local:1/vm-1-disk-1.raw,mp=/x" }, types)).toEqual([
      "mp0 is a bind mount (/tank/models)",
      "mp1 is on dir storage local, which cannot snapshot this volume",
    ]);
    expect(snapshotObstacles("qemu", { scsi0: "local-zfs:vm-1-disk-0,size=8G", ide2: "local-zfs:vm-1-cloudinit,media=cdrom" }, types)).toEqual([]);
  });

  it("from the stack: a root disk on Ceph RBD or ZFS is PVE's to snapshot, on a dir storage it is not", () => {
    const loaded = validateStack(readStackFile(path.join(ROOT, "Pulumi.cluster.yaml")), { requireSecrets: false });
    if (loaded.ok !== true) throw new Error("the cluster stack does not validate");
    const onCeph = loaded.config.guests.filter((g) => g.storage === "ceph-vm" && (g.kind === "vm" || g.mounts.length === 0));
    expect(onCeph.length).toBeGreaterThan(0);
    for (const g of onCeph) expect(snapshotMethod(loaded.config, g, true)).toEqual({ method: "pve", pveObstacles: [] });
    const onDir = { ...onCeph[0]!, storage: "local" };
    expect(snapshotMethod(loaded.config, onDir, true).pveObstacles).toEqual(["its root disk is on dir storage local, which cannot snapshot it"]);
  });

  it("compares root settings only", () => {
    expect(rootSettingsChanges({ memory: 1, features: "nesting=1", dev0: "/dev/nvidia0" }, { memory: 2, features: "nesting=1,keyctl=1" })).toEqual(["dev0: /dev/nvidia0 → (none)", "features: nesting=1 → nesting=1,keyctl=1"]);
  });

  it("rollback's arguments", () => {
    expect(parseArgs(["dev", "traefik"])).toEqual({ stack: "dev", guest: "traefik", force: false, destroyNewer: false, changeShared: false });
    expect(parseArgs(["dev", "102", "phoenix-install-1", "--force"])).toEqual({ stack: "dev", guest: "102", snapshot: "phoenix-install-1", force: true, destroyNewer: false, changeShared: false });
    expect(parseArgs(["dev", "102", "--destroy-newer", "--change-shared"])).toMatchObject({ force: false, destroyNewer: true, changeShared: true });
    expect(parseArgs(["dev"])).toMatch(/^usage/);
    expect(parseArgs(["dev", "x", "--yes"])).toMatch(/^unknown option --yes/);
    // Hostile values: a name that looks like an option is refused, never taken for the snapshot; a flag takes no value.
    expect(parseArgs(["dev", "102", "-rf"])).toMatch(/^unknown option -rf\n/);
    expect(parseArgs(["dev", "102", "--destroy-newer=no"])).toMatch(/^unknown option --destroy-newer=no/);
    expect(parseArgs(["dev", "102", "a; rm -rf /", "--force"])).toMatchObject({ snapshot: "a; rm -rf /", force: true });
    expect(doctorArgs(["prod", "--restore-drill", "traefik"])).toMatchObject({ stack: "prod", restoreDrill: "traefik" });
    expect(doctorArgs(["prod", "--restore-drill"])).toMatch(/^--restore-drill needs a guest/);
  });
});

describe("against the simulator", () => {
  let sim: Simulator;
  let api: PveApi;
  let config: StackConfig;
  /** The simulator's clock: snapshots a second apart, so that their order is their snaptime's. */
  let clock = Date.now();
  const access = () => ({ endpoint: sim.endpoint, tokenId: sim.token.id, tokenSecret: sim.token.secret, caPem: sim.caPem });
  beforeAll(async () => {
    sim = await startSimulator({ timing: { taskDurationMs: 2, allocationMs: 1 }, now: () => clock });
    seedTemplate(sim);
    api = createPveClient({ endpoint: sim.endpoint, auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret }, tls: { caPem: sim.caPem }, task: { pollIntervalMs: 2 } });
    await api.createContainer("pve", { vmid: 120, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4", hostname: "web", start: true });
    const loaded = validateStack(readStackFile(DEV_FILE), { requireSecrets: false });
    if (loaded.ok !== true) throw new Error("dev stack");
    config = loaded.config;
  });
  afterAll(async () => {
    api?.close();
    await sim?.stop();
  });

  it("takes the change's snapshot, keeps the last N of Phoenix's and leaves the others", async () => {
    await api.createSnapshot("pve", "lxc", 120, "mine", "the operator's");
    const base = { node: "pve", kind: "lxc" as const, vmid: 120, change: "install", keep: 2, whenUnsupported: "refuse" as const };
    for (const trigger of ["a", "b", "c"]) {
      clock += 1000;
      expect((await takeChangeSnapshot(api, { ...base, trigger })).taken).toBe(snapshotName("install", trigger));
    }
    expect((await api.snapshots("pve", "lxc", 120)).map((s) => s.name)).toEqual(["mine", snapshotName("install", "b"), snapshotName("install", "c"), "current"]);
  });

  it("refuses, or proceeds without, when a bind mount stops the snapshot; the provider's diff says so in preview", async () => {
    sim.state.guests.get(120)!.config.mp0 = "/tank/data,mp=/data";
    const base = { node: "pve", kind: "lxc" as const, vmid: 120, change: "install", trigger: "d", keep: 2 };
    await expect(takeChangeSnapshot(api, { ...base, whenUnsupported: "refuse" })).rejects.toThrow(/CT 120 cannot be snapshotted before its install: mp0 is a bind mount \(\/tank\/data\)\. Set changeSnapshots\.whenUnsupported: proceed/);
    expect(await takeChangeSnapshot(api, { ...base, whenUnsupported: "proceed" })).toMatchObject({ skipped: expect.stringMatching(/bind mount/), pruned: [] });
    delete sim.state.guests.get(120)!.config.mp0;
    const inputs = { ...base, api: access(), whenUnsupported: "refuse" as const, obstacles: ["/data is a bind mount of tank/data"] };
    await expect(implementation.diff("id", { ...inputs, trigger: "old" }, inputs)).rejects.toThrow(/CT 120: its install would change without a snapshot first: \/data is a bind mount/);
    expect(await implementation.diff("id", inputs, inputs)).toMatchObject({ changes: false });
    // The first run takes none: a new guest has nothing to go back to.
    const before = sim.log.mutating().length;
    await implementation.create({ ...inputs, obstacles: [] });
    expect(sim.log.mutating().length).toBe(before);
  });

  it("the restore drill: no backup is a failure; with one, restore, start, check and cleanup, the scratch guest gone", async () => {
    const guest = { ...config.guests.find((g) => g.vmid === 102)!, vmid: 120, node: "pve", storage: "local-zfs" };
    const cfg = { ...config, host: { ...config.host, node: "pve" } };
    const exec = { run: async () => ({ code: 0, stdout: "", stderr: "" }) };
    const none = await restoreDrill(cfg, guest, api, { checks: [], exec });
    expect(none.findings).toEqual([expect.objectContaining({ check: "backup", status: "fail", detail: expect.stringMatching(/^no backup of 120 on local/) })]);
    expect((await api.runTask("POST", "/nodes/pve/vzdump", { vmid: 120, storage: "local" }))?.exitstatus).toBe("OK");
    const guests = [...sim.state.guests.keys()];
    const drill = await restoreDrill(cfg, guest, api, { checks: [], exec });
    expect(drill.findings.map((f) => `${f.check} ${f.status}`)).toEqual(["backup ok", "restore ok", "start ok", "exec ok", "cleanup ok"]);
    expect([...sim.state.guests.keys()]).toEqual(guests);
    const create = sim.log.find("POST", "/nodes/{node}/lxc").at(-1)!;
    expect(create.params).toMatchObject({ restore: "1", unique: "1", onboot: "0", rootfs: `local-zfs:${guest.diskGiB}`, net0: "name=eth0,bridge=vmbr0,link_down=1" });
    // A failing check inside still removes the scratch guest.
    const failing = await restoreDrill(cfg, guest, api, { checks: [], exec: { run: async () => ({ code: 1, stdout: "", stderr: "boom" }) } });
    expect(failing.findings.map((f) => `${f.check} ${f.status}`)).toEqual(["backup ok", "restore ok", "start ok", "exec fail", "cleanup ok"]);
    expect([...sim.state.guests.keys()]).toEqual(guests);
  });
});
