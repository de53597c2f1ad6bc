import { afterEach, describe, expect, it } from "vitest";
import {
  createPveClient,
  encodeForm,
  encodeSshKeys,
  parseUpid,
  PveApiError,
  PveConnectionError,
  PveTaskError,
  PveTaskTimeoutError,
  type PveApi,
  type PveClientOptions,
} from "../../providers/pve";
import { DEBIAN_TEMPLATE, rawCall, seedTemplate, settle } from "../pve-sim/http";
import { startSimulator, type Simulator, type SimulatorOptions } from "../pve-sim/server";

const started: Array<{ stop(): unknown }> = [];

afterEach(async () => {
  for (const s of started.splice(0).reverse()) await s.stop();
});

async function sim(opts: SimulatorOptions = {}): Promise<Simulator> {
  const s = await startSimulator({ timing: { taskDurationMs: 5 }, ...opts });
  seedTemplate(s);
  started.push(s);
  return s;
}

function client(s: Simulator, opts: Partial<PveClientOptions> = {}): PveApi {
  const c = createPveClient({
    endpoint: s.endpoint,
    auth: { kind: "token", tokenId: s.token.id, secret: s.token.secret },
    tls: { caPem: s.caPem },
    retry: { baseDelayMs: 5 },
    task: { pollIntervalMs: 10, timeoutMs: 10_000 },
    ...opts,
  });
  started.push({ stop: () => c.close() });
  return c;
}

async function template(api: PveApi, vmid = 900): Promise<void> {
  await api.createContainer("pve", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "base" });
  expect((await api.convertToTemplate("pve", "lxc", vmid)).exitstatus).toBe("OK");
}

describe("form encoding and UPIDs", () => {
  it("encodes values the way PVE's decode_urlencoded splits them", () => {
    expect(
      encodeForm({
        net0: "name=eth0,bridge=vmbr0,ip=10.0.0.5/24",
        boot: "order=scsi0;net0",
        onboot: true,
        template: false,
        cores: 4,
        map: ["node=pve,path=0000:01:00.0", "node=pve2,path=0000:41:00.0"],
        description: "a b+c",
        skipped: undefined,
      }),
    ).toBe(
      "net0=name%3Deth0%2Cbridge%3Dvmbr0%2Cip%3D10.0.0.5%2F24&boot=order%3Dscsi0%3Bnet0&onboot=1&template=0&cores=4" +
        "&map=node%3Dpve%2Cpath%3D0000%3A01%3A00.0&map=node%3Dpve2%2Cpath%3D0000%3A41%3A00.0&description=a%20b%2Bc",
    );
    expect(encodeSshKeys("ssh-ed25519 AAAA me@host\n")).toBe("ssh-ed25519%20AAAA%20me%40host%0A");
  });

  it("parses UPIDs and refuses anything else", () => {
    expect(parseUpid("UPID:pve:0001A2B0:0201A2B0:6B041CF4:vzclone:900:root@pam!phoenix:")).toEqual({
      node: "pve",
      pid: 0x1a2b0,
      pstart: 0x201a2b0,
      starttime: 0x6b041cf4,
      type: "vzclone",
      id: "900",
      user: "root@pam!phoenix",
    });
    expect(() => parseUpid("UPID:pve:bogus")).toThrow(/not a PVE task id/);
  });
});

describe("PVE client against the simulator", () => {
  it("authenticates with an API token over verified TLS, and names the fix when it cannot", async () => {
    const s = await sim();
    expect((await client(s).version()).release).toBe("9.1");

    const wrong = client(s, { auth: { kind: "token", tokenId: s.token.id, secret: "nope" } });
    s.log.clear();
    const err = await wrong.nodes().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PveApiError);
    expect((err as PveApiError).status).toBe(401);
    expect((err as Error).message).toMatch(/^PVE API GET \/nodes failed with 401: Authentication failed!\n.*API token/s);
    expect(s.log.entries.length).toBe(1);

    const untrusted = client(s, { tls: {} });
    const tlsErr = await untrusted.version().catch((e: unknown) => e);
    expect(tlsErr).toBeInstanceOf(PveConnectionError);
    expect((tlsErr as Error).message).toMatch(/not trusted: set the PVE CA certificate/);
    expect((await client(s, { tls: { insecure: true } }).version()).version).toBe("9.1.3");
  });

  it("uses a root@pam ticket with CSRF on writes, renewing it before the 2 h expiry", async () => {
    let now = Date.now();
    const clock = () => now;
    const s = await sim({ now: clock });
    const auth = { kind: "ticket" as const, username: "root@pam", password: s.rootPassword };
    const api = client(s, { auth, now: clock });
    s.log.clear();

    // dev0 needs root@pam: only a ticket can set it.
    await api.createContainer("pve", { vmid: 801, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", dev0: "/dev/nvidia0,gid=44" });
    expect((await api.guestConfig("pve", "lxc", 801)).dev0).toBe("/dev/nvidia0,gid=44");
    const logins = () => s.log.find("POST", "/access/ticket").length;
    expect(logins()).toBe(1);
    const firstTicket = (await rawCall(s, "POST", "/access/ticket", { form: `username=root%40pam&password=${encodeURIComponent(s.rootPassword)}`, auth: "none" })).body.data as { ticket: string };

    // Renewal must use the ticket itself: a changed password would break a password login.
    auth.password = "rotated-elsewhere";
    now += 61 * 60_000;
    await api.createSecurityGroup("llm");
    expect(logins()).toBe(3);
    now += 61 * 60_000;
    await api.updateGuestConfig("pve", "lxc", 801, { cores: 2 });
    expect(logins()).toBe(4);
    expect(s.log.entries.filter((e) => e.status === 401)).toEqual([]);

    const expired = await rawCall(s, "GET", "/nodes", { auth: { ticket: firstTicket.ticket } });
    expect(expired.status).toBe(401);
  });

  it("waits for tasks, and accepts WARNINGS as success", async () => {
    const s = await sim();
    const api = client(s);
    const result = await api.createContainer("pve", { vmid: 101, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "nginx" });
    expect(result?.exitstatus).toBe("OK");
    expect((await api.guestStatus("pve", "lxc", 101)).status).toBe("stopped");
    await api.setGuestState("pve", "lxc", 101, "start");
    expect((await api.guestStatus("pve", "lxc", 101)).status).toBe("running");

    const warned = s.tasks.start({ node: "pve", type: "vzstart", id: "101", user: "root@pam", work: ({ log }) => log("WARN: systemd-networkd is slow") });
    expect(await api.waitForTask(warned.upid)).toEqual({ upid: warned.upid, exitstatus: "WARNINGS: 1", warnings: 1 });
  });

  it("raises a failed task with its exit status and the tail of its log", async () => {
    const s = await sim();
    s.faults.add({ kind: "failTask", method: "POST", path: "/nodes/{node}/lxc", count: 1, message: "unable to create CT 102 - zfs error: out of space" });
    const err = await client(s)
      .createContainer("pve", { vmid: 102, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PveTaskError);
    expect((err as PveTaskError).exitstatus).toBe("unable to create CT 102 - zfs error: out of space");
    expect((err as Error).message).toMatch(/^PVE task vzcreate 102 on pve \(UPID:pve:.*\) failed: unable to create CT 102/);
    expect((err as Error).message).toContain("    TASK ERROR: unable to create CT 102 - zfs error: out of space");
  });

  it("retries 5xx answers, lock timeouts and dropped connections with backoff", async () => {
    const s = await sim();
    const slept: number[] = [];
    const api = client(s, { sleep: async (ms) => void slept.push(ms), retry: { baseDelayMs: 100, attempts: 4 } });
    await api.createContainer("pve", { vmid: 103, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" });
    slept.length = 0;

    s.faults.add({ kind: "http5xx", method: "GET", path: "/nodes", count: 2 });
    s.log.clear();
    expect((await api.nodes()).map((n) => n.node)).toEqual(["pve"]);
    expect(s.log.find("GET", "/nodes").map((e) => e.status)).toEqual([500, 500, 200]);
    expect(slept).toEqual([100, 200]);

    s.faults.add({ kind: "lockTimeout", method: "PUT", path: "/nodes/{node}/lxc/{vmid}/config", count: 2 });
    await api.updateGuestConfig("pve", "lxc", 103, { memory: 2048 });
    expect((await api.guestConfig("pve", "lxc", 103)).memory).toBe(2048);
    expect(s.log.find("PUT", "/nodes/{node}/lxc/{vmid}/config").length).toBe(3);

    s.faults.add({ kind: "drop", method: "GET", path: "/version", count: 1 });
    expect((await api.version()).release).toBe("9.1");

    s.faults.add({ kind: "http5xx", method: "GET", path: "/nodes", count: 10 });
    const exhausted = await api.nodes().catch((e: unknown) => e);
    expect((exhausted as PveApiError).status).toBe(500);
  });

  it("does not retry a 400, and reports PVE's per-parameter messages with method and path", async () => {
    const s = await sim();
    const api = client(s);
    await api.createContainer("pve", { vmid: 104, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" });
    s.log.clear();
    const err = await api.updateGuestConfig("pve", "lxc", 104, { onboot: "true", net0: "name=eth0,ip=10.0.0.5" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PveApiError);
    const e = err as PveApiError;
    expect(e.status).toBe(400);
    expect(e.errors).toMatchObject({ onboot: "type check ('boolean') failed - got 'true'" });
    expect(e.message).toContain("PVE API PUT /nodes/pve/lxc/104/config failed with 400: Parameter verification failed.");
    expect(e.message).toContain("  net0.ip: invalid format - value does not look like a valid ipv4 network configuration");
    expect(s.log.mutating().length).toBe(1);
  });

  it("reads the error text from the reason phrase on servers that leave it out of the body", async () => {
    const s = await sim({ version: 8, legacyErrorBody: true });
    const err = await client(s).updateGuestConfig("pve", "lxc", 999, { cores: 2 }).catch((e: unknown) => e);
    expect((err as PveApiError).pveMessage).toBe("Configuration file 'nodes/pve/lxc/999.conf' does not exist");
    // A missing guest is a 500 in PVE, but not a transient one: no retries.
    expect(s.log.find("PUT", "/nodes/{node}/lxc/{vmid}/config").length).toBe(1);
  });

  it("serialises concurrent clones of one container template so that all succeed", async () => {
    const s = await sim({ timing: { taskDurationMs: 20 } });
    const api = client(s);
    await template(api);
    s.log.clear();
    const ids = [811, 812, 813, 814, 815];
    // Dynamic providers build a client per call: clients of one endpoint must coordinate too.
    const apis = [api, client(s), client(s)];
    const results = await Promise.all(ids.map((id, i) => apis[i % apis.length]?.cloneContainer("pve", 900, id, { hostname: `model-${id}` })));
    expect(results.map((r) => r?.exitstatus)).toEqual(ids.map(() => "OK"));
    expect(s.log.find("POST", "/nodes/{node}/lxc/{vmid}/clone").map((e) => e.status)).toEqual(ids.map(() => 200));
    for (const id of ids) {
      expect((await api.guestConfig("pve", "lxc", id)).rootfs).toBe(`local-zfs:basevol-900-disk-0/subvol-${id}-disk-0,size=8G`);
    }
  });

  it("bounds allocations per storage so that none hits the storage lock timeout", async () => {
    const s = await sim({ timing: { taskDurationMs: 1, allocationMs: 80, lockTimeoutMs: 100 } });
    const api = client(s);
    const ids = [601, 602, 603, 604, 605];
    const results = await Promise.all(ids.map((vmid) => api.createContainer("pve", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4" })));
    expect(results.map((r) => r?.exitstatus)).toEqual(ids.map(() => "OK"));
  });

  it("adopts an object that a lost earlier try created, but only when it matches", async () => {
    const s = await sim();
    const api = client(s);
    const params = { vmid: 105, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "traefik" };
    await rawCall(s, "POST", "/nodes/pve/lxc", { form: `vmid=105&ostemplate=${encodeURIComponent(DEBIAN_TEMPLATE)}&rootfs=local-zfs%3A8&hostname=traefik` });
    await settle(s);

    s.faults.add({ kind: "http5xx", method: "POST", path: "/nodes/{node}/lxc", count: 1 });
    expect(await api.createContainer("pve", params)).toBeUndefined();

    s.faults.add({ kind: "http5xx", method: "POST", path: "/nodes/{node}/lxc", count: 1 });
    await expect(api.createContainer("pve", { ...params, hostname: "nginx" })).rejects.toThrow(/CT 105 already exists.*existing object differs/s);

    // Without a lost first try, "already exists" is a plain error.
    await expect(api.createContainer("pve", params)).rejects.toThrow(/CT 105 already exists on node 'pve'/);
  });

  it("adopts a lost clone with `target` on the node it was moved to, and only when it matches", async () => {
    const s = await sim();
    s.state.addNode("pve2");
    s.state.addStorage("ceph", "rbd", { pool: "vm", content: "images,rootdir" }, 100);
    const api = client(s);
    await api.createContainer("pve", { vmid: 920, ostemplate: DEBIAN_TEMPLATE, rootfs: "ceph:8", hostname: "base" });
    await api.convertToTemplate("pve", "lxc", 920);
    // The first try clones and moves the CT to pve2, its answer is lost; the retry hears "CT 921 already exists on node …".
    s.faults.add({ kind: "dropReply", method: "POST", path: "/nodes/{node}/lxc/{vmid}/clone", count: 1 });
    expect(await api.cloneContainer("pve", 920, 921, { hostname: "traefik", target: "pve2" })).toBeUndefined();
    // Retries meet the template's `disk` lock while the first clone runs, then "already exists".
    const tries = s.log.find("POST", "/nodes/{node}/lxc/{vmid}/clone").map((e) => e.status);
    expect(tries[0]).toBe(-1);
    expect(new Set(tries.slice(1))).toEqual(new Set([500]));
    expect(s.state.guests.get(921)).toMatchObject({ node: "pve2", config: { hostname: "traefik" } });
    expect(s.state.guests.get(921)?.config.lock).toBeUndefined();

    await api.cloneContainer("pve", 920, 922, { hostname: "gateway", target: "pve2" });
    s.faults.add({ kind: "http5xx", method: "POST", path: "/nodes/{node}/lxc/{vmid}/clone", count: 1 });
    await expect(api.cloneContainer("pve", 920, 922, { hostname: "other", target: "pve2" })).rejects.toThrow(/CT 922 already exists on node 'pve2'.*existing object differs/s);
  });

  it("gives up waiting for a task after the timeout and leaves it running", async () => {
    const s = await sim({ timing: { taskDurationMs: 2_000 } });
    const err = await client(s, { task: { pollIntervalMs: 10, timeoutMs: 100 } })
      .createContainer("pve", { vmid: 106, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PveTaskTimeoutError);
    expect((err as Error).message).toMatch(/vzcreate 106 on pve .* still running after 0 s; it was left running/);
    expect(s.state.guests.get(106)?.config.lock).toBe("create");
  });

  it("reports a failed container template conversion from its vztemplate task, not a 30-minute poll", async () => {
    const s = await sim();
    const api = client(s, { task: { pollIntervalMs: 10, timeoutMs: 60_000 } });
    await api.createContainer("pve", { vmid: 910, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" });
    s.faults.add({ kind: "failTask", method: "POST", path: "/nodes/{node}/lxc/{vmid}/template", count: 1, message: "zfs error: cannot snapshot" });
    const began = Date.now();
    const err = await api.convertToTemplate("pve", "lxc", 910).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PveTaskError);
    expect((err as PveTaskError).exitstatus).toBe("zfs error: cannot snapshot");
    expect((err as Error).message).toMatch(/^PVE task vztemplate 910 on pve/);
    expect(Date.now() - began).toBeLessThan(10_000);
    expect((await api.convertToTemplate("pve", "lxc", 910)).exitstatus).toBe("OK");
    expect((await api.guestConfig("pve", "lxc", 910)).template).toBe(1);
  });

  it("does not retry a deterministic 500", async () => {
    const s = await sim();
    const api = client(s);
    await api.createVm("pve", { vmid: 911, scsi0: "local-zfs:8" });
    s.log.clear();
    const err = await api.cloneVm("pve", 911, 912, { full: false }).catch((e: unknown) => e);
    expect((err as PveApiError).pveMessage).toBe("Linked clone feature is not supported for 'local-zfs:vm-911-disk-0' (scsi0)\n");
    expect(s.log.find("POST", "/nodes/{node}/qemu/{vmid}/clone").length).toBe(1);
  });

  it("never replays a rule POST, and deletes by position only with the list's digest", async () => {
    const s = await sim();
    const api = client(s);
    await api.createContainer("pve", { vmid: 913, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8" });
    const rules = api.firewall({ kind: "lxc", node: "pve", vmid: 913 }).rules;
    // The first POST is applied but its answer is lost: a replay would insert the rule twice.
    s.faults.add({ kind: "dropReply", method: "POST", path: "/nodes/{node}/lxc/{vmid}/firewall/rules", count: 1 });
    await expect(rules.add({ type: "in", action: "ACCEPT", proto: "tcp", dport: "22", enable: 1 })).rejects.toBeInstanceOf(PveConnectionError);
    await rules.add({ type: "in", action: "ACCEPT", proto: "tcp", dport: "443", enable: 1 });
    expect((await rules.list()).map((r) => r.dport)).toEqual(["443", "22"]);
    // A lock timeout proves nothing was applied: that one is tried again.
    s.faults.add({ kind: "lockTimeout", method: "POST", path: "/nodes/{node}/lxc/{vmid}/firewall/rules", count: 1 });
    await rules.add({ type: "in", action: "ACCEPT", proto: "tcp", dport: "80", enable: 1 });
    expect((await rules.list()).map((r) => r.dport)).toEqual(["80", "443", "22"]);
    // The delete is applied and its answer lost; the retry carries the old digest and is refused.
    s.faults.add({ kind: "dropReply", method: "DELETE", path: "/nodes/{node}/lxc/{vmid}/firewall/rules/{pos}", count: 1 });
    const digest = String((await rules.list())[0]?.digest);
    const err = await rules.remove(0, digest).catch((e: unknown) => e);
    expect((err as PveApiError).pveMessage).toMatch(/^detected modified configuration/);
    expect((await rules.list()).map((r) => r.dport)).toEqual(["443", "22"]);
  });

  it("drives firewall, storage, download and PCI mapping endpoints", async () => {
    const s = await sim();
    const api = client(s);
    await api.createContainer("pve", { vmid: 107, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", net0: "name=eth0,bridge=vmbr0,firewall=1" });
    const fw = api.firewall({ kind: "lxc", node: "pve", vmid: 107 });
    await fw.setOptions({ enable: true, policy_in: "DROP" });
    await fw.rules.add({ type: "in", action: "ACCEPT", proto: "tcp", dport: "443", enable: 1 });
    await fw.createIpset("clients");
    await fw.addIpsetEntry("clients", "10.0.0.0/24", { comment: "lan" });
    expect(await fw.options()).toMatchObject({ enable: 1, policy_in: "DROP" });
    expect((await fw.rules.list()).map((r) => [r.pos, r.dport])).toEqual([[0, "443"]]);
    expect(await fw.ipsetEntries("clients")).toEqual([{ cidr: "10.0.0.0/24", comment: "lan" }]);

    await api.createStorage({ storage: "tank-models", type: "zfspool", pool: "tank/models", content: "rootdir,images" });
    expect((await api.storage("tank-models")).pool).toBe("tank/models");

    const apl = await api.aplinfo("pve");
    const ubuntu = apl.find((e) => e.template.startsWith("ubuntu-24.04"));
    expect(ubuntu).toBeDefined();
    await api.downloadTemplate("pve", "local", ubuntu?.template ?? "");
    expect((await api.storageContent("pve", "local", "vztmpl")).map((v) => v.volid)).toContain(`local:vztmpl/${ubuntu?.template}`);

    const gpus = (await api.pciDevices("pve")).filter((d) => d.class === "0x030000");
    await api.createPciMapping({ id: "gpu-3090", map: [`node=pve,path=${gpus[0]?.id},id=10de:2204,iommugroup=${gpus[0]?.iommugroup}`] });
    expect((await api.pciMappings("pve"))[0]).toMatchObject({ id: "gpu-3090", checks: [] });
  });
});
