/** The simulator as a three-node cluster: status, resources, migration with its lock and refusals, an offline node. */
import { afterEach, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, seedTemplate } from "./http";
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
    const m = await call(s, "POST", "/nodes/pve/lxc/202/migrate", { target: "pve3", restart: 1 });
    expect(await done(s, m.data)).toBe("Can't connect to destination address using public key");
    expect(s.state.guests.get(202)).toMatchObject({ node: "pve", status: "running" });
  });
});
