import { afterEach, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, seedTemplate } from "./http";
import { startSimulator, type Simulator } from "./server";

let sim: Simulator | undefined;

async function start(): Promise<Simulator> {
  sim = await startSimulator({ timing: { taskDurationMs: 5, allocationMs: 30 } });
  seedTemplate(sim);
  return sim;
}

afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

async function call(s: Simulator, method: string, path: string, params: Record<string, string | number> = {}): Promise<{ status: number; data: unknown; message?: string; errors?: Record<string, string> }> {
  const res = await rawCall(s, method, path, method === "GET" || method === "DELETE" ? { query: form(params) } : { form: form(params) });
  const body = res.body as { data: unknown; message?: string; errors?: Record<string, string> };
  return { status: res.status, data: body.data, message: body.message, errors: body.errors };
}

async function ok(s: Simulator, method: string, path: string, params: Record<string, string | number> = {}): Promise<unknown> {
  const r = await call(s, method, path, params);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r)}`).toBe(200);
  return r.data;
}

async function exitOf(s: Simulator, upid: unknown): Promise<string | undefined> {
  await s.tasks.tasks.get(String(upid))?.done;
  return s.tasks.tasks.get(String(upid))?.exitstatus;
}

/** Polls the guest's lock while a task runs: every lock value seen, in order. */
async function locksDuring(s: Simulator, vmid: number, upid: unknown): Promise<string[]> {
  const seen: string[] = [];
  const task = s.tasks.tasks.get(String(upid))!;
  while (task.status === "running") {
    const lock = s.state.guests.get(vmid)?.config.lock;
    if (lock && seen.at(-1) !== lock) seen.push(lock);
    await new Promise((r) => setTimeout(r, 2));
  }
  return seen;
}

const CT = "/nodes/pve/lxc/200";

async function container(s: Simulator, extra: Record<string, string> = {}): Promise<void> {
  await exitOf(s, await ok(s, "POST", "/nodes/pve/lxc", { vmid: 200, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "web", net0: "name=eth0,bridge=vmbr0,ip=10.0.0.20/24", ...extra }));
}

describe("guest snapshots", () => {
  it("takes a snapshot under the `snapshot` lock, lists it as the current state's parent, serves its config", async () => {
    const s = await start();
    await container(s);
    const upid = await ok(s, "POST", `${CT}/snapshot`, { snapname: "phoenix-install-1a2b3c4d", description: "before install" });
    expect(String(upid)).toContain(":vzsnapshot:200:");
    expect(await locksDuring(s, 200, upid)).toEqual(["snapshot"]);
    expect(await exitOf(s, upid)).toBe("OK");
    const list = (await ok(s, "GET", `${CT}/snapshot`)) as Array<Record<string, unknown>>;
    expect(list.map((e) => [e.name, e.parent])).toEqual([["phoenix-install-1a2b3c4d", undefined], ["current", "phoenix-install-1a2b3c4d"]]);
    await ok(s, "PUT", `${CT}/config`, { memory: 2048 });
    const snap = (await ok(s, "GET", `${CT}/snapshot/phoenix-install-1a2b3c4d/config`)) as Record<string, unknown>;
    expect(snap).toMatchObject({ hostname: "web", description: "before install" });
    expect(snap.memory).toBeUndefined();
    expect(typeof snap.snaptime).toBe("number");
  });

  it("refuses reserved and invalid names up front, a used name and a locked guest in the worker", async () => {
    const s = await start();
    await container(s);
    expect(await call(s, "POST", `${CT}/snapshot`, { snapname: "vzdump" })).toMatchObject({ status: 500, message: "unable to use snapshot name 'vzdump' (reserved name)\n" });
    // pve-configid: a letter first, then letters, digits, '-' and '_'; at most 40 characters (the schema).
    expect((await call(s, "POST", `${CT}/snapshot`, { snapname: "1st" })).status).toBe(400);
    expect((await call(s, "POST", `${CT}/snapshot`, { snapname: `a${"b".repeat(40)}` })).status).toBe(400);
    await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "one" }));
    expect(await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "one" }))).toBe("snapshot name 'one' already used");
    s.state.guests.get(200)!.config.lock = "backup";
    expect(await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "two" }))).toBe("CT is locked (backup)");
  });

  it("a bind mount makes the snapshot feature unavailable, even with backup=0", async () => {
    const s = await start();
    await container(s);
    s.state.guests.get(200)!.config.mp0 = "/tank/models,mp=/models,backup=0";
    expect(await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "one" }))).toBe("snapshot feature is not available");
    expect(s.state.guests.get(200)!.config.lock).toBeUndefined();
  });

  it("rolls back under the `rollback` lock: stops the guest, restores the config, starts it with `start`; only to the newest on ZFS", async () => {
    const s = await start();
    await container(s);
    await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "aa" }));
    await ok(s, "PUT", `${CT}/config`, { memory: 4096 });
    await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "bb" }));
    await exitOf(s, await ok(s, "POST", `${CT}/status/start`));
    expect(await exitOf(s, await ok(s, "POST", `${CT}/snapshot/aa/rollback`))).toBe("can't rollback, 'aa' is not most recent snapshot on 'local-zfs:subvol-200-disk-0'");
    await ok(s, "PUT", `${CT}/config`, { memory: 8192 });
    const upid = await ok(s, "POST", `${CT}/snapshot/bb/rollback`, { start: 1 });
    expect(await locksDuring(s, 200, upid)).toEqual(["rollback"]);
    expect(await exitOf(s, upid)).toBe("OK");
    expect(s.state.guests.get(200)).toMatchObject({ status: "running", parent: "bb", config: { memory: "4096" } });
    expect(await exitOf(s, await ok(s, "DELETE", `${CT}/snapshot/bb`))).toBe("OK");
    expect(((await ok(s, "GET", `${CT}/snapshot`)) as Array<Record<string, unknown>>).map((e) => [e.name, e.parent])).toEqual([["aa", undefined], ["current", "aa"]]);
    expect(s.state.volumeEvents.map((e) => `${e.kind} ${"snapname" in e ? e.snapname : ""}`)).toEqual(["snapshot aa", "snapshot bb", "rollback bb", "delsnapshot bb"]);
  });
});

describe("vzdump and restore", () => {
  it("backs a container up under the `backup` lock into a backup volume, listed by vmid", async () => {
    const s = await start();
    await container(s);
    expect(await call(s, "POST", "/nodes/pve/vzdump", { vmid: 200, storage: "local-zfs" })).toMatchObject({ status: 500, message: "can't use storage 'local-zfs' for backups - wrong content type\n" });
    const upid = await ok(s, "POST", "/nodes/pve/vzdump", { vmid: 200, storage: "local", mode: "snapshot", compress: "zstd" });
    expect(String(upid)).toContain(":vzdump:200:");
    expect(await locksDuring(s, 200, upid)).toEqual(["backup"]);
    expect(await exitOf(s, upid)).toBe("OK");
    const backups = (await ok(s, "GET", "/nodes/pve/storage/local/content", { content: "backup", vmid: 200 })) as Array<Record<string, unknown>>;
    expect(backups).toEqual([expect.objectContaining({ content: "backup", vmid: 200, format: "tar.zst", volid: expect.stringMatching(/^local:backup\/vzdump-lxc-200-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.tar\.zst$/) })]);
    expect(s.state.guests.get(200)!.snapshots.has("vzdump")).toBe(false);
  });

  it("a snapshot taken while the backup runs fails on its lock", async () => {
    const s = await start();
    await container(s);
    // The backup holds its lock long enough for the snapshot's worker to meet it, even on a loaded machine.
    s.timing.allocationMs = 1000;
    const dump = await ok(s, "POST", "/nodes/pve/vzdump", { vmid: 200, storage: "local" });
    while (s.state.guests.get(200)!.config.lock !== "backup") await new Promise((r) => setTimeout(r, 1));
    expect(await exitOf(s, await ok(s, "POST", `${CT}/snapshot`, { snapname: "during" }))).toBe("CT is locked (backup)");
    expect(await exitOf(s, dump)).toBe("OK");
  });

  it("restores into a new vmid as `vzrestore`: the call's net0 and rootfs win, bind mounts and the rest come from the backup only when asked", async () => {
    const s = await start();
    await container(s, { memory: "1536" });
    s.state.guests.get(200)!.config.mp0 = "/tank/data,mp=/data";
    await exitOf(s, await ok(s, "POST", "/nodes/pve/vzdump", { vmid: 200, storage: "local", mode: "stop" }));
    const volid = [...s.state.storage("local").volumes.values()].find((v) => v.content === "backup")!.volid;
    // Storage-only mode would restore the bind mount, which only root@pam may.
    expect(await exitOf(s, await ok(s, "POST", "/nodes/pve/lxc", { vmid: 9200, ostemplate: volid, restore: 1, storage: "local-zfs" }))).toBe("restoring 'mp0' to bind mount is only possible for root");
    expect(s.state.guests.has(9200)).toBe(false);
    const upid = await ok(s, "POST", "/nodes/pve/lxc", { vmid: 9200, ostemplate: volid, restore: 1, unique: 1, rootfs: "local-zfs:8", net0: "name=eth0,bridge=phxdrill0", hostname: "drill-200" });
    expect(String(upid)).toContain(":vzrestore:9200:");
    expect(await exitOf(s, upid)).toBe("OK");
    const conf = s.state.guests.get(9200)!.config;
    expect(conf).toMatchObject({ memory: "1536", hostname: "drill-200", rootfs: expect.stringMatching(/^local-zfs:subvol-9200-disk-0,size=8G$/) });
    expect(conf.net0).toMatch(/^name=eth0,bridge=phxdrill0,hwaddr=/);
    expect(conf.mp0).toBeUndefined();
    expect(s.state.volumeEvents.at(-1)).toEqual({ kind: "restore", vmid: 9200, volid });
    expect(await call(s, "POST", "/nodes/pve/lxc", { vmid: 9201, ostemplate: DEBIAN_TEMPLATE.replace("debian", "nope"), restore: 1 })).toMatchObject({ status: 500 });
  });

  it("a VM restore refuses drive options beside `archive` and recreates the backup's drives", async () => {
    const s = await start();
    await exitOf(s, await ok(s, "POST", "/nodes/pve/qemu", { vmid: 300, name: "vm", scsi0: "local-zfs:16", net0: "virtio,bridge=vmbr0" }));
    await exitOf(s, await ok(s, "POST", "/nodes/pve/vzdump", { vmid: 300, storage: "local" }));
    const volid = [...s.state.storage("local").volumes.values()].find((v) => v.content === "backup")!.volid;
    expect(volid).toMatch(/vzdump-qemu-300-.*\.vma$/);
    expect(await call(s, "POST", "/nodes/pve/qemu", { vmid: 9300, archive: volid, scsi0: "local-zfs:4" })).toMatchObject({ status: 400, errors: { scsi0: "option conflicts with option 'archive'" } });
    const upid = await ok(s, "POST", "/nodes/pve/qemu", { vmid: 9300, archive: volid, net0: "virtio,bridge=phxdrill0", unique: 1 });
    expect(String(upid)).toContain(":qmrestore:9300:");
    expect(await exitOf(s, upid)).toBe("OK");
    expect(s.state.guests.get(9300)!.config).toMatchObject({ name: "vm", scsi0: "local-zfs:vm-9300-disk-0,size=16G", net0: expect.stringMatching(/,bridge=phxdrill0$/) });
  });
});
