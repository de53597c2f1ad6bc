import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, rootTicket, seedTemplate, settle, type RawAuth } from "./http";
import { startSimulator, type Simulator } from "./server";

const NET0 = "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1,firewall=1";
const PROPERTY_IS_UNKNOWN = "property is not defined in schema and the schema does not allow additional properties";

interface Case {
  name: string;
  method: string;
  path: string;
  params: Record<string, string | number | string[]>;
  auth?: "token" | "root";
  status: number;
  /** Exact `errors` entries PVE gives (and no others when `exact`). */
  errors?: Record<string, string>;
  exact?: boolean;
  message?: RegExp;
}

let vmid = 200;
const ct = (extra: Record<string, string | number | string[]> = {}): Record<string, string | number | string[]> => ({
  vmid: vmid++,
  ostemplate: DEBIAN_TEMPLATE,
  rootfs: "local-zfs:8",
  net0: NET0,
  ...extra,
});

const CASES: Case[] = [
  { name: "lxc create with a full net0", method: "POST", path: "/nodes/pve/lxc", params: ct(), status: 200 },
  {
    name: "lxc net0 ip without prefix",
    method: "POST",
    path: "/nodes/pve/lxc",
    params: ct({ net0: "name=eth0,bridge=vmbr0,ip=10.0.0.5,gw=10.0.0.1" }),
    status: 400,
    errors: { net0: "invalid format - format error\n", "net0.ip": "invalid format - value does not look like a valid ipv4 network configuration\n" },
    exact: true,
  },
  {
    name: "lxc net0 firewall=maybe",
    method: "POST",
    path: "/nodes/pve/lxc",
    params: ct({ net0: "name=eth0,bridge=vmbr0,firewall=maybe" }),
    status: 400,
    errors: { net0: "invalid format - format error\n", "net0.firewall": "type check ('boolean') failed - got 'maybe'" },
    exact: true,
  },
  { name: "lxc net0 firewall=yes (property-string boolean)", method: "POST", path: "/nodes/pve/lxc", params: ct({ net0: "name=eth0,bridge=vmbr0,firewall=yes" }), status: 200 },
  { name: "lxc net31 is the last slot", method: "POST", path: "/nodes/pve/lxc", params: ct({ net31: "name=eth31,bridge=vmbr0" }), status: 200 },
  { name: "lxc net32 does not exist", method: "POST", path: "/nodes/pve/lxc", params: ct({ net32: "name=eth32,bridge=vmbr0" }), status: 400, errors: { net32: PROPERTY_IS_UNKNOWN }, exact: true },
  { name: "lxc raw lxc.* key", method: "POST", path: "/nodes/pve/lxc", params: ct({ "lxc.idmap": "u 0 100000 65536" }), status: 400, errors: { "lxc.idmap": PROPERTY_IS_UNKNOWN }, exact: true },
  {
    name: "lxc missing ostemplate",
    method: "POST",
    path: "/nodes/pve/lxc",
    params: { vmid: 290, net0: NET0 },
    status: 400,
    errors: { ostemplate: "property is missing and it is not optional" },
    exact: true,
  },
  {
    name: "lxc dev0 by a token",
    method: "POST",
    path: "/nodes/pve/lxc",
    params: ct({ dev0: "/dev/nvidia0,gid=44,mode=0666" }),
    status: 403,
    message: /^Permission check failed \(configuring device passthrough is only allowed for root@pam\)\n$/,
  },
  { name: "lxc dev0 by root@pam", method: "POST", path: "/nodes/pve/lxc", params: ct({ dev0: "/dev/nvidia0,gid=44,mode=0666" }), auth: "root", status: 200 },
  { name: "lxc dev0 mode not octal", method: "POST", path: "/nodes/pve/lxc", params: ct({ dev0: "/dev/nvidia0,mode=666" }), auth: "root", status: 400, errors: { "dev0.mode": "value does not match the regex pattern" } },
  { name: "lxc onboot=true as a form value", method: "POST", path: "/nodes/pve/lxc", params: ct({ onboot: "true" }), status: 400, errors: { onboot: "type check ('boolean') failed - got 'true'" }, exact: true },
  { name: "lxc onboot=1", method: "POST", path: "/nodes/pve/lxc", params: ct({ onboot: 1 }), status: 200 },
  { name: "lxc vmid below 100", method: "POST", path: "/nodes/pve/lxc", params: { ...ct(), vmid: 99 }, status: 400, errors: { vmid: "invalid format - value does not look like a valid VM ID\n" } },
  { name: "lxc cores 0", method: "POST", path: "/nodes/pve/lxc", params: ct({ cores: 0 }), status: 400, errors: { cores: "value must have a minimum value of 1" } },
  { name: "lxc memory not an integer", method: "POST", path: "/nodes/pve/lxc", params: ct({ memory: "2G" }), status: 400, errors: { memory: "type check ('integer') failed - got '2G'" } },
  {
    name: "lxc arch outside the enum",
    method: "POST",
    path: "/nodes/pve/lxc",
    params: ct({ arch: "sparc" }),
    status: 400,
    errors: { arch: "value 'sparc' does not have a value in the enumeration 'amd64, i386, arm64, armhf, riscv32, riscv64'" },
  },
  { name: "lxc hostname not a DNS name", method: "POST", path: "/nodes/pve/lxc", params: ct({ hostname: "step_ca" }), status: 400, errors: { hostname: "invalid format - value does not look like a valid DNS name\n" } },
  { name: "lxc duplicate key in net0", method: "POST", path: "/nodes/pve/lxc", params: ct({ net0: "name=eth0,name=eth1" }), status: 400, errors: { net0: "invalid format - duplicate key in comma-separated list property: name\n" } },
  { name: "lxc net0 without name", method: "POST", path: "/nodes/pve/lxc", params: ct({ net0: "bridge=vmbr0" }), status: 400, errors: { "net0.name": "property is missing and it is not optional" } },
  { name: "lxc rootfs bad mount option", method: "POST", path: "/nodes/pve/lxc", params: ct({ rootfs: "local-zfs:8,mountoptions=noatime;sync" }), status: 400, errors: { "rootfs.mountoptions": "value does not match the regex pattern" } },
  { name: "lxc mp0 bind mount by a token", method: "POST", path: "/nodes/pve/lxc", params: ct({ mp0: "/tank/models,mp=/models" }), status: 403, message: /mount point type bind is only allowed for root@pam/ },
  { name: "lxc features nesting by a token", method: "POST", path: "/nodes/pve/lxc", params: ct({ features: "nesting=1" }), status: 200 },
  { name: "lxc features keyctl by a token", method: "POST", path: "/nodes/pve/lxc", params: ct({ features: "nesting=1,keyctl=1" }), status: 403, message: /feature flags \(except nesting\)/ },
  { name: "lxc hookscript by a token", method: "POST", path: "/nodes/pve/lxc", params: ct({ hookscript: "local:snippets/hook.sh" }), status: 403, message: /hookscript/ },
  { name: "lxc startup order", method: "POST", path: "/nodes/pve/lxc", params: ct({ startup: "order=2,up=30" }), status: 200 },
  { name: "lxc startup garbage", method: "POST", path: "/nodes/pve/lxc", params: ct({ startup: "order=first" }), status: 400, errors: { startup: "invalid format - unable to parse startup options\n" } },
  { name: "lxc tags with a space inside a tag", method: "POST", path: "/nodes/pve/lxc", params: ct({ tags: "gpu;llm!" }), status: 400, errors: { tags: "invalid format - invalid tag 'llm!'\n" } },
  { name: "qemu ipconfig0 with CIDR and gateway", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { ipconfig0: "ip=10.0.0.21/24,gw=10.0.0.1" }, status: 200 },
  {
    name: "qemu ipconfig0 without prefix",
    method: "PUT",
    path: "/nodes/pve/qemu/1001/config",
    params: { ipconfig0: "ip=10.0.0.21,gw=10.0.0.1" },
    status: 400,
    errors: { ipconfig0: "invalid format - format error\n", "ipconfig0.ip": "invalid format - value does not look like a valid ipv4 network configuration\n" },
  },
  { name: "qemu ipconfig0 gateway without address", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { ipconfig0: "gw=10.0.0.1" }, status: 400, errors: { ipconfig0: "invalid format - gateway specified without specifying an IP address\n" } },
  { name: "qemu hostpci0 by mapping", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { hostpci0: "mapping=gpu-4090,pcie=1" }, status: 200 },
  { name: "qemu hostpci0 raw host by a token", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { hostpci0: "0000:41:00.0,pcie=1" }, status: 500, message: /only root can set 'hostpci0' config for real devices/ },
  { name: "qemu hostpci0 with neither host nor mapping", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { hostpci0: "pcie=1" }, status: 400, errors: { hostpci0: "invalid format - either 'host' or 'mapping' must be set.\n" } },
  { name: "qemu hostpci16 does not exist", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { hostpci16: "mapping=gpu-4090" }, status: 400, errors: { hostpci16: PROPERTY_IS_UNKNOWN } },
  { name: "qemu scsi31 does not exist", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { scsi31: "local-zfs:8" }, status: 400, errors: { scsi31: PROPERTY_IS_UNKNOWN } },
  { name: "qemu scsi1 bad discard value", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { scsi1: "local-zfs:8,discard=yes" }, status: 400, errors: { "scsi1.discard": "value 'yes' does not have a value in the enumeration 'ignore, on'" } },
  { name: "qemu sshkeys not urlencoded", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { sshkeys: "ssh-ed25519 AAAA user@host" }, status: 400, errors: { sshkeys: "invalid format - invalid urlencoded string: ssh-ed25519 AAAA user@host\n" } },
  { name: "qemu sshkeys urlencoded", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { sshkeys: encodeURIComponent("ssh-ed25519 AAAA user@host") }, status: 200 },
  { name: "qemu net0 multicast MAC", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { net0: "virtio=01:00:5E:00:00:01,bridge=vmbr0" }, status: 400, errors: { "net0.macaddr": "invalid format - value does not look like a valid unicast MAC address\n" } },
  { name: "qemu cpu with a bad boolean (format read off its typetext)", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { cpu: "host,hidden=maybe" }, status: 400, errors: { "cpu.hidden": "type check ('boolean') failed - got 'maybe'" } },
  { name: "qemu watchdog with an unknown key", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { watchdog: "model=i6300esb,timeout=5" }, status: 400, errors: { watchdog: "invalid format - invalid key in comma-separated list property: timeout\n" }, exact: true },
  { name: "qemu cpu type with flags", method: "PUT", path: "/nodes/pve/qemu/1001/config", params: { cpu: "x86-64-v2-AES,flags=+aes" }, status: 200 },
  { name: "storage zfspool", method: "POST", path: "/storage", params: { storage: "tank-ct", type: "zfspool", pool: "tank/ct", content: "rootdir,images", sparse: 1 }, status: 200 },
  { name: "storage unknown type", method: "POST", path: "/storage", params: { storage: "tank2", type: "ext4" }, status: 400, errors: { type: expect.stringMatching(/^value 'ext4' does not have a value in the enumeration 'btrfs, cephfs/) as unknown as string } },
  { name: "storage id starting with a digit", method: "POST", path: "/storage", params: { storage: "1tank", type: "dir", path: "/tank" }, status: 400, errors: { storage: "invalid format - storage ID '1tank' contains illegal characters\n" } },
  { name: "storage content type not a content type", method: "POST", path: "/storage", params: { storage: "bulk", type: "dir", path: "/bulk", content: "iso,models" }, status: 400, errors: { content: "invalid format - invalid content type 'models'\n" } },
  { name: "firewall group name too long", method: "POST", path: "/cluster/firewall/groups", params: { group: "model-servers-internal" }, status: 400, errors: { group: "value may only be 18 characters long" } },
  { name: "firewall rule ssh", method: "POST", path: "/nodes/pve/lxc/103/firewall/rules", params: { type: "in", action: "ACCEPT", proto: "tcp", dport: "22", source: "10.0.0.0/24", enable: 1 }, status: 200 },
  { name: "firewall rule port out of range", method: "POST", path: "/nodes/pve/lxc/103/firewall/rules", params: { type: "in", action: "ACCEPT", proto: "tcp", dport: "70000" }, status: 400, errors: { dport: "invalid format - invalid port '70000'\n" } },
  { name: "firewall rule direction outside the enum", method: "POST", path: "/nodes/pve/lxc/103/firewall/rules", params: { type: "inbound", action: "ACCEPT" }, status: 400, errors: { type: "value 'inbound' does not have a value in the enumeration 'in, out, forward, group'" } },
  { name: "firewall cluster enable=true", method: "PUT", path: "/cluster/firewall/options", params: { enable: "true" }, status: 400, errors: { enable: "type check ('integer') failed - got 'true'" } },
  { name: "firewall ipset cidr not an address", method: "POST", path: "/cluster/firewall/ipset/gpu-hosts", params: { cidr: "10.0.0.300" }, status: 400, errors: { cidr: "invalid format - value does not look like a valid IP address or CIDR network\n" } },
  {
    name: "mapping pci with two GPUs' map entries",
    method: "POST",
    path: "/cluster/mapping/pci",
    params: { id: "gpu-3090", map: ["node=pve,path=0000:01:00.0,id=10de:2204,iommugroup=14"], description: "RTX 3090" },
    status: 200,
  },
  { name: "mapping pci device id with 0x", method: "POST", path: "/cluster/mapping/pci", params: { id: "gpu-x", map: ["node=pve,path=0000:01:00.0,id=0x10de:0x2204"] }, status: 400, errors: { map: "invalid format - format error\n", "map.id": "value does not match the regex pattern" } },
  { name: "mapping pci id not a config id", method: "POST", path: "/cluster/mapping/pci", params: { id: "3090", map: ["node=pve,path=0000:01:00.0,id=10de:2204"] }, status: 400, errors: { id: "invalid format - invalid configuration ID '3090'\n" } },
  { name: "mapping pci without map", method: "POST", path: "/cluster/mapping/pci", params: { id: "gpu-y" }, status: 400, errors: { map: "property is missing and it is not optional" } },
];

describe("simulator strictness (PVE 9.1 schema)", () => {
  let sim: Simulator;
  let root: { ticket: string; csrf: string };

  beforeAll(async () => {
    sim = await startSimulator({ timing: { taskDurationMs: 1 } });
    seedTemplate(sim);
    root = await rootTicket(sim);
    const ok = (r: { status: number; body: unknown }) => expect(r.status, JSON.stringify(r.body)).toBe(200);
    ok(await rawCall(sim, "POST", "/nodes/pve/qemu", { form: form({ vmid: 1001, name: "portainer", scsi0: "local-zfs:32", machine: "q35" }) }));
    ok(await rawCall(sim, "POST", "/nodes/pve/lxc", { form: form({ vmid: 103, ostemplate: DEBIAN_TEMPLATE, hostname: "step-ca", rootfs: "local-zfs:4" }) }));
    ok(await rawCall(sim, "POST", "/cluster/mapping/pci", { form: form({ id: "gpu-4090", map: "node=pve,path=0000:41:00.0,id=10de:2684,iommugroup=32" }) }));
    ok(await rawCall(sim, "POST", "/cluster/firewall/ipset", { form: form({ name: "gpu-hosts" }) }));
    await settle(sim);
  });

  afterAll(async () => {
    await sim.stop();
  });

  it.each(CASES)("$name → $status", async (c) => {
    const auth: RawAuth = c.auth === "root" ? root : "token";
    const res = await rawCall(sim, c.method, c.path, { form: form(c.params), auth });
    expect(res.status, JSON.stringify(res.body)).toBe(c.status);
    if (c.status === 200) {
      expect(res.reason).toBe("OK");
      return;
    }
    if (c.status === 400) {
      expect(res.body.message).toBe("Parameter verification failed.\n");
      expect(res.reason).toBe("Parameter verification failed.");
    }
    if (c.errors) {
      expect(res.body.errors).toEqual(c.exact ? c.errors : expect.objectContaining(c.errors));
    }
    if (c.message) expect(res.body.message).toMatch(c.message);
  });

  it("has at least 25 cases across lxc, qemu, storage, firewall and mapping", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(25);
    for (const area of ["/lxc", "/qemu", "/storage", "/firewall", "/mapping"]) {
      expect(CASES.some((c) => c.path.includes(area) && c.status !== 200)).toBe(true);
    }
  });

  it("reads an LXC config back in PVE's canonical form", async () => {
    const res = await rawCall(sim, "POST", "/nodes/pve/lxc", {
      form: form({ vmid: 150, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", net0: "name=eth0,firewall=yes,bridge=vmbr0,ip=10.0.0.5/24", onboot: 1 }),
    });
    expect(res.status).toBe(200);
    await settle(sim);
    const cfg = (await rawCall(sim, "GET", "/nodes/pve/lxc/150/config")).body.data as Record<string, unknown>;
    expect(cfg.rootfs).toBe("local-zfs:subvol-150-disk-0,size=8G");
    expect(cfg.net0).toMatch(/^name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:[0-9A-F:]{8},ip=10\.0\.0\.5\/24,type=veth$/);
    expect(cfg.onboot).toBe(1);
    expect(cfg.unprivileged).toBe(1);
    expect(cfg.digest).toMatch(/^[0-9a-f]{40}$/);
  });

  it("rejects the wire-level mistakes PVE rejects", async () => {
    const getWithBody = await rawCall(sim, "GET", "/nodes/pve/lxc", { form: "x=1" });
    expect([getWithBody.status, getWithBody.body.message]).toEqual([501, "Unexpected content for method 'GET'\n"]);

    const unknownPath = await rawCall(sim, "GET", "/nodes/pve/nothing");
    expect([unknownPath.status, unknownPath.body.message]).toEqual([501, "Method 'GET /nodes/pve/nothing' not implemented\n"]);

    const conflicting = await rawCall(sim, "PUT", "/nodes/pve/qemu/1001/config", { form: "vmid=1002&name=x" });
    expect(conflicting.status).toBe(400);
    expect(conflicting.body.errors).toEqual({ vmid: "duplicate parameter (already defined in URI) with conflicting values!" });

    // An unencoded `=` inside a value truncates it, exactly as decode_urlencoded does.
    const unencoded = await rawCall(sim, "PUT", "/nodes/pve/qemu/1001/config", { form: "boot=order=scsi0" });
    expect(unencoded.status).toBe(400);
    expect(unencoded.body.errors).toEqual({ boot: "invalid format - format error\n", "boot.legacy": "value does not match the regex pattern" });

    const json = await rawCall(sim, "PUT", "/nodes/pve/qemu/1001/config", { json: { onboot: true, cores: 4 } });
    expect(json.status).toBe(200);
    const cfg = (await rawCall(sim, "GET", "/nodes/pve/qemu/1001/config")).body.data as Record<string, unknown>;
    expect([cfg.onboot, cfg.cores]).toEqual([1, 4]);
  });

  it("authenticates like PVE", async () => {
    const noAuth = await rawCall(sim, "GET", "/nodes", { auth: "none" });
    expect([noAuth.status, noAuth.reason]).toEqual([401, "No ticket"]);

    const badToken = await rawCall(sim, "GET", "/nodes", { auth: "none", headers: { Authorization: `PVEAPIToken=${sim.token.id}=wrong` } });
    expect(badToken.status).toBe(401);

    const tokenWithSpace = await rawCall(sim, "GET", "/nodes", { auth: "none", headers: { Authorization: `PVEAPIToken ${sim.token.id}=${sim.token.secret}` } });
    expect(tokenWithSpace.status).toBe(200);

    const ticketNoCsrf = await rawCall(sim, "POST", "/cluster/firewall/groups", { form: "group=web", auth: { ticket: root.ticket } });
    expect([ticketNoCsrf.status, ticketNoCsrf.body.message]).toEqual([401, "Permission denied - invalid csrf token\n"]);

    const ticketGet = await rawCall(sim, "GET", "/nodes", { auth: { ticket: root.ticket } });
    expect(ticketGet.status).toBe(200);

    const tokenOnTicketOnly = await rawCall(sim, "PUT", "/access/password", { form: "userid=root%40pam&password=abcdefgh" });
    expect(tokenOnTicketOnly.status).toBe(403);
    expect(tokenOnTicketOnly.body.message).toBe("Permission check failed (URI '/access/password' not available with API token, need proper ticket.)\n");

    const badLogin = await rawCall(sim, "POST", "/access/ticket", { form: "username=root%40pam&password=nope", auth: "none" });
    expect([badLogin.status, badLogin.body.message]).toEqual([401, "authentication failure\n"]);
  });
});

describe("simulator strictness (PVE 8.4 schema)", () => {
  it("rejects parameters that only PVE 9 knows", async () => {
    const sim = await startSimulator({ version: 8, timing: { taskDurationMs: 1 } });
    try {
      seedTemplate(sim);
      const res = await rawCall(sim, "POST", "/nodes/pve/lxc", { form: form({ vmid: 300, ostemplate: DEBIAN_TEMPLATE, entrypoint: "/bin/sh" }) });
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual({ entrypoint: PROPERTY_IS_UNKNOWN });
      const version = await rawCall(sim, "GET", "/version");
      expect((version.body.data as { release: string }).release).toBe("8.4");
      await settle(sim);
    } finally {
      await sim.stop();
    }
  });
});
