import { afterEach, describe, expect, it } from "vitest";
import { faultsFromEnv } from "./faults";
import { storageSecrets } from "./misc";
import { DEBIAN_TEMPLATE, form, rawCall, seedTemplate, settle } from "./http";
import { startSimulator, type Simulator, type SimulatorOptions } from "./server";

let sim: Simulator | undefined;

async function start(opts: SimulatorOptions = {}): Promise<Simulator> {
  sim = await startSimulator({ timing: { taskDurationMs: 5 }, ...opts });
  seedTemplate(sim);
  return sim;
}

afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

async function ok(s: Simulator, method: string, path: string, params: Record<string, string | number | string[]> = {}): Promise<unknown> {
  const res = await rawCall(s, method, path, method === "GET" || method === "DELETE" ? { query: form(params) } : { form: form(params) });
  expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body.data;
}

async function taskOf(s: Simulator, upid: unknown): Promise<{ status: string; exitstatus?: string; log: string[] }> {
  await settle(s);
  const path = `/nodes/pve/tasks/${encodeURIComponent(String(upid))}`;
  const status = (await ok(s, "GET", `${path}/status`)) as { status: string; exitstatus?: string };
  const log = ((await ok(s, "GET", `${path}/log`)) as Array<{ t: string }>).map((l) => l.t);
  return { ...status, log };
}

async function makeTemplate(s: Simulator, vmid: number): Promise<void> {
  await ok(s, "POST", "/nodes/pve/lxc", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "base" });
  await settle(s);
  // pve-container answers null here although a vztemplate worker runs (PVE-API.md §2.4).
  expect(await ok(s, "POST", `/nodes/pve/lxc/${vmid}/template`)).toBeNull();
  await settle(s);
}

describe("simulator state and tasks", () => {
  it("templates a container and makes linked clones of its base volume", async () => {
    const s = await start();
    await makeTemplate(s, 900);
    const tpl = (await ok(s, "GET", "/nodes/pve/lxc/900/config")) as Record<string, unknown>;
    expect([tpl.template, tpl.rootfs]).toEqual([1, "local-zfs:basevol-900-disk-0,size=8G"]);

    const upid = await ok(s, "POST", "/nodes/pve/lxc/900/clone", { newid: 901, hostname: "ca" });
    expect(String(upid)).toMatch(/^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:vzclone:900:root@pam!phoenix:$/);
    expect((await taskOf(s, upid)).exitstatus).toBe("OK");
    const clone = (await ok(s, "GET", "/nodes/pve/lxc/901/config")) as Record<string, unknown>;
    expect(clone.rootfs).toBe("local-zfs:basevol-900-disk-0/subvol-901-disk-0,size=8G");
    expect(clone.hostname).toBe("ca");
    expect(clone.template).toBeUndefined();

    const destroyTemplate = await ok(s, "DELETE", "/nodes/pve/lxc/900");
    const t = await taskOf(s, destroyTemplate);
    expect(t.exitstatus).toMatch(/base volume 'basevol-900-disk-0' is still in use by linked clones/);
  });

  it("locks a container template for the whole clone, so a concurrent clone fails with CT is locked (disk)", async () => {
    const s = await start({ timing: { taskDurationMs: 5 } });
    await makeTemplate(s, 900);
    // Long enough that the second clone arrives while the first still runs, even on a loaded machine.
    s.timing.taskDurationMs = 300;
    const [a, b] = await Promise.all([
      rawCall(s, "POST", "/nodes/pve/lxc/900/clone", { form: "newid=801" }),
      rawCall(s, "POST", "/nodes/pve/lxc/900/clone", { form: "newid=802" }),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([200, 500]);
    const failed = a.status === 500 ? a : b;
    expect(failed.body.message).toBe("CT is locked (disk)\n");
    expect(failed.reason).toBe("CT is locked (disk)");
    await settle(s);
    expect(s.state.guests.get(900)?.config.lock).toBeUndefined();
  });

  it("fails allocations that wait longer than the storage lock timeout", async () => {
    const s = await start({ timing: { taskDurationMs: 1, allocationMs: 200, lockTimeoutMs: 250 } });
    const upids = await Promise.all(
      [501, 502, 503, 504, 505, 506].map((vmid) => ok(s, "POST", "/nodes/pve/lxc", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" })),
    );
    const results = await Promise.all(upids.map((u) => taskOf(s, u)));
    const failed = results.filter((r) => r.exitstatus !== "OK");
    expect(failed.length).toBeGreaterThan(0);
    for (const f of failed) {
      expect(f.exitstatus).toBe("can't lock file '/var/lock/pve-manager/pve-storage-local-zfs' - got timeout");
      expect(f.log[f.log.length - 1]).toBe("TASK ERROR: can't lock file '/var/lock/pve-manager/pve-storage-local-zfs' - got timeout");
    }
    // A failed create leaves no half-made container behind.
    for (const [i, r] of results.entries()) expect(s.state.guests.has(501 + i)).toBe(r.exitstatus === "OK");
  });

  it("answers task status and log like PVE, and 400 for unknown tasks", async () => {
    // Long enough that the status call sees the task running on a loaded machine.
    const s = await start({ timing: { taskDurationMs: 1_000 } });
    const upid = String(await ok(s, "POST", "/nodes/pve/lxc", { vmid: 110, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" }));
    const running = (await ok(s, "GET", `/nodes/pve/tasks/${encodeURIComponent(upid)}/status`)) as Record<string, unknown>;
    expect(running).toMatchObject({ status: "running", type: "vzcreate", id: "110", user: "root@pam", tokenid: "phoenix" });
    expect(running.exitstatus).toBeUndefined();
    const done = await taskOf(s, upid);
    expect([done.status, done.exitstatus, done.log[done.log.length - 1]]).toEqual(["stopped", "OK", "TASK OK"]);
    const missing = await rawCall(s, "GET", `/nodes/pve/tasks/${encodeURIComponent(upid.replace("vzcreate", "vzstart"))}/status`);
    expect([missing.status, missing.body.errors]).toEqual([400, { upid: "no such task" }]);
  });

  it("refuses to start a VM with pcie=1 on the default machine type", async () => {
    const s = await start();
    await ok(s, "POST", "/cluster/mapping/pci", { id: "gpu-3090", map: "node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14" });
    await ok(s, "POST", "/nodes/pve/qemu", { vmid: 1001, scsi0: "local-zfs:32", hostpci0: "mapping=gpu-3090,pcie=1" });
    await settle(s);
    const cfg = (await ok(s, "GET", "/nodes/pve/qemu/1001/config")) as Record<string, unknown>;
    expect(cfg.scsi0).toBe("local-zfs:vm-1001-disk-0,size=32G");
    const t = await taskOf(s, await ok(s, "POST", "/nodes/pve/qemu/1001/status/start"));
    expect(t.exitstatus).toBe("q35 machine model is not enabled");
  });

  it("takes a PBS storage as PBSPlugin.pm does: server and datastore required and fixed, backup content by default, the password kept apart and never answered", async () => {
    const s = await start();
    const fingerprint = Array.from({ length: 32 }, () => "ab").join(":");
    const missing = await rawCall(s, "POST", "/storage", { form: form({ storage: "pbs1", type: "pbs", server: "10.0.0.50", username: "backup@pbs" }) });
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body)).toContain("datastore");
    await ok(s, "POST", "/storage", { storage: "pbs1", type: "pbs", server: "10.0.0.50", datastore: "phoenix", username: "backup@pbs", password: "hunter2-pbs", fingerprint, namespace: "dev" });
    const shown = (await ok(s, "GET", "/storage/pbs1")) as Record<string, unknown>;
    expect(shown).toMatchObject({ storage: "pbs1", type: "pbs", server: "10.0.0.50", datastore: "phoenix", content: "backup", fingerprint });
    expect(JSON.stringify([shown, await ok(s, "GET", "/storage"), await ok(s, "GET", "/nodes/pve/storage")])).not.toContain("hunter2");
    expect(storageSecrets(s.state, "pbs1")).toEqual({ password: "hunter2-pbs" });
    await ok(s, "PUT", "/storage/pbs1", { password: "hunter3-pbs" });
    expect(storageSecrets(s.state, "pbs1")).toEqual({ password: "hunter3-pbs" });
    const fixed = await rawCall(s, "PUT", "/storage/pbs1", { form: form({ server: "10.0.0.51" }) });
    expect(fixed.status).toBe(400);
    await ok(s, "DELETE", "/storage/pbs1");
    expect(storageSecrets(s.state, "pbs1")).toBeUndefined();
  });

  it("takes a PBS encryption key as PBSPlugin.pm on_add_hook does: JSON with data or refused, kept apart, its fingerprint in the config", async () => {
    const s = await start();
    const base = { storage: "pbs2", type: "pbs", server: "10.0.0.50", datastore: "phoenix", username: "backup@pbs", password: "pw" };
    const bad = await rawCall(s, "POST", "/storage", { form: form({ ...base, "encryption-key": "not-a-key" }) });
    expect(JSON.stringify(bad.body)).toContain("Value does not seems like a valid, JSON formatted encryption key!");
    const key = JSON.stringify({ kdf: null, data: "a2V5", fingerprint: "12:34" });
    await ok(s, "POST", "/storage", { ...base, "encryption-key": key });
    const shown = (await ok(s, "GET", "/storage/pbs2")) as Record<string, unknown>;
    expect(shown["encryption-key"]).toBe("12:34");
    expect(JSON.stringify(shown)).not.toContain("a2V5");
    expect(storageSecrets(s.state, "pbs2")).toEqual({ password: "pw", "encryption-key": key });
  });

  it("is seeded like the prod host", async () => {
    const s = await start();
    const pci = (await ok(s, "GET", "/nodes/pve/hardware/pci")) as Array<{ id: string; vendor: string; class: string; iommugroup: number }>;
    const gpus = pci.filter((d) => d.vendor === "0x10de" && d.class === "0x030000");
    expect(gpus.map((g) => g.id)).toEqual(["0000:01:00.0", "0000:41:00.0"]);
    expect(new Set(gpus.map((g) => g.iommugroup)).size).toBe(2);
    // The default class blacklist (05;06;0b) hides bridges.
    expect(pci.some((d) => d.class.startsWith("0x06"))).toBe(false);
    const storages = (await ok(s, "GET", "/nodes/pve/storage")) as Array<{ storage: string }>;
    expect(storages.map((x) => x.storage).sort()).toEqual(["local", "local-zfs"]);
    const disks = (await ok(s, "GET", "/nodes/pve/disks/list")) as Array<{ devpath: string; type: string }>;
    expect(disks.filter((d) => d.type === "nvme").length).toBe(3);
    const apl = (await ok(s, "GET", "/nodes/pve/aplinfo")) as Array<{ template: string }>;
    expect(apl.some((e) => e.template === "debian-12-standard_12.12-1_amd64.tar.zst")).toBe(true);
    const unknown = await rawCall(s, "POST", "/nodes/pve/aplinfo", { form: "storage=local&template=debian-99.tar.zst" });
    expect([unknown.status, unknown.body.errors]).toEqual([400, { template: "no such template" }]);
  });
});

describe("simulator faults and request log", () => {
  it("injects 5xx, lock timeouts, dropped connections and failed tasks where asked", async () => {
    const s = await start();
    s.faults.add({ kind: "http5xx", method: "GET", path: "/nodes", count: 2, status: 503 });
    expect((await rawCall(s, "GET", "/nodes")).status).toBe(503);
    expect((await rawCall(s, "GET", "/nodes")).status).toBe(503);
    expect((await rawCall(s, "GET", "/nodes")).status).toBe(200);

    s.faults.add({ kind: "lockTimeout", method: "PUT", path: "/nodes/{node}/lxc/{vmid}/config", count: 1 });
    const locked = await rawCall(s, "PUT", "/nodes/pve/lxc/120/config", { form: "cores=2" });
    expect([locked.status, locked.body.message]).toEqual([500, "can't lock file '/run/lock/lxc/pve-config-120.lock' - got timeout\n"]);

    s.faults.add({ kind: "drop", path: /\/version$/, count: 1 });
    await expect(rawCall(s, "GET", "/version")).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect((await rawCall(s, "GET", "/version")).status).toBe(200);

    s.faults.add({ kind: "failTask", path: "/nodes/{node}/lxc", method: "POST", count: 1, message: "unable to create CT 130 - disk full" });
    const t = await taskOf(s, await ok(s, "POST", "/nodes/pve/lxc", { vmid: 130, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" }));
    expect(t.exitstatus).toBe("unable to create CT 130 - disk full");
    expect(s.state.guests.has(130)).toBe(false);
  });

  it("delays requests by the configured latency", async () => {
    const s = await start({ faults: [{ kind: "latency", method: "GET", latencyMs: 120 }] });
    const t0 = Date.now();
    await ok(s, "GET", "/version");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(110);
  });

  it("records every request so tests can count mutating calls", async () => {
    const s = await start();
    s.log.clear();
    await ok(s, "GET", "/nodes/pve/lxc");
    await ok(s, "POST", "/cluster/firewall/groups", { group: "web" });
    await rawCall(s, "POST", "/cluster/firewall/groups", { form: "group=web" });
    const mutating = s.log.mutating();
    expect(mutating.map((e) => [e.method, e.template, e.status])).toEqual([
      ["POST", "/cluster/firewall/groups", 200],
      // pve-firewall@6.0.4 src/PVE/API2/Firewall/Groups.pm: a duplicate name is raise_param_exc, a 400.
      ["POST", "/cluster/firewall/groups", 400],
    ]);
    expect(s.log.find("GET", "/nodes/{node}/lxc")[0]?.user).toBe("root@pam!phoenix");
  });

  it("parses PVE_SIM_FAULTS and PVE_SIM_LATENCY", () => {
    expect(faultsFromEnv("5xx:0.1,lock:0.05", "POST:200")).toEqual([
      { kind: "http5xx", probability: 0.1, message: undefined },
      { kind: "lockTimeout", probability: 0.05, method: "POST", message: undefined },
      { kind: "latency", latencyMs: 200, method: "POST" },
    ]);
    expect(() => faultsFromEnv("explode:2", undefined)).toThrow(/PVE_SIM_FAULTS: cannot parse 'explode:2'/);
  });
});

/** A request's status and PVE's message and per-parameter errors, for the refusals below. */
async function refused(s: Simulator, method: string, path: string, params: Record<string, string | number> = {}): Promise<[number, string | undefined, Record<string, string> | undefined]> {
  const res = await rawCall(s, method, path, method === "GET" || method === "DELETE" ? { query: form(params) } : { form: form(params) });
  return [res.status, res.body.message, res.body.errors];
}

describe("simulator agrees with upstream PVE", () => {
  const rules = "/nodes/pve/lxc/120/firewall/rules";
  const list = async (s: Simulator, path = rules) => (await ok(s, "GET", path)) as Array<Record<string, unknown>>;

  it("inserts every posted rule at the top whatever pos says, stores a missing enable as 0, and moves like Rules.pm", async () => {
    const s = await start();
    await ok(s, "POST", "/nodes/pve/lxc", { vmid: 120, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" });
    await settle(s);
    for (const dport of ["1", "2", "3"]) await ok(s, "POST", rules, { type: "in", action: "ACCEPT", proto: "tcp", dport, pos: 5, ...(dport === "3" ? { enable: 1 } : {}) });
    const got = await list(s);
    expect(got.map((r) => [r.pos, r.dport, r.enable])).toEqual([[0, "3", 1], [1, "2", 0], [2, "1", 0]]);
    // One digest for the whole list (copy_list_with_digest), on every entry.
    expect(new Set(got.map((r) => r.digest)).size).toBe(1);
    // moveto: the rule lands before the one that was at `moveto` (3,2,1 → 2,3,1), or last past the end.
    await ok(s, "PUT", `${rules}/0`, { moveto: 2 });
    expect((await list(s)).map((r) => r.dport)).toEqual(["2", "3", "1"]);
    await ok(s, "PUT", `${rules}/0`, { moveto: 9 });
    expect((await list(s)).map((r) => r.dport)).toEqual(["3", "1", "2"]);
    await ok(s, "PUT", `${rules}/2`, { moveto: 0 });
    expect((await list(s)).map((r) => r.dport)).toEqual(["2", "3", "1"]);
    // A stale digest is refused on delete; no digest is never checked on create.
    expect(await refused(s, "DELETE", `${rules}/0`, { digest: String(got[0]?.digest) })).toEqual([500, "detected modified configuration - file changed by other user? Try again.\n", undefined]);
    expect(await refused(s, "DELETE", `${rules}/7`)).toEqual([500, "no rule at position 7\n", undefined]);
  });

  it("verifies rules per scope: canonical macro names, net<N> interfaces on guests, none in security groups", async () => {
    const s = await start();
    await ok(s, "POST", "/nodes/pve/lxc", { vmid: 120, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" });
    await settle(s);
    await ok(s, "POST", rules, { type: "in", action: "ACCEPT", macro: "ssh", iface: "net0", enable: 1 });
    expect((await list(s))[0]).toMatchObject({ macro: "SSH", iface: "net0" });
    expect(await refused(s, "POST", rules, { type: "in", action: "ACCEPT", macro: "Telnetz" })).toEqual([400, "Parameter verification failed.\n", { macro: "unknown macro 'Telnetz'" }]);
    expect(await refused(s, "POST", rules, { type: "in", action: "ACCEPT", iface: "eth0" })).toEqual([400, "Parameter verification failed.\n", { iface: "value does not match the regex pattern 'net\\d+'" }]);
    expect(await refused(s, "POST", rules, { type: "forward", action: "ACCEPT" })).toEqual([400, "Parameter verification failed.\n", { type: "invalid rule type 'forward' for rule_env 'ct'" }]);
    expect(await refused(s, "POST", rules, { type: "in", action: "ACCEPT", dport: "22" })).toEqual([400, "Parameter verification failed.\n", { proto: "missing property - 'dport' requires this property" }]);
    await ok(s, "POST", "/cluster/firewall/groups", { group: "web" });
    const group = "/cluster/firewall/groups/web";
    expect(await refused(s, "POST", group, { type: "in", action: "ACCEPT", iface: "net0" })).toEqual([400, "Parameter verification failed.\n", { type: "parameter -i not allowed for this rule type" }]);
    expect(await refused(s, "POST", group, { type: "group", action: "web" })).toEqual([400, "Parameter verification failed.\n", { type: "invalid rule type 'group' for rule_env 'group'" }]);
    // A host rule may name any interface.
    await ok(s, "POST", "/nodes/pve/firewall/rules", { type: "in", action: "DROP", iface: "vmbr0" });
  });

  it("renames a security group from `rename` to `group` and follows it in the rules that insert it", async () => {
    const s = await start();
    await ok(s, "POST", "/cluster/firewall/groups", { group: "web", comment: "front" });
    await ok(s, "POST", "/cluster/firewall/rules", { type: "group", action: "web", enable: 1 });
    await ok(s, "POST", "/cluster/firewall/groups", { group: "www", rename: "web" });
    expect((await ok(s, "GET", "/cluster/firewall/groups")) as unknown[]).toMatchObject([{ group: "www", comment: "front" }]);
    expect((await list(s, "/cluster/firewall/rules"))[0]).toMatchObject({ type: "group", action: "www" });
    expect(await refused(s, "POST", "/cluster/firewall/groups", { group: "x1", rename: "web" })).toEqual([400, "Parameter verification failed.\n", { group: "Security group 'web' does not exist" }]);
  });

  it("checks a container's lock inside the start and stop tasks, and a template inside start", async () => {
    const s = await start();
    await ok(s, "POST", "/nodes/pve/lxc", { vmid: 121, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" });
    await settle(s);
    s.state.guests.get(121)!.config.lock = "backup";
    const start1 = await ok(s, "POST", "/nodes/pve/lxc/121/status/start");
    expect((await taskOf(s, start1)).exitstatus).toBe("CT is locked (backup)");
    delete s.state.guests.get(121)!.config.lock;
    await taskOf(s, await ok(s, "POST", "/nodes/pve/lxc/121/status/start"));
    s.state.guests.get(121)!.config.lock = "backup";
    expect((await taskOf(s, await ok(s, "POST", "/nodes/pve/lxc/121/status/stop"))).exitstatus).toBe("CT is locked (backup)");
    s.state.guests.get(121)!.config.lock = "mounted";
    expect((await taskOf(s, await ok(s, "POST", "/nodes/pve/lxc/121/status/stop"))).exitstatus).toBe("OK");
    delete s.state.guests.get(121)!.config.lock;
    await ok(s, "POST", "/nodes/pve/lxc/121/template");
    await settle(s);
    expect(await refused(s, "POST", "/nodes/pve/lxc/121/template")).toEqual([500, "you can't convert a template to a template\n", undefined]);
    expect((await taskOf(s, await ok(s, "POST", "/nodes/pve/lxc/121/status/start"))).exitstatus).toBe("you can't start a CT if it's a template");
  });

  it("refuses a same-size container resize, any unprivileged change, and container disks on storage without rootdir", async () => {
    const s = await start();
    await ok(s, "POST", "/nodes/pve/lxc", { vmid: 122, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" });
    await settle(s);
    expect(await refused(s, "PUT", "/nodes/pve/lxc/122/resize", { disk: "rootfs", size: "4G" })).toEqual([500, "disk is already at specified size\n", undefined]);
    expect(await refused(s, "PUT", "/nodes/pve/lxc/122/config", { unprivileged: 1 })).toEqual([500, "unable to modify read-only option: 'unprivileged'\n", undefined]);
    expect(await refused(s, "PUT", "/nodes/pve/lxc/122/config", { delete: "unprivileged" })).toEqual([500, "unable to delete read-only option: 'unprivileged'\n", undefined]);
    expect(await refused(s, "POST", "/nodes/pve/lxc", { vmid: 123, ostemplate: DEBIAN_TEMPLATE, rootfs: "local:4" })).toEqual([400, "Parameter verification failed.\n", { storage: "storage 'local' does not support container directories" }]);
    expect(s.state.guests.has(123)).toBe(false);
    // A VM's same-size resize is a no-op task; a smaller size fails the task.
    await ok(s, "POST", "/nodes/pve/qemu", { vmid: 124, scsi0: "local-zfs:8" });
    await settle(s);
    expect((await taskOf(s, await ok(s, "PUT", "/nodes/pve/qemu/124/resize", { disk: "scsi0", size: "8G" }))).exitstatus).toBe("OK");
    expect((await taskOf(s, await ok(s, "PUT", "/nodes/pve/qemu/124/resize", { disk: "scsi0", size: "4G" }))).exitstatus).toBe("shrinking disks is not supported");
  });

  it("drops storage content types the plugin does not support", async () => {
    const s = await start();
    await ok(s, "POST", "/storage", { storage: "tank", type: "zfspool", pool: "tank", content: "rootdir,images,iso" });
    expect(((await ok(s, "GET", "/storage/tank")) as Record<string, unknown>).content).toBe("rootdir,images");
    expect(await refused(s, "POST", "/storage", { storage: "tank2", type: "zfspool", pool: "tank2", content: "iso" })).toEqual([500, "storage does not support content type 'none'\n", undefined]);
  });

  it("clones like PVE: storage refused for linked clones, linked clones only of base volumes on fitting storage, cloud-init copied", async () => {
    const s = await start();
    await ok(s, "POST", "/nodes/pve/qemu", { vmid: 130, scsi0: "local-zfs:8", ide2: "local-zfs:cloudinit,media=cdrom" });
    await settle(s);
    expect(((await ok(s, "GET", "/nodes/pve/qemu/130/config")) as Record<string, unknown>).ide2).toBe("local-zfs:vm-130-cloudinit,media=cdrom");
    expect(await refused(s, "POST", "/nodes/pve/qemu/130/clone", { newid: 131, full: 0 })).toEqual([500, "Linked clone feature is not supported for 'local-zfs:vm-130-disk-0' (scsi0)\n", undefined]);
    await taskOf(s, await ok(s, "POST", "/nodes/pve/qemu/130/template"));
    expect(await refused(s, "POST", "/nodes/pve/qemu/130/clone", { newid: 131, storage: "local-zfs" })).toEqual([500, "parameter 'storage' not allowed for linked clones\n", undefined]);
    expect(await refused(s, "POST", "/nodes/pve/qemu/130/clone", { newid: 131, full: 1, storage: "local" })).toEqual([400, "Parameter verification failed.\n", { storage: "storage 'local' does not support vm images" }]);
    expect((await taskOf(s, await ok(s, "POST", "/nodes/pve/qemu/130/clone", { newid: 131 }))).exitstatus).toBe("OK");
    const clone = (await ok(s, "GET", "/nodes/pve/qemu/131/config")) as Record<string, unknown>;
    expect([clone.scsi0, clone.ide2]).toEqual(["local-zfs:base-130-disk-0/vm-131-disk-0,size=8G", "local-zfs:vm-131-cloudinit,media=cdrom"]);
    expect(s.state.storage("local-zfs").volumes.has("local-zfs:vm-131-cloudinit")).toBe(true);

    // A container template on a directory storage cannot be linked-cloned.
    s.state.storage("local").config.content += ",rootdir";
    await ok(s, "POST", "/nodes/pve/lxc", { vmid: 140, ostemplate: DEBIAN_TEMPLATE, rootfs: "local:4" });
    await settle(s);
    await ok(s, "POST", "/nodes/pve/lxc/140/template");
    await settle(s);
    expect(await refused(s, "POST", "/nodes/pve/lxc/140/clone", { newid: 141 })).toEqual([500, "Linked clone feature for 'local:140/base-140-disk-0.raw' is not available\n", undefined]);
  });
});
