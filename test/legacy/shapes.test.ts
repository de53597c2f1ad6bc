/**
 * Hand-written legacy configurations in the shapes real bash-era machines
 * have: names with dots, copy templates (900 → 901 → 910/911/912), vLLM
 * templates, a vLLM container cloned from the CUDA template, a gateway whose
 * traefik_service is itself, over-subscribed GPUs, features spelt as the
 * scripts spelt them. Each imports to a validating stack, or to a draft plus a
 * report naming every remaining problem with its legacy field and its edit.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runImport } from "../../scripts/import-legacy";
import { readStackFile, validateStack } from "../../stacks/load";
import type { Guest, StackConfig } from "../../stacks/schema";
import { LEGACY_FILES } from "../../stacks/legacy/format";
import { importLegacy } from "../../stacks/legacy/import";
import type { LegacyInput } from "../../stacks/legacy/convert";

const FIXTURES = path.join(__dirname, "fixtures");
const tempDirs: string[] = [];
afterAll(() => tempDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
function tempProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-shapes-"));
  tempDirs.push(dir);
  return dir;
}
function input(fixture: string): LegacyInput {
  const read = (name: string): unknown => {
    const file = path.join(FIXTURES, fixture, "etc", name);
    return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : undefined;
  };
  return { hypervisor: read(LEGACY_FILES.hypervisor), lxc: read(LEGACY_FILES.lxc), vm: read(LEGACY_FILES.vm), stacks: read(LEGACY_FILES.stacks) };
}
const LXC = LEGACY_FILES.lxc;

describe("copy templates, dotted names, vLLM templates (copy-templates)", () => {
  const cwd = tempProject();
  const run = runImport([path.join(FIXTURES, "copy-templates", "etc"), "--stack", "lab"], cwd);
  const { entries } = importLegacy(input("copy-templates"), "lab");
  const load = (): StackConfig => {
    const result = validateStack(readStackFile(path.join(cwd, "Pulumi.lab.yaml")), { requireSecrets: false });
    if (result.ok !== true) throw new Error(`does not validate: ${JSON.stringify(result)}\n${run.stdout}`);
    return result.config;
  };
  const guest = (config: StackConfig, vmid: number): Guest => config.guests.find((g) => g.vmid === vmid)!;

  it("imports to a stack file that validates, and writes no draft", () => {
    expect(run.code).toBe(0);
    expect(fs.existsSync(path.join(cwd, "Pulumi.lab.draft.yaml"))).toBe(false);
    expect(load().guests.length).toBeGreaterThan(0);
  });

  it("maps names with dots to hostnames and reports each mapping", () => {
    const config = load();
    expect(config.templates.find((t) => t.vmid === 901)?.name).toBe("Copy-Cuda12-8");
    expect(guest(config, 802).name).toBe("granite-3-3-8b-fp8");
    expect(guest(config, 950).name).toBe("vllm-qwen-coder");
    const mapped = entries.find((e) => e.kind === "mapped" && e.source.file === LXC && e.source.path === "lxc_configs.901.name");
    expect(mapped?.message).toBe("renamed to Copy-Cuda12-8: a guest's name is its hostname (letters, digits and '-')");
  });

  it("takes a ['nvidia'] template as the CUDA layer and ['nvidia', 'vllm'] templates as vLLM layers built on it", () => {
    const layers = load().templates.map((t) => [t.vmid, t.kind === "lxc" ? t.layer : "vm", "source" in t && "clone" in t.source ? t.source.clone : undefined]);
    expect(layers).toEqual([
      [900, "base", undefined],
      [901, "cuda", 900],
      [910, "vllm", 901],
      [911, "vllm", 901],
      [9000, "vm", undefined],
    ]);
  });

  it("gives vLLM guests the vLLM template's pinned version, moving one cloned from the CUDA template onto the vLLM template", () => {
    const config = load();
    expect(guest(config, 801).clone).toBe(911);
    expect(guest(config, 950).clone).toBe(910);
    const pinned = config.templates.find((t) => t.vmid === 910);
    expect(pinned?.kind === "lxc" && pinned.versions.vllm).toBe("0.11.0");
    const moved = entries.find((e) => e.kind === "problem" && e.source.path === "lxc_configs.950.clone_from_ctid");
    expect(moved).toMatchObject({ severity: "warning", target: "guests[5].clone", fix: 'set clone_from_ctid to "910"' });
  });

  it("drops the gateway's route to itself, with the edit, and derives no service for it", () => {
    const config = load();
    expect(config.services.map((s) => s.guest)).not.toContain(101);
    const item = entries.find((e) => e.kind === "problem" && e.source.path === "lxc_configs.101.traefik_service");
    expect(item).toMatchObject({ severity: "warning", fix: "delete traefik_service from lxc_configs.101" });
  });

  it("routes no gateway host to the CA's own name: the old ca.<domain> route is dropped with why, and the CA's service stays", () => {
    const config = load();
    expect(config.routes.map((r) => r.host)).not.toContain("ca.internal.lab.example");
    expect(config.services.find((s) => s.guest === 103)?.name).toBe("ca");
    const item = entries.find((e) => e.kind === "problem" && e.source.path === "lxc_configs.103.traefik_service");
    expect(item).toMatchObject({ severity: "warning", fix: "nothing to change: clients reach the CA at https://ca.internal.lab.example:9000" });
    expect(item?.message).toContain("ca.internal.lab.example is the CA's own name");
  });

  it("gives the legacy ISO dir storage import content for the cloud image, and reports the change", () => {
    const config = load();
    const vmTemplate = config.templates.find((t) => t.vmid === 9000);
    expect(vmTemplate?.kind === "vm" && vmTemplate.source.storage).toBe("quickOS-shared-iso");
    expect(config.host.zfs.datasets.find((d) => d.storage?.id === "quickOS-shared-iso")?.storage?.content).toEqual(["iso", "vztmpl", "snippets", "import"]);
    expect(entries.find((e) => e.kind === "check" && e.target === "host.zfs.datasets[2].storage.content")?.message).toMatch(/^import added to the content of quickOS-shared-iso/);
  });

  it("takes the Portainer server's own stack as its role, and spells trusted_ca and step_cli out as dropped", () => {
    const config = load();
    const portainer = guest(config, 1001);
    expect(portainer.kind === "vm" && portainer.dockerStacks).toEqual([]);
    expect(portainer.role?.type).toBe("portainer-server");
    expect(config.host.snippetStorage).toBe("quickOS-shared-iso");
    expect(entries.filter((e) => e.source.path === "lxc_configs.102.features").map((e) => e.kind)).toContain("unsupported");
  });
});

describe("a VM template and a Docker VM with no dir storage in the legacy config (secrets, its ISO dataset removed)", () => {
  const legacy = input("secrets");
  const hyp = structuredClone(legacy.hypervisor) as { zfs: { datasets: { proxmox_storage_type?: string }[] } };
  hyp.zfs.datasets = hyp.zfs.datasets.filter((d) => d.proxmox_storage_type !== "dir");
  const outcome = importLegacy({ ...legacy, hypervisor: hyp }, "nodir");

  it("writes a draft, assuming neither import nor snippets on local, and names each legacy field with its edit", () => {
    expect(outcome.stackYaml).toBeUndefined();
    expect(outcome.draftYaml).toContain("snippetStorage: local\n");
    expect(outcome.draftYaml).toMatch(/sha256SumsUrl: \S+\n +storage: local\n/);
    expect(outcome.draftYaml).not.toContain("existingStorages");
    const errors = outcome.entries.filter((e) => e.kind === "problem" && e.severity === "error");
    expect(errors.map((e) => [`${e.source.file}: ${e.source.path}`, e.target])).toEqual([
      ["phoenix_vm_configs.json: vms[0]", "templates[1].source.storage"],
      ["phoenix_vm_configs.json: vms[1].portainer_role", "host.snippetStorage"],
    ]);
    expect(errors[1]!.message).toMatch(/^\S+, \S+ run Docker/);
    expect(errors[0]!.fix).toContain('add "import" to proxmox_content_type of a dataset with proxmox_storage_type "dir"');
    expect(errors[1]!.fix).toContain("existingStorages: [{ id: local, type: dir, content: [iso, vztmpl, backup, snippets] }]");
    // Nothing Phoenix rejects in the draft goes unexplained: both are these two entries.
    expect(outcome.report.split("\n").filter((l) => l.startsWith("- **error**"))).toHaveLength(2);
  });
});

describe("an over-subscribed GPU and vLLM without a vLLM template (oversubscribed)", () => {
  const cwd = tempProject();
  const run = runImport([path.join(FIXTURES, "oversubscribed", "etc"), "--stack", "gpu"], cwd);
  const report = fs.readFileSync(path.join(cwd, "import-report.md"), "utf8");

  it("writes a draft and the report, never the stack file, and exits non-zero", () => {
    expect(run.code).toBe(1);
    expect(fs.existsSync(path.join(cwd, "Pulumi.gpu.yaml"))).toBe(false);
    const draft = fs.readFileSync(path.join(cwd, "Pulumi.gpu.draft.yaml"), "utf8");
    expect(draft).toContain("name: chat-llama");
    expect(run.stdout).toContain("Wrote the draft Pulumi.gpu.draft.yaml and import-report.md; Pulumi.gpu.yaml was not written.");
  });

  it("lists every remaining problem with its legacy field and the edit to make", () => {
    const errors = report.split("\n").filter((l) => l.startsWith("- **error**"));
    expect(errors.map((l) => /`([^`]+)`/.exec(l)![1])).toEqual([
      "phoenix_lxc_configs.json: lxc_configs.802.cores",
      "phoenix_lxc_configs.json: lxc_configs.801.clone_from_ctid",
      "phoenix_lxc_configs.json: lxc_configs.802.clone_from_ctid",
      "phoenix_lxc_configs.json: lxc_configs.801.vllm_engine_config.CacheConfig.gpu_memory_utilization",
    ]);
    const lines = report.split("\n");
    for (const line of errors) expect(lines[lines.indexOf(line) + 1]).toMatch(/^ {2}- fix: \S/);
    expect(report).toContain("fix: set lxc_configs.801.vllm_engine_config.CacheConfig.gpu_memory_utilization to 0.43, lxc_configs.802.vllm_engine_config.CacheConfig.gpu_memory_utilization to 0.51 (together 0.95), or give one of them another GPU in gpu_assignment");
  });

  it("leaves nothing in the draft that the report does not name", () => {
    const result = validateStack(readStackFile(path.join(cwd, "Pulumi.gpu.draft.yaml")), { requireSecrets: false });
    expect(result.ok).toBe(false);
    const paths = result.ok === false ? [...new Set(result.issues.map((i) => i.path))] : [];
    for (const p of paths) expect(report).toContain(`\`${p}\``);
  });

  it("refuses to overwrite the draft without --force", () => {
    const again = runImport([path.join(FIXTURES, "oversubscribed", "etc"), "--stack", "gpu"], cwd);
    expect(again).toEqual({ code: 2, stdout: "Pulumi.gpu.draft.yaml already exists: choose another stack name, or pass --force to replace it" });
  });
});
