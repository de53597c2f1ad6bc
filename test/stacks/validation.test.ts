import { describe, expect, it } from "vitest";
import { UNKNOWN } from "../../stacks/schema";
import { formatIssues } from "../../stacks/load";
import { DEV_FILE, issuesOf, prodWithSecrets, validate } from "./fixtures";
import { readStackFile } from "../../stacks/load";

// The raw stack is untyped YAML: tests reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Values = Record<string, any>;

describe("the committed stack files", () => {
  it("prod validates with its secrets set, and describes the design's machine", () => {
    const result = validate(prodWithSecrets());
    expect(issuesOf(result)).toEqual([]);
    if (result.ok !== true) throw new Error("prod did not validate");
    const byId = new Map(result.config.guests.map((g) => [g.vmid, g]));
    expect([...byId.keys()].sort((a, b) => a - b)).toEqual([101, 102, 103, 104, 801, 802, 914, 917, 1001, 1002]);
    expect(byId.get(103)?.network.ip).toBe("10.0.0.10/24");
    expect(byId.get(101)?.network.ip).toBe("10.0.0.153/24");
    expect(result.config.guests.every((g) => g.kind === "vm" || g.unprivileged)).toBe(true);
    expect(result.config.guests.every((g) => g.firewall.enabled && g.firewall.policyIn === "DROP")).toBe(true);
    expect(result.config.proxmox.tls.insecure).toBe(false);
    expect(result.config.host.gpus.map((g) => g.mode)).toEqual(["lxc-shared", "lxc-shared"]);
    expect(result.config.templates.map((t) => t.vmid)).toEqual([900, 901, 920, 9000]);
  });

  it("prod validates offline without secrets, listing the ones to set", () => {
    const raw = readStackFile(DEV_FILE.replace("dev", "prod"));
    expect(raw.secretKeys.size).toBe(0);
    const result = validate(raw, false);
    if (result.ok !== true) throw new Error(formatIssues(issuesOf(result)));
    expect(new Set(result.missingSecrets.map((s) => s.key))).toEqual(new Set(["proxmoxTokenSecret", "sshPrivateKey", "stepCaPassword", "portainerAdminPassword", "portainerAgentSecret", "traefikDashboardPassword", "qdrantApiKey", "webappSessionSecret", "gatewayApiKey-webapp", "gatewayApiKey-n8n"]));
  });

  it("dev validates offline and points at the local simulator", () => {
    const result = validate(readStackFile(DEV_FILE), false);
    if (result.ok !== true) throw new Error(formatIssues(issuesOf(result)));
    expect(result.config.proxmox.endpoint).toBe("https://127.0.0.1:8006");
    expect(result.config.proxmox.nodes[0]?.ssh).toMatchObject({ host: "127.0.0.1", port: 2222, hostKeyFile: ".pve-sim/ssh_host_ed25519_key.pub" });
    expect(result.missingSecrets.map((s) => s.key)).toContain("sshPrivateKey");
  });
});

interface Case {
  rule: string;
  mutate: (v: Values) => void;
  path: string;
  message: string | RegExp;
}

const guest = (v: Values, vmid: number): Values => v.guests.find((g: Values) => g.vmid === vmid);

const cases: Case[] = [
  { rule: "duplicate vmid", mutate: (v) => (guest(v, 102).vmid = 103), path: "guests[1].vmid", message: "vmid 103 is already used by guests[0].vmid" },
  { rule: "vmid shared by a template and a guest", mutate: (v) => (guest(v, 102).vmid = 900), path: "guests[1].vmid", message: "already used by templates[0].vmid" },
  { rule: "duplicate IP", mutate: (v) => (guest(v, 102).network.ip = "10.0.0.10/24"), path: "guests[1].network.ip", message: "IP 10.0.0.10 is already used by guests[0].network.ip" },
  { rule: "guest IP equal to the host's", mutate: (v) => (guest(v, 102).network.ip = "10.0.0.13/24"), path: "guests[1].network.ip", message: "already used by host.address" },
  {
    rule: "duplicate MAC",
    mutate: (v) => {
      guest(v, 103).network.mac = "BC:24:11:00:00:01";
      guest(v, 102).network.mac = "bc:24:11:00:00:01";
    },
    path: "guests[1].network.mac",
    message: "MAC bc:24:11:00:00:01 is already used",
  },
  { rule: "IP outside the bridge subnet", mutate: (v) => (guest(v, 103).network.ip = "10.1.0.10/24"), path: "guests[0].network.ip", message: "not in vmbr0's subnet 10.0.0.0/24" },
  { rule: "IP with another prefix than its subnet", mutate: (v) => (guest(v, 103).network.ip = "10.0.0.10/16"), path: "guests[0].network.ip", message: "same prefix" },
  { rule: "gateway outside the subnet", mutate: (v) => (guest(v, 103).network.gateway = "192.168.1.1"), path: "guests[0].network.gateway", message: "gateway 192.168.1.1 is outside vmbr0's subnet" },
  { rule: "host gateway outside the host subnet", mutate: (v) => (v.host.gateway = "10.9.0.1"), path: "host.gateway", message: "outside the host's subnet" },
  { rule: "bridge without a declared subnet", mutate: (v) => (guest(v, 103).network.bridge = "vmbr7"), path: "guests[0].network.bridge", message: "add it to host.bridges" },
  { rule: "clone source that does not exist", mutate: (v) => (guest(v, 103).clone = 950), path: "guests[0].clone", message: "clone source 950 is not a template" },
  { rule: "clone source that is a guest", mutate: (v) => (guest(v, 103).clone = 102), path: "guests[0].clone", message: "102 is a guest, not a template" },
  { rule: "container cloned from a VM template", mutate: (v) => (guest(v, 103).clone = 9000), path: "guests[0].clone", message: "cannot be cloned from VM template 9000" },
  {
    rule: "dependency cycle",
    mutate: (v) => {
      guest(v, 103).dependsOn = [102];
      guest(v, 102).dependsOn = [101];
      guest(v, 101).dependsOn = [103];
    },
    path: "guests[2].dependsOn[0]",
    message: "dependency cycle: 101 → 103 → 102 → 101 (101 waits for 103: guests[2].dependsOn[0], dependsOn; 103 waits for 102: guests[0].dependsOn[0], dependsOn;",
  },
  { rule: "linked clone on another storage than its template", mutate: (v) => (guest(v, 1001).storage = "quickOS-lxc-disks"), path: "guests[7].storage", message: "lives on quickOS-vm-disks (template 9000)" },
  { rule: "GPU guest cloned from a template without NVIDIA user-space", mutate: (v) => (guest(v, 914).clone = 900), path: "guests[5].clone", message: "template 900 is layer base, without NVIDIA user-space" },
  { rule: "vLLM server not cloned from the golden vLLM template", mutate: (v) => (guest(v, 802).clone = 901), path: "guests[4].clone", message: "vLLM runs from the golden vllm template, but 901 is layer cuda" },
  { rule: "CUDA template pinning another NVIDIA user-space than the host driver", mutate: (v) => (v.templates[1].versions.nvidia = "575.64.05"), path: "templates[1].versions.nvidia", message: "differs from host.nvidiaDriver.version 580.95.05" },
  { rule: "model engine version Phoenix has not checked", mutate: (v) => (guest(v, 917).role.server.version = "b9999"), path: "guests[6].role.server.version", message: "Phoenix has not checked the options of llamacpp b9999 (it knows b6500)" },
  { rule: "vLLM server with no version anywhere", mutate: (v) => (v.templates[2].versions = {}), path: "guests[3].role.server.version", message: "no vllm version: set role.server.version or clone it from a template whose versions pin vllm" },
  { rule: "NFS export to a container", mutate: (v) => (v.host.nfsExports[0].clients = [914]), path: "host.nfsExports[0].clients[0]", message: "NFS data is mounted by Docker host VMs" },
  { rule: "NFS export of an unknown dataset", mutate: (v) => (v.host.nfsExports[0].volume = "fastData/nope"), path: "host.nfsExports[0].volume", message: "'fastData/nope' is not a declared dataset" },
  { rule: "dependency on an unknown guest", mutate: (v) => (guest(v, 103).dependsOn = [555]), path: "guests[0].dependsOn[0]", message: "depends on 555, which is not a declared guest" },
  { rule: "GPU the host does not declare", mutate: (v) => (guest(v, 801).gpus = [5]), path: "guests[3].gpus[0]", message: "GPU 5 is not declared in host.gpus" },
  {
    rule: "vm-passthrough GPU given to a container",
    mutate: (v) => (v.host.gpus[1].mode = "vm-passthrough"),
    path: "guests[5].gpus[0]",
    message: "GPU 1 is vm-passthrough (bound to vfio), so a container cannot use it",
  },
  {
    rule: "vm-passthrough GPU given to two VMs",
    mutate: (v) => {
      v.host.gpus[1].mode = "vm-passthrough";
      guest(v, 914).gpus = [0];
      guest(v, 917).gpus = [0];
      guest(v, 1001).gpus = [1];
      guest(v, 1002).gpus = [1];
    },
    path: "guests[8].gpus[0]",
    message: "GPU 1 is already passed through to VM 1001 portainer",
  },
  { rule: "lxc-shared GPU given to a VM", mutate: (v) => (guest(v, 1001).gpus = [0]), path: "guests[7].gpus[0]", message: "lxc-shared (host driver), so a VM cannot take it" },
  { rule: "vLLM memory utilization above 0.95 on one GPU", mutate: (v) => (guest(v, 802).role.server.gpuMemoryUtilization = 0.8), path: "host.gpus[0]", message: "vLLM gpuMemoryUtilization sums to 1" },
  { rule: "declared VRAM above the card", mutate: (v) => (guest(v, 914).role.server.models[0].vramGiB = 12), path: "host.gpus[1]", message: "18.5 GiB allocated" },
  { rule: "tensor parallel size not matching the GPUs", mutate: (v) => (guest(v, 802).role.server.tensorParallelSize = 2), path: "guests[4].role.server.tensorParallelSize", message: "must equal the number of GPUs assigned (1)" },
  { rule: "model name served twice", mutate: (v) => (guest(v, 801).role.server.servedModelName = "Qwen3-4B-FP8"), path: "guests[4].role.server", message: "model 'Qwen3-4B-FP8' is already served by CT 801" },
  { rule: "mount of an unknown shared volume", mutate: (v) => (guest(v, 801).mounts[0].volume = "fastData/nope"), path: "guests[3].mounts[0].volume", message: "volume 'fastData/nope' is not a declared dataset" },
  { rule: "relative mount path", mutate: (v) => (guest(v, 801).mounts[0].path = "models"), path: "guests[3].mounts[0].path", message: "must be absolute" },
  { rule: "secret volume mounted into a second guest", mutate: (v) => guest(v, 102).mounts = [{ volume: "fastData/step-ca", path: "/ca" }], path: "guests[1].mounts[0].volume", message: "holds secrets and is already mounted into CT 103 step-ca" },
  { rule: "dataset on an unknown pool", mutate: (v) => (v.host.zfs.datasets[2].pool = "slowData"), path: "host.zfs.datasets[2].pool", message: "pool 'slowData' is not declared" },
  { rule: "pool whose disks do not fit its topology", mutate: (v) => v.host.zfs.pools[0].disks.pop(), path: "host.zfs.pools[0].disks", message: "mirror needs at least 2 disks, 1 declared" },
  { rule: "single pool with two disks", mutate: (v) => v.host.zfs.pools[1].disks.push("/dev/disk/by-id/nvme-extra"), path: "host.zfs.pools[1].disks", message: "single needs exactly 1 disk" },
  { rule: "disk by kernel name", mutate: (v) => (v.host.zfs.pools[1].disks[0] = "/dev/nvme0n1"), path: "host.zfs.pools[1].disks[0]", message: "by-id" },
  { rule: "unknown storage", mutate: (v) => (guest(v, 103).storage = "nvme-pool"), path: "guests[0].storage", message: "storage 'nvme-pool' is not declared" },
  { rule: "storage without the content a guest needs", mutate: (v) => (guest(v, 103).storage = "quickOS-vm-disks"), path: "guests[0].storage", message: "does not hold rootdir content" },
  { rule: "two services on one IP and port", mutate: (v) => v.services.push({ name: "qdrant-grpc", guest: 1002, port: 6333 }), path: "services[10].port", message: "port clash: 10.0.0.102:6333 is already taken by services[6].port" },
  { rule: "routed service on a DHCP guest", mutate: (v) => (guest(v, 1002).network.ip = "dhcp"), path: "services[6].guest", message: "uses DHCP; a routed service needs a static address" },
  { rule: "service pointing at a proxy", mutate: (v) => v.services.push({ name: "loop", guest: 102, port: 8443 }), path: "services[10].guest", message: "which is a proxy: the route would loop back" },
  { rule: "plain HTTP to a TLS port", mutate: (v) => (v.services[0].scheme = "http"), path: "services[0].scheme", message: "sends plain HTTP to port 9000 of CT 103 step-ca, which speaks TLS there" },
  { rule: "model server no service reaches", mutate: (v) => (v.services = v.services.filter((s: Values) => s.name !== "ollama")), path: "guests[5].role.server.port", message: "serves models on port 11434 but no service points there" },
  { rule: "by-model route on another host", mutate: (v) => (v.routes[0].host = "api.internal.thinkheads.ai"), path: "routes[0].host", message: "routing by model is served on the gateway host internal.thinkheads.ai only" },
  { rule: "route to an unknown service", mutate: (v) => (v.routes[4].service = "qdrant2"), path: "routes[4].service", message: "service 'qdrant2' is not declared in services" },
  { rule: "two routes claiming the same host+path", mutate: (v) => v.routes.push({ path: "/qdrant/", service: "n8n" }), path: "routes[9]", message: "is already claimed by routes[4]" },
  { rule: "route with both a service and byModel", mutate: (v) => (v.routes[0].service = "vllm-chat"), path: "routes[0].service", message: "either service or byModel" },
  { rule: "route host outside the internal domain", mutate: (v) => (v.routes[7].host = "portainer.example.com"), path: "routes[7].host", message: "outside the internal domain" },
  { rule: "invalid hostname", mutate: (v) => (guest(v, 103).name = "step_ca"), path: "guests[0].name", message: "must be a valid hostname" },
  { rule: "vmid below 100", mutate: (v) => (guest(v, 103).vmid = 99), path: "guests[0].vmid", message: "between 100 and 999999999" },
  { rule: "vmid above 999999999", mutate: (v) => (guest(v, 103).vmid = 1_000_000_000), path: "guests[0].vmid", message: "between 100 and 999999999" },
  { rule: "template asking for GPUs", mutate: (v) => (v.templates[1].gpus = [0]), path: "templates[1].gpus", message: "a template cannot hold GPUs" },
  { rule: "template asking to start on boot", mutate: (v) => (v.templates[0].startup = { onBoot: true }), path: "templates[0].startup.onBoot", message: "a template is never started" },
  { rule: "firewall rule with an invalid port", mutate: (v) => (guest(v, 103).firewall.rules[0].dport = 70000), path: "guests[0].firewall.rules[0].dport", message: "must be a port 1–65535" },
  { rule: "firewall rule with an invalid protocol", mutate: (v) => (guest(v, 103).firewall.rules[0].proto = "tcpp"), path: "guests[0].firewall.rules[0].proto", message: "must be one of tcp, udp" },
  { rule: "firewall rule with an invalid address", mutate: (v) => (guest(v, 103).firewall.rules[0].source = "10.0.0.300/24"), path: "guests[0].firewall.rules[0].source", message: "must be an IPv4 address, CIDR" },
  { rule: "firewall ports without tcp/udp", mutate: (v) => (guest(v, 103).firewall.rules[0].proto = "icmp"), path: "guests[0].firewall.rules[0].proto", message: "ports need proto tcp" },
  { rule: "unknown security group", mutate: (v) => (guest(v, 101).firewall.groups = ["webb"]), path: "guests[2].firewall.groups[0]", message: "security group 'webb' is not declared" },
  {
    rule: "node firewall that would lock the admin out",
    mutate: (v) => {
      v.host.adminNetworks = [];
      v.firewall.node.rules = [{ type: "in", action: "DROP", proto: "tcp", dport: 22 }];
    },
    path: "firewall.node.rules[0]",
    message: "lock yourself out",
  },
  {
    rule: "secret set in plain text",
    mutate: (v) => (v.__plainSecret = "proxmoxTokenSecret"),
    path: "proxmoxTokenSecret",
    message: "stored in plain text: run `pulumi config rm phoenix:proxmoxTokenSecret` then `pulumi config set --secret phoenix:proxmoxTokenSecret <value>`",
  },
  { rule: "password written into a guest", mutate: (v) => (guest(v, 1001).role.adminPassword = "hunter2"), path: "guests[7].role.adminPassword", message: "a secret is written into the machine description" },
  { rule: "secret-looking env var in plain text", mutate: (v) => (guest(v, 1002).dockerStacks[1].env.DB_PASSWORD = "hunter2"), path: "guests[8].dockerStacks[1].env.DB_PASSWORD", message: "map it in secretEnv" },
  { rule: "unknown setting", mutate: (v) => (guest(v, 103).memroyMiB = 1024), path: "guests[0].memroyMiB", message: "unknown setting 'memroyMiB'" },
  { rule: "unknown guest kind", mutate: (v) => (guest(v, 103).kind = "docker"), path: "guests[0].kind", message: "must be one of: lxc, vm" },
  { rule: "unknown role type", mutate: (v) => (guest(v, 102).role.type = "haproxy"), path: "guests[1].role.type", message: "must be one of: step-ca, traefik, nginx-gateway, model-server, portainer-server, portainer-agent" },
  { rule: "unknown model engine", mutate: (v) => (guest(v, 801).role.server.engine = "tgi"), path: "guests[3].role.server.engine", message: "must be one of: vllm, ollama, llamacpp" },
  { rule: "docker stacks on a VM that is not a Portainer agent", mutate: (v) => (guest(v, 1001).dockerStacks = [{ name: "x", compose: "x.yaml" }]), path: "guests[7].dockerStacks", message: "give this VM role portainer-agent" },
  { rule: "insecure TLS together with a CA", mutate: (v) => (v.proxmox.tls.insecure = true), path: "proxmox.tls.insecure", message: "a CA would be ignored" },
  { rule: "NVIDIA GPUs without a pinned driver", mutate: (v) => delete v.host.nvidiaDriver, path: "host.nvidiaDriver", message: "no NVIDIA driver version is pinned" },
  { rule: "typo in a config key", mutate: (v) => (v.gests = []), path: "gests", message: "phoenix:gests is not a Phoenix setting" },
  {
    rule: "host preparation without SSH to the node",
    mutate: (v) => delete v.proxmox.nodes[0].ssh,
    path: "proxmox.nodes[0].ssh",
    message: "host preparation (ZFS pools and datasets, the ZFS ARC limit, GPU drivers and vfio, NFS exports) runs over SSH",
  },
  {
    rule: "bind mounts on a node without SSH",
    mutate: (v) => delete v.proxmox.nodes[0].ssh,
    path: "guests[0]",
    message: "CT 103 step-ca: mounts (bind mounts, owner of their host directory) need SSH to node phoenix",
  },
  {
    rule: "GPU devices on a node with neither SSH nor the root@pam password",
    mutate: (v) => {
      v.proxmox.nodes.push({ name: "pve2" });
      guest(v, 802).node = "pve2";
      guest(v, 802).mounts = [];
    },
    path: "guests[4]",
    message: "needs the secret phoenix:proxmoxRootPassword (CT 802 vllm-chat: gpus (device passthrough) need root@pam and node pve2 has no proxmox.nodes[].ssh",
  },
  { rule: "SSH without a pinned host key", mutate: (v) => delete v.proxmox.nodes[0].ssh.hostKey, path: "proxmox.nodes[0].ssh.hostKey", message: "refuses an unpinned host key" },
  {
    rule: "a required secret that is not set",
    mutate: (v) => (v.__dropSecret = "stepCaPassword"),
    path: "guests[0].role",
    message: "needs the secret phoenix:stepCaPassword (the Step-CA admin provisioner password), which is not set: run `pulumi config set --secret phoenix:stepCaPassword <value>`",
  },
];

function applyCase(c: Case) {
  const raw = prodWithSecrets();
  const values = raw.values as Values;
  const secretKeys = new Set(raw.secretKeys);
  c.mutate(values);
  if (values.__plainSecret) {
    secretKeys.delete(values.__plainSecret);
    delete values.__plainSecret;
  }
  if (values.__dropSecret) {
    secretKeys.delete(values.__dropSecret);
    delete values[values.__dropSecret];
    delete values.__dropSecret;
  }
  return validate({ values, secretKeys });
}

describe("validation rejects, naming the config path and what to do", () => {
  it("has a case for every rule", () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases)("$rule", (c) => {
    const result = applyCase(c);
    expect(result.ok).toBe(false);
    const issues = issuesOf(result);
    const atPath = issues.filter((i) => i.path === c.path);
    expect(atPath.length, `no issue at ${c.path}; got:\n${formatIssues(issues)}`).toBeGreaterThan(0);
    const matches = (m: string) => (typeof c.message === "string" ? m.includes(c.message) : c.message.test(m));
    expect(atPath.map((i) => i.message).some(matches), `no issue at ${c.path} says ${String(c.message)}; got:\n${formatIssues(atPath)}`).toBe(true);
  });
});

describe("reporting", () => {
  it("reports every problem together, not only the first", () => {
    const raw = prodWithSecrets();
    const v = raw.values as Values;
    guest(v, 102).vmid = 103;
    guest(v, 801).gpus = [7];
    v.routes[4].service = "nope";
    v.host.zfs.datasets[0].pool = "nopool";
    const issues = issuesOf(validate(raw));
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(["guests[1].vmid", "guests[3].gpus[0]", "routes[4].service", "host.zfs.datasets[0].pool"]));
    const text = formatIssues(issues);
    expect(text).toMatch(/^The stack configuration has \d+ problems; nothing was changed:/);
    expect(text).toContain("  - phoenix:routes[4].service: route /qdrant/: service 'nope' is not declared in services");
  });

  it("reports structural and plain-text-secret problems in the same run", () => {
    const raw = prodWithSecrets();
    const v = raw.values as Values;
    guest(v, 103).name = "bad name";
    guest(v, 1001).role.apiKey = "abc";
    const paths = issuesOf(validate(raw)).map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["guests[0].name", "guests[7].role.apiKey"]));
  });
});

describe("preview unknowns", () => {
  it("accepts the preview sentinel where a value is not yet known", () => {
    const raw = prodWithSecrets();
    const v = raw.values as Values;
    guest(v, 103).network.ip = UNKNOWN;
    guest(v, 1002).network.gateway = UNKNOWN;
    guest(v, 103).description = UNKNOWN;
    const result = validate(raw);
    expect(issuesOf(result)).toEqual([]);
    expect(result.ok).toBe("deferred");
    if (result.ok === "deferred") expect(result.unknownPaths).toEqual(["guests[0].network.ip", "guests[0].description", "guests[8].network.gateway"]);
  });

  it("accepts the sentinel in free-text fields without deferring the cross-field rules", () => {
    const raw = prodWithSecrets();
    guest(raw.values as Values, 103).description = UNKNOWN;
    expect(validate(raw).ok).toBe(true);
  });

  it("still reports real problems next to unknowns", () => {
    const raw = prodWithSecrets();
    const v = raw.values as Values;
    guest(v, 103).network.ip = UNKNOWN;
    guest(v, 102).name = "not_valid";
    expect(issuesOf(validate(raw)).map((i) => i.path)).toEqual(["guests[1].name"]);
  });
});
