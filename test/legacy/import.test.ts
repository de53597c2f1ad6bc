import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runImport } from "../../scripts/import-legacy";
import { readStackFile, validateStack } from "../../stacks/load";
import type { Guest, StackConfig } from "../../stacks/schema";
import { secretKeyName, type LegacyInput } from "../../stacks/legacy/convert";
import { gpuAssignment, LEGACY_FILES, lxcOption } from "../../stacks/legacy/format";
import { importLegacy } from "../../stacks/legacy/import";
import type { ReportEntry } from "../../stacks/legacy/report";

const FIXTURES = path.join(__dirname, "fixtures");
const REALISTIC = path.join(FIXTURES, "realistic", "etc");
const COLLISION = path.join(FIXTURES, "ip-collision");
const PLAINTEXT_SECRETS = ["Phoenix-Portainer-2025!", "qdrant-key-in-plain-text"];

/** The realistic fixture as parsed JSON, fresh for each caller to mutate. */
function realisticInput(): LegacyInput {
  const read = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(REALISTIC, name), "utf8"));
  return { hypervisor: read(LEGACY_FILES.hypervisor), lxc: read(LEGACY_FILES.lxc), vm: read(LEGACY_FILES.vm), stacks: read(LEGACY_FILES.stacks) };
}

const tempDirs: string[] = [];
function tempProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-import-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => tempDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const at = (entries: ReportEntry[], kind: ReportEntry["kind"], file: string, legacyPath: string): ReportEntry | undefined =>
  entries.find((e) => e.kind === kind && e.source.file === file && e.source.path === legacyPath);

describe("import-legacy on a realistic legacy machine", () => {
  let cwd: string;
  let run: { code: number; stdout: string };
  let config: StackConfig;
  let stackText: string;
  const guest = (vmid: number): Guest => {
    const g = config.guests.find((x) => x.vmid === vmid);
    if (!g) throw new Error(`guest ${vmid} was not imported`);
    return g;
  };

  beforeAll(() => {
    cwd = tempProject();
    run = runImport([REALISTIC, "--stack", "legacy"], cwd);
    const file = path.join(cwd, "Pulumi.legacy.yaml");
    stackText = fs.readFileSync(file, "utf8");
    const result = validateStack(readStackFile(file), { requireSecrets: false });
    if (result.ok !== true) throw new Error(`the imported stack does not validate: ${JSON.stringify(result)}\n${run.stdout}`);
    config = result.config;
  });

  it("exits 0, writes the stack with the schema modeline, and writes the printed report", () => {
    expect(run.code).toBe(0);
    expect(stackText.startsWith("# yaml-language-server: $schema=./schema/stack.schema.json\n")).toBe(true);
    expect(stackText).toMatch(/^config:\n {2}phoenix:proxmox:/m);
    const report = fs.readFileSync(path.join(cwd, "import-report.md"), "utf8");
    expect(run.stdout).toContain(report);
    expect(report).toContain("Wrote `Pulumi.legacy.yaml`; it validates with Phoenix's schema.");
  });

  it("writes no secret to disk or to the terminal", () => {
    const report = fs.readFileSync(path.join(cwd, "import-report.md"), "utf8");
    for (const secret of PLAINTEXT_SECRETS) {
      expect(stackText).not.toContain(secret);
      expect(report).not.toContain(secret);
      expect(run.stdout).not.toContain(secret);
    }
  });

  it("derives the connection and the host from the hypervisor config", () => {
    expect(config.proxmox.endpoint).toBe("https://10.0.0.13:8006");
    expect(config.proxmox.nodes[0]?.ssh?.host).toBe("10.0.0.13");
    expect(config.host).toMatchObject({ address: "10.0.0.13/24", gateway: "10.0.0.1", domain: "internal.thinkheads.ai", timezone: "America/New_York", adminNetworks: ["10.0.0.0/24"] });
    // 10.0.0.153 is the nginx container, and the host's dnsmasq is gone: guests ask its upstreams
    expect(config.host.dnsServers).toEqual(["1.1.1.1", "8.8.8.8"]);
    expect(config.host.nvidiaDriver?.version).toBe("580.76.05");
    expect(config.host.gpus.map((g) => [g.id, g.mode, g.model])).toEqual([
      [0, "lxc-shared", "FILL-IN GPU 0"],
      [1, "lxc-shared", "FILL-IN GPU 1"],
    ]);
  });

  it("maps pools, datasets and their storages, and turns a bind-mounted subdirectory into its own dataset", () => {
    const { zfs } = config.host;
    expect(zfs.arcMaxGiB).toBe(32);
    expect(zfs.pools.map((p) => [p.name, p.topology, p.disks.length])).toEqual([
      ["quickOS", "mirror", 2],
      ["fastData", "single", 1],
    ]);
    const ds = (name: string) => zfs.datasets.find((d) => `${d.pool}/${d.name}` === name);
    expect(ds("quickOS/vm-disks")).toMatchObject({ properties: { recordsize: "128K", quota: "800G" }, storage: { id: "quickOS-vm-disks", type: "zfspool", content: ["images"] } });
    // import and snippets added for the cloud image and the Docker VMs' user data (see below).
    expect(ds("fastData/shared-iso")?.storage).toEqual({ id: "fastData-iso", type: "dir", content: ["iso", "vztmpl", "import", "snippets"] });
    expect(ds("fastData/shared-models")?.storage).toBeUndefined();
    expect(ds("quickOS/lxc-persistent-data/103/ssl")?.secret).toBe(true);
    expect(guest(103)).toMatchObject({ kind: "lxc", mounts: [{ volume: "quickOS/lxc-persistent-data/103/ssl", path: "/etc/step-ca/ssl", uid: 1000, gid: 1000, readOnly: false }] });
  });

  it("makes templates of the containers others clone from: 900 → 901 → 911, and the VM template", () => {
    expect(config.templates.map((t) => t.vmid)).toEqual([900, 901, 911, 9000]);
    const [base, cuda, vllm, cloud] = config.templates;
    expect(base).toMatchObject({ kind: "lxc", layer: "base", source: { catalogue: "ubuntu-24.04-standard_24.04-2_amd64.tar.zst", storage: "fastData-iso" } });
    expect(cuda).toMatchObject({ kind: "lxc", layer: "cuda", source: { clone: 900 }, gpus: [] });
    expect(vllm).toMatchObject({ kind: "lxc", layer: "vllm", source: { clone: 901 }, diskGiB: 64 });
    expect(cloud).toMatchObject({ kind: "vm", source: { url: "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img", sha256SumsUrl: "https://cloud-images.ubuntu.com/noble/current/SHA256SUMS", storage: "fastData-iso" } });
  });

  it("puts the cloud image and the user data on the legacy ISO dir storage, given import and snippets, and assumes nothing of local", () => {
    // PVE's installer gives local iso, vztmpl, backup only (import from pve-installer 9.0.7 on): never assumed.
    expect(config.host.existingStorages).toEqual([{ id: "local", content: ["iso", "vztmpl", "backup"], type: "dir" }]);
    expect(config.host.zfs.datasets.find((d) => d.storage?.id === "fastData-iso")?.storage).toMatchObject({ type: "dir", content: ["iso", "vztmpl", "import", "snippets"] });
    expect(config.host.snippetStorage).toBe("fastData-iso");
  });

  it("maps guests with resources, network, GPUs from '0, 1' strings, features and dependencies", () => {
    expect(config.guests.map((g) => [g.vmid, g.kind, g.clone])).toEqual([
      [101, "lxc", 900],
      [102, "lxc", 900],
      [103, "lxc", 900],
      [801, "lxc", 911],
      [802, "lxc", 911],
      [914, "lxc", 901],
      [1001, "vm", 9000],
      [1002, "vm", 9000],
    ]);
    expect(guest(802)).toMatchObject({ cores: 8, memoryMiB: 32768, diskGiB: 64, gpus: [0, 1], network: { ip: "10.0.0.142/24", mac: "52:54:00:67:89:82" } });
    expect(guest(801).gpus).toEqual([0]);
    expect(guest(101)).toMatchObject({ features: { nesting: true }, idPassthrough: { gids: [33] }, dependsOn: [102, 103] });
    expect(guest(1001)).toMatchObject({ startup: { onBoot: true, order: 4, upDelay: 2 }, cloudInit: { user: "phoenix_user" }, diskGiB: 32 });
    // 1002's dependency on template 9000 is dropped; the one on 1001 stays
    expect(guest(1002).dependsOn).toEqual([1001]);
  });

  it("derives the roles from features, names and portainer_role", () => {
    expect(config.guests.map((g) => [g.vmid, g.role?.type])).toEqual([
      [101, "nginx-gateway"],
      [102, "traefik"],
      [103, "step-ca"],
      [801, "model-server"],
      [802, "model-server"],
      [914, "model-server"],
      [1001, "portainer-server"],
      [1002, "portainer-agent"],
    ]);
    expect(guest(801).role).toMatchObject({ server: { engine: "vllm", model: "ibm-granite/granite-embedding-english-r2", servedModelName: "granite-embedding-english-r2", task: "embed", maxModelLen: 8192, gpuMemoryUtilization: 0.2, port: 8000 } });
    expect(guest(802).role).toMatchObject({ server: { engine: "vllm", dtype: "bfloat16", quantization: "fp8", tensorParallelSize: 2, trustRemoteCode: true, task: "generate" } });
    expect(guest(914).role).toMatchObject({ server: { engine: "ollama", version: "0.12.6", models: [{ name: "fill-in-model-914", vramGiB: 1 }] } });
    expect(guest(1001).role).toMatchObject({ adminUser: "admin" });
    expect(guest(1002).role).toEqual({ type: "portainer-agent", server: 1001, environment: "drphoenix", port: 9001, version: "2.33.2" });
  });

  it("maps docker stacks with their compose paths, plain variables and secret variables", () => {
    const vm = guest(1002);
    if (vm.kind !== "vm") throw new Error("1002 is a VM");
    expect(vm.dockerStacks).toEqual([
      { name: "qdrant_service", compose: "stacks/qdrant_service/docker-compose.yml", env: { QDRANT__LOG_LEVEL: "INFO" }, secretEnv: { QDRANT__SERVICE__API_KEY: "qdrantServiceApiKey" } },
      { name: "thinkheads_ai_app", compose: "docker/thinkheads_ai_app/compose.yaml", env: { PUBLIC_URL: "https://internal.thinkheads.ai" }, secretEnv: {} },
    ]);
  });

  it("maps Traefik services and derives routes through the gateway", () => {
    expect(config.services.map((s) => [s.name, s.guest, s.port, s.scheme])).toEqual([
      ["step-ca", 103, 9000, "https"],
      ["vllm-embed", 801, 8000, "http"],
      ["vllm-chat", 802, 8000, "http"],
      ["ollama", 914, 11434, "http"],
      ["portainer", 1001, 9443, "https"],
      ["qdrant", 1002, 6333, "http"],
    ]);
    expect(config.routes.filter((r) => r.byModel).map((r) => r.path)).toEqual(["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"]);
    expect(config.routes.filter((r) => r.service).map((r) => [r.host, r.service])).toEqual([
      ["step-ca.internal.thinkheads.ai", "step-ca"],
      ["portainer.internal.thinkheads.ai", "portainer"],
      ["qdrant.internal.thinkheads.ai", "qdrant"],
    ]);
  });

  it("maps the firewall with duplicated rules removed, and leaves off a guest firewall the legacy config never had", () => {
    expect(config.firewall).toMatchObject({ enabled: true, policyIn: "DROP", policyOut: "ACCEPT" });
    expect(config.firewall.rules.map((r) => r.dport)).toEqual(["22", "8006"]);
    expect(guest(802).firewall.rules).toEqual([{ type: "in", action: "ACCEPT", proto: "tcp", source: "10.0.0.12", dport: "8000", comment: "from Traefik", enabled: true }]);
    expect(guest(914).firewall.enabled).toBe(false);
  });

  it("refuses to overwrite the stack file without --force", () => {
    const file = path.join(cwd, "Pulumi.legacy.yaml");
    fs.writeFileSync(file, "# edited by hand\n");
    const again = runImport([REALISTIC, "--stack", "legacy"], cwd);
    expect(again).toEqual({ code: 2, stdout: "Pulumi.legacy.yaml already exists: choose another stack name, or pass --force to replace it" });
    expect(fs.readFileSync(file, "utf8")).toBe("# edited by hand\n");
    expect(runImport([REALISTIC, "--stack", "legacy", "--force"], cwd).code).toBe(0);
    expect(fs.readFileSync(file, "utf8")).toBe(stackText);
  });
});

describe("the migration report of the realistic machine", () => {
  const { entries, report } = importLegacy({ ...realisticInput(), scripts: new Set(fs.readdirSync(path.join(REALISTIC, "..", "bin"))) }, "legacy");
  const HV = LEGACY_FILES.hypervisor;
  const LXC = LEGACY_FILES.lxc;
  const VM = LEGACY_FILES.vm;

  it("lists each plaintext secret with the command that sets it", () => {
    expect(entries.filter((e) => e.kind === "secret").map((e) => [e.source.file, e.source.path, e.fix])).toEqual([
      [LEGACY_FILES.stacks, "docker_stacks.qdrant_service.environments.production.variables[0]", "`pulumi config set --secret phoenix:qdrantServiceApiKey <value>`"],
      [HV, "portainer_api.admin_password", "`pulumi config set --secret phoenix:portainerAdminPassword <value>`"],
    ]);
    for (const secret of PLAINTEXT_SECRETS) expect(report).not.toContain(secret);
  });

  it("flags the legacy oddities, each with a fix", () => {
    const problems = entries.filter((e) => e.kind === "problem");
    expect(problems.every((p) => p.severity === "warning" && p.fix)).toBe(true);
    expect(at(entries, "problem", HV, "shared_volumes.firewall.global_firewall_rules[2]")?.message).toBe("the same rule as shared_volumes.firewall.global_firewall_rules[0]: removed");
    expect(at(entries, "problem", LXC, "lxc_configs.802.firewall.rules[1]")?.message).toBe("the same rule as lxc_configs.802.firewall.rules[0]: removed");
    expect(at(entries, "problem", LXC, "lxc_configs.911.dependencies[0]")?.message).toContain("911 is a template, and templates are built before any guest, so it cannot wait for VM 1002");
    expect(at(entries, "problem", VM, "vms[2].dependencies[1]")?.message).toContain("9000 is a template");
    expect(at(entries, "problem", LXC, "lxc_configs.914.dependencies[0]")?.message).toBe("ollama-gpu1 depends on 950: no such container or VM; dropped");
    expect(at(entries, "problem", LXC, "lxc_configs.901.gpu_assignment")?.message).toContain("template 901 had GPUs 0, 1");
    expect(at(entries, "problem", LXC, "lxc_configs.102.application_script")?.message).toContain("phoenix_hypervisor_lxc_102.sh does not exist");
    expect(at(entries, "problem", LXC, "lxc_configs.801.application_script")).toBeUndefined();
    expect(at(entries, "problem", HV, "network.interfaces.dns_nameservers[0]")?.message).toBe("10.0.0.153 is CT 101 Nginx-Phoenix, not a DNS server: removed");
  });

  it("drops the fields the old scripts never read, and says so", () => {
    expect(at(entries, "unused", LXC, "lxc_configs.801.swap_mb")?.message).toContain("not read by any script");
    expect(at(entries, "unused", HV, "proxmox_storage_ids.quickOS_vm_persistent")?.message).toContain("matches no dataset");
    expect(at(entries, "unused", VM, "vms[1].network_config.nameserver")?.message).toContain("hardcoded 10.0.0.13");
    expect(at(entries, "unused", HV, "step_ca")).toBeDefined();
  });

  it("lists what Phoenix does not model, and the placeholders to fill in", () => {
    expect(at(entries, "unsupported", HV, "nfs")?.fix).toContain("/etc/exports");
    expect(at(entries, "unsupported", VM, "vms[1].volumes[0]")).toBeDefined();
    expect(entries.filter((e) => e.kind === "fill-in").map((e) => e.target)).toEqual(["host.gpus[0]", "host.gpus[1]", "templates[2].versions.vllm", "guests[5].role.server.version", "guests[5].role.server.models", "proxmox.nodes[0].ssh.hostKey"]);
    expect(entries.find((e) => e.kind === "check" && e.target === "proxmox.endpoint")?.message).toContain("https://10.0.0.13:8006");
  });

  it("records each mapping with the legacy field it came from", () => {
    expect(at(entries, "mapped", LXC, "lxc_configs.802.vllm_engine_config.CacheConfig.gpu_memory_utilization")?.target).toBe("guests[4].role.server.gpuMemoryUtilization");
    expect(at(entries, "mapped", LXC, "lxc_configs.802.gpu_assignment")).toMatchObject({ target: "guests[4].gpus", message: "[0, 1]" });
  });

  it("accounts for every field of every legacy file", () => {
    const input = realisticInput();
    const handling = entries.filter((e) => e.source.path !== "" && ["mapped", "unused", "unsupported", "secret", "problem"].includes(e.kind));
    const leaves = (value: unknown, p: string): string[] =>
      Array.isArray(value) ? value.flatMap((v, i) => leaves(v, `${p}[${i}]`)) : value !== null && typeof value === "object" ? Object.entries(value).flatMap(([k, v]) => leaves(v, p ? `${p}.${k}` : k)) : [p];
    const files: [string, unknown][] = [
      [HV, input.hypervisor],
      [LXC, input.lxc],
      [VM, input.vm],
      [LEGACY_FILES.stacks, input.stacks],
    ];
    const unaccounted = files.flatMap(([file, raw]) =>
      leaves(raw, "").filter((leaf) => !handling.some((e) => e.source.file === file && (leaf === e.source.path || leaf.startsWith(`${e.source.path}.`) || leaf.startsWith(`${e.source.path}[`)))),
    );
    expect(unaccounted).toEqual([]);
    // Every field of this fixture is one LEGACY-FORMAT.md documents, so none may fall through to "no script reads it".
    expect(entries.filter((e) => e.message.startsWith("no script of the bash orchestrator")).map((e) => e.source.path)).toEqual([]);
  });

  it("reports a field no script reads, such as a misspelt one", () => {
    const input = realisticInput() as { lxc: { lxc_configs: Record<string, Record<string, unknown>> } };
    input.lxc.lxc_configs["914"]!.gpu_assigment = "0";
    const typo = at(importLegacy(input, "legacy").entries, "unused", LXC, "lxc_configs.914.gpu_assigment");
    expect(typo?.message).toBe("no script of the bash orchestrator reads this field (a typo, or left over from an older version)");
  });
});

describe("import-legacy on a legacy config Phoenix rejects", () => {
  it("exits non-zero on an IP collision, naming the legacy field, and writes a draft instead of the stack", () => {
    const cwd = tempProject();
    const { code, stdout } = runImport([COLLISION, "--stack", "lab"], cwd);
    expect(code).toBe(1);
    expect(stdout).toContain(
      "phoenix_lxc_configs.json: lxc_configs.202.network_config.ip (phoenix:guests[1].network.ip): Phoenix rejects phoenix:guests[1].network.ip: IP 192.168.50.20 is already used by guests[0].network.ip (phoenix_lxc_configs.json: lxc_configs.201.network_config.ip): every guest needs its own address",
    );
    expect(fs.existsSync(path.join(cwd, "Pulumi.lab.yaml"))).toBe(false);
    expect(fs.readFileSync(path.join(cwd, "Pulumi.lab.draft.yaml"), "utf8")).toContain("# A DRAFT: it does not validate yet.");
    const report = fs.readFileSync(path.join(cwd, "import-report.md"), "utf8");
    expect(report).toContain("**The import is a draft**");
    expect(report).toContain("- phoenix_vm_configs.json: missing");
    expect(report).toContain("- **error** `phoenix_lxc_configs.json: lxc_configs.202.network_config.ip` → `guests[1].network.ip`");
  });

  it("traces a container and a VM sharing an id to both legacy entries", () => {
    const input = realisticInput() as { vm: { vms: unknown[] } };
    input.vm.vms.push({ vmid: 103, name: "ca-vm", clone_from_vmid: 9000, network_config: { ip: "10.0.0.250/24" } });
    const outcome = importLegacy(input, "legacy");
    expect(outcome.stackYaml).toBeUndefined();
    expect(outcome.errors).toContain("phoenix_vm_configs.json: vms[3].vmid (phoenix:guests[3].vmid): Phoenix rejects phoenix:guests[3].vmid: vmid 103 is already used by guests[2].vmid (phoenix_lxc_configs.json: lxc_configs.103): give every template and guest its own vmid");
  });

  it("traces GPU oversubscription to the containers that share the GPU", () => {
    const input = realisticInput() as { lxc: { lxc_configs: Record<string, { vllm_engine_config: { CacheConfig: { gpu_memory_utilization: number } } }> } };
    input.lxc.lxc_configs["801"]!.vllm_engine_config.CacheConfig.gpu_memory_utilization = 0.5;
    const outcome = importLegacy(input, "legacy");
    expect(outcome.stackYaml).toBeUndefined();
    expect(outcome.draftYaml).toBeDefined();
    expect(outcome.errors).toContain(
      "phoenix_lxc_configs.json: lxc_configs.801.vllm_engine_config.CacheConfig.gpu_memory_utilization (phoenix:host.gpus[0]): GPU 0 is over-subscribed in the legacy config: its vLLM servers reserve 1.1 of its memory (801 granite-embedding 0.5, 802 qwen3-chat 0.6); at most 0.95 fits",
    );
    expect(outcome.errors).toContain("edit: set lxc_configs.801.vllm_engine_config.CacheConfig.gpu_memory_utilization to 0.43, lxc_configs.802.vllm_engine_config.CacheConfig.gpu_memory_utilization to 0.51 (together 0.95)");
  });

  it("names the legacy field the old scripts could not have read", () => {
    const input = realisticInput() as { lxc: { lxc_configs: Record<string, { cores: unknown }> } };
    input.lxc.lxc_configs["802"]!.cores = "eight";
    const outcome = importLegacy(input, "legacy");
    expect(outcome.stackYaml).toBeUndefined();
    expect(outcome.errors).toMatch(/phoenix_lxc_configs\.json: lxc_configs\.802\.cores: the old scripts could not have read this \(.*\): left out of the draft/);
    // The rest of the machine is still converted, so the draft shows it.
    expect(outcome.draftYaml).toContain("name: qwen3-chat");
  });

  it("explains its usage", () => {
    expect(runImport([REALISTIC], tempProject())).toMatchObject({ code: 2, stdout: expect.stringContaining("usage: npm run import-legacy -- <legacy config dir> --stack <name> [--force]") });
    expect(runImport([path.join(FIXTURES, "nowhere"), "--stack", "x"], tempProject()).code).toBe(2);
  });
});

describe("the legacy format, read as leniently as the scripts read it", () => {
  it("splits GPU assignments on commas and trims them, as xargs did", () => {
    expect(gpuAssignment.parse("0, 1")).toEqual(["0", "1"]);
    expect(gpuAssignment.parse(" 1 ")).toEqual(["1"]);
    expect(gpuAssignment.parse("none")).toEqual([]);
  });

  it("reads raw lxc options in both the key=value and the key: value form", () => {
    expect(lxcOption.parse("lxc.apparmor.profile=unconfined")).toEqual({ key: "lxc.apparmor.profile", value: "unconfined" });
    expect(lxcOption.parse("lxc.mount.auto: sys:rw")).toEqual({ key: "lxc.mount.auto", value: "sys:rw" });
    expect(lxcOption.safeParse("nonsense").success).toBe(false);
  });

  it("names a stack's secret once, however the variable repeats the stack name", () => {
    expect(secretKeyName("qdrant_service", "QDRANT__SERVICE__API_KEY")).toBe("qdrantServiceApiKey");
    expect(secretKeyName("webapp", "SESSION_SECRET")).toBe("webappSessionSecret");
  });
});
