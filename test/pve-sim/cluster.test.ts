/** The simulator as a three-node cluster: status, resources, migration with its lock and refusals, an offline node. */
import { afterEach, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, seedTemplate, settle } from "./http";
import { startSimulator, type Simulator } from "./server";

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

async function call(s: Simulator, method: string, path: string, params: Record<string, string | number> = {}) {
  const res = await rawCall(s, method, path, method === "GET" ? { query: form(params) } : { form: form(params) });
  const body = res.body as { data: unknown; message?: string; errors?: Record<string, string> } | undefined;
  return { status: res.status, data: body?.data, message: body?.message, errors: body?.errors };
}

/** Three nodes, a shared RBD storage, a template on local-zfs and one on the shared storage. */
async function cluster(): Promise<Simulator> {
  const s = await startSimulator({ seed: "empty", timing: { taskDurationMs: 5, allocationMs: 1 } });
  sim = s;
  s.state.addNode("pve2");
  s.state.addNode("pve3");
  s.state.addStorage("ceph", "rbd", { pool: "vm", content: "images,rootdir" }, 1000);
  seedTemplate(s);
  return s;
}

async function done(s: Simulator, upid: unknown): Promise<string | undefined> {
  await s.tasks.tasks.get(String(upid))?.done;
  return s.tasks.tasks.get(String(upid))?.exitstatus;
}

/** A running container made from the template, with its root disk on `storage`, optionally a linked clone of a base. */
async function container(s: Simulator, vmid: number, storage: string, linked = false): Promise<string> {
  if (!linked) {
    const r = await call(s, "POST", "/nodes/pve/lxc", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: `${storage}:8`, start: 1 });
    expect(await done(s, r.data)).toBe("OK");
  } else {
    const base = await call(s, "POST", "/nodes/pve/lxc", { vmid: 900, ostemplate: DEBIAN_TEMPLATE, rootfs: `${storage}:8`, template: 1 });
    expect(await done(s, base.data)).toBe("OK");
    const c = await call(s, "POST", "/nodes/pve/lxc/900/clone", { newid: vmid });
    expect(await done(s, c.data)).toBe("OK");
    await done(s, (await call(s, "POST", `/nodes/pve/lxc/${vmid}/status/start`)).data);
  }
  return String(s.state.guests.get(vmid)?.config.rootfs);
}

describe("pve-sim cluster", () => {
  it("lists every node in /cluster/status and the shared storage as shared on each node", async () => {
    const s = await cluster();
    const status = (await call(s, "GET", "/cluster/status")).data as Array<Record<string, unknown>>;
    expect(status.map((e) => `${String(e.type)}:${String(e.name)}:${String(e.online ?? e.quorate)}`)).toEqual(["cluster:phoenix:1", "node:pve:1", "node:pve2:1", "node:pve3:1"]);
    const storages = (await call(s, "GET", "/cluster/resources", { type: "storage" })).data as Array<Record<string, unknown>>;
    expect(storages.filter((x) => x.storage === "ceph").map((x) => `${String(x.node)}:${String(x.shared)}`)).toEqual(["pve:1", "pve2:1", "pve3:1"]);
  });

  it("migrates a running CT in restart mode: one vzmigrate task, lock migrate while it runs, config under the target, same volume, running again", async () => {
    const s = await cluster();
    const rootfs = await container(s, 200, "ceph");
    const refused = await call(s, "POST", "/nodes/pve/lxc/200/migrate", { target: "pve2" });
    expect(refused).toMatchObject({ status: 500, message: "can't migrate running container without --online or --restart\n" });
    expect((await call(s, "POST", "/nodes/pve/lxc/200/migrate", { target: "pve" })).errors).toEqual({ target: "target is local node." });
    const r = await call(s, "POST", "/nodes/pve/lxc/200/migrate", { target: "pve2", restart: 1 });
    expect(String(r.data)).toMatch(/^UPID:pve:[0-9A-F]+:[0-9A-F]+:[0-9A-F]+:vzmigrate:200:/);
    const locks: string[] = [];
    const task = s.tasks.tasks.get(String(r.data))!;
    while (task.status === "running") {
      const lock = s.state.guests.get(200)?.config.lock;
      if (lock && locks.at(-1) !== lock) locks.push(lock);
      await new Promise((res) => setTimeout(res, 1));
    }
    expect(task.exitstatus).toBe("OK");
    expect(locks).toEqual(["migrate"]);
    expect((await call(s, "GET", "/nodes/pve/lxc/200/config")).message).toBe("Configuration file 'nodes/pve/lxc/200.conf' does not exist\n");
    const moved = (await call(s, "GET", "/nodes/pve2/lxc/200/config")).data as Record<string, unknown>;
    expect(moved.rootfs).toBe(rootfs);
    expect(moved.lock).toBeUndefined();
    expect(s.state.guests.get(200)).toMatchObject({ node: "pve2", status: "running" });
    const vms = (await call(s, "GET", "/cluster/resources", { type: "vm" })).data as Array<Record<string, unknown>>;
    expect(vms.find((v) => v.vmid === 200)?.node).toBe("pve2");
  });

  it("refuses a linked clone on local storage in the task, leaving the CT where it was, running", async () => {
    const s = await cluster();
    const rootfs = await container(s, 201, "local-zfs", true);
    const r = await call(s, "POST", "/nodes/pve/lxc/201/migrate", { target: "pve3", restart: 1 });
    expect(await done(s, r.data)).toBe("can't migrate CT - check log");
    expect(s.tasks.tasks.get(String(r.data))?.log.join("\n")).toContain(`can't migrate local volume '${rootfs.split(",")[0]!}': clone of 'basevol-900-disk-0'`);
    expect(s.state.guests.get(201)).toMatchObject({ node: "pve", status: "running" });
    expect(s.state.guests.get(201)?.config.lock).toBeUndefined();
  });

  it("an offline node: calls proxied to it fail with 595, the cluster shows it offline, a migration to it fails in its task", async () => {
    const s = await cluster();
    await container(s, 202, "ceph");
    s.state.offline.add("pve3");
    const r = await call(s, "GET", "/nodes/pve3/lxc");
    expect(r.status).toBe(595);
    expect((await call(s, "GET", "/nodes/pve/lxc")).status).toBe(200);
    const status = (await call(s, "GET", "/cluster/status")).data as Array<Record<string, unknown>>;
    expect(status.find((e) => e.name === "pve3")?.online).toBe(0);
    // pve-manager PVE/API2/Nodes.pm index → API2Tools.pm extract_node_stats: offline, its rrd data expired.
    const nodes = (await call(s, "GET", "/nodes")).data as Array<Record<string, unknown>>;
    expect(nodes.find((n) => n.node === "pve3")).toEqual({ id: "node/pve3", node: "pve3", type: "node", status: "offline" });
    expect(nodes.find((n) => n.node === "pve")).toMatchObject({ status: "online", uptime: 86400, maxcpu: 64 });
    const resources = (await call(s, "GET", "/cluster/resources", { type: "node" })).data;
    expect(resources).toEqual(nodes);
    const m = await call(s, "POST", "/nodes/pve/lxc/202/migrate", { target: "pve3", restart: 1 });
    expect(await done(s, m.data)).toBe("Can't connect to destination address using public key");
    expect(s.state.guests.get(202)).toMatchObject({ node: "pve", status: "running" });
  });
});

/** A template made by create with template=1: a CT from the catalogue image, or a VM with one disk. */
async function template(s: Simulator, kind: "lxc" | "qemu", vmid: number, storage: string): Promise<void> {
  const disk: Record<string, string> = kind === "lxc" ? { ostemplate: DEBIAN_TEMPLATE, rootfs: `${storage}:8` } : { scsi0: `${storage}:8` };
  expect(await done(s, (await call(s, "POST", `/nodes/pve/${kind}`, { vmid, ...disk })).data)).toBe("OK");
  const t = await call(s, "POST", `/nodes/pve/${kind}/${vmid}/template`);
  if (t.data) expect(await done(s, t.data)).toBe("OK");
  else await settle(s);
  expect(s.state.guests.get(vmid)?.config.template).toBe("1");
}

describe("pve-sim clone with target (pve-container 963730e LXC.pm clone_vm, qemu-server e6352be6 Qemu.pm clone_vm)", () => {
  it("refuses up front what PVE refuses, each with PVE's message, and leaves the templates unlocked", async () => {
    const s = await cluster();
    s.state.addStorage("ceph-ab", "rbd", { pool: "ab", content: "images,rootdir", nodes: "pve,pve2" }, 100);
    await template(s, "lxc", 900, "local-zfs");
    await template(s, "lxc", 910, "ceph");
    await template(s, "qemu", 800, "local-zfs");
    const clone = async (kind: string, vmid: number, params: Record<string, string | number>) => {
      const r = await call(s, "POST", `/nodes/pve/${kind}/${vmid}/clone`, params);
      return r.status === 400 ? r.errors : `${r.status}: ${String(r.message).trim()}`;
    };
    expect(await clone("lxc", 910, { newid: 901, target: "pve9" })).toBe("500: no such cluster node 'pve9'");
    expect(await clone("lxc", 900, { newid: 901, target: "pve2" })).toBe("500: can't clone CT to node 'pve2' (CT uses local storage)");
    expect(await clone("lxc", 910, { newid: 901, target: "pve2", full: 1, storage: "local-zfs" })).toBe("500: can't clone to non-shared storage 'local-zfs'");
    expect(await clone("lxc", 910, { newid: 901, target: "pve3", full: 1, storage: "ceph-ab" })).toBe("500: storage 'ceph-ab' is not available on node 'pve3'");
    expect(await clone("qemu", 800, { newid: 801, target: "pve2" })).toBe("500: can't clone VM to node 'pve2' (VM uses local storage)");
    expect(await clone("qemu", 800, { newid: 801, target: "pve2", full: 1, storage: "local" })).toEqual({ storage: "storage 'local' does not support vm images" });
    expect([...s.state.guests.keys()].sort()).toEqual([800, 900, 910]);
    for (const vmid of [800, 900, 910]) expect(s.state.guests.get(vmid)?.config.lock).toBeUndefined();

    // A taken newid: pve-container's check_vmid_unused sees every node; qemu-server looks only for
    // this node's config file up front, and elsewhere pmxcfs refuses the new config in the task.
    expect(await done(s, (await call(s, "POST", "/nodes/pve2/lxc", { vmid: 805, ostemplate: DEBIAN_TEMPLATE, rootfs: "ceph:4" })).data)).toBe("OK");
    expect(await clone("lxc", 910, { newid: 805, target: "pve2" })).toBe("500: CT 805 already exists on node 'pve2'");
    expect(await done(s, (await call(s, "POST", "/nodes/pve/qemu/800/clone", { newid: 801 })).data)).toBe("OK");
    expect(await clone("qemu", 800, { newid: 801 })).toBe("500: unable to create VM 801: config file already exists");
    const elsewhere = await call(s, "POST", "/nodes/pve/qemu/800/clone", { newid: 805 });
    expect(await done(s, elsewhere.data)).toBe("close (rename) atomic file '/etc/pve/nodes/pve/qemu-server/805.conf' failed: File exists");
    expect(s.state.guests.get(805)).toMatchObject({ kind: "lxc", node: "pve2" });
  });

  it("clones on the source and moves the config at the end; to an offline target too while quorate; nothing without quorum", async () => {
    const s = await cluster();
    await template(s, "lxc", 910, "ceph");
    const r = await call(s, "POST", "/nodes/pve/lxc/910/clone", { newid: 911, target: "pve2", hostname: "traefik" });
    expect(s.state.guests.get(911)).toMatchObject({ node: "pve", config: { lock: "create" } });
    expect(await done(s, r.data)).toBe("OK");
    expect(s.state.guests.get(911)).toMatchObject({ node: "pve2", config: { hostname: "traefik" } });
    expect(s.state.guests.get(911)?.config.lock).toBeUndefined();

    s.state.offline.add("pve3");
    expect(await done(s, (await call(s, "POST", "/nodes/pve/lxc/910/clone", { newid: 912, target: "pve3", hostname: "gw" })).data)).toBe("OK");
    const vms = (await call(s, "GET", "/cluster/resources", { type: "vm" })).data as Array<Record<string, unknown>>;
    // pve-manager PVE/API2Tools.pm extract_vm_stats: the offline node's rrd data has expired.
    expect(vms.find((v) => v.vmid === 912)).toEqual({ id: "lxc/912", type: "lxc", vmid: 912, node: "pve3", status: "unknown" });
    expect(vms.find((v) => v.vmid === 911)).toMatchObject({ node: "pve2", name: "traefik", status: "stopped" });

    s.state.offline.add("pve2");
    expect((await call(s, "POST", "/nodes/pve/lxc/910/clone", { newid: 913 })).message).toBe("cluster not ready - no quorum?\n");
    expect(s.state.guests.has(913)).toBe(false);
  });

  it("bpg's clone-then-migrate for a VM on local storage: a full clone moves with its disk, a linked clone cannot", async () => {
    const s = await cluster();
    await template(s, "qemu", 800, "local-zfs");
    expect(await done(s, (await call(s, "POST", "/nodes/pve/qemu/800/clone", { newid: 801, full: 1 })).data)).toBe("OK");
    const disk = s.state.guests.get(801)?.config.scsi0;
    expect(await done(s, (await call(s, "POST", "/nodes/pve/qemu/801/migrate", { target: "pve2", "with-local-disks": 1 })).data)).toBe("OK");
    expect(s.state.guests.get(801)).toMatchObject({ node: "pve2", config: { scsi0: disk } });

    expect(await done(s, (await call(s, "POST", "/nodes/pve/qemu/800/clone", { newid: 802 })).data)).toBe("OK");
    const m = await call(s, "POST", "/nodes/pve/qemu/802/migrate", { target: "pve2", "with-local-disks": 1 });
    expect(await done(s, m.data)).toBe("can't migrate VM - check log");
    expect(s.tasks.tasks.get(String(m.data))?.log.join("\n")).toMatch(/can't migrate 'local-zfs:base-800-disk-0\/vm-802-disk-0' as it's a clone of 'base-800-disk-0'/);
    expect(s.state.guests.get(802)?.node).toBe("pve");
  });
});
