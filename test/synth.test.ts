import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { synth } from "../scripts/synth";
import { renderPlan } from "../scripts/synth/plan";
import { readStackFile, validateStack } from "../stacks/load";
import { ROOT } from "./stacks/fixtures";

const out = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-"));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

/** The program evaluated afresh, so that each synth in this file registers its own resources. */
const freshProgram = async () => {
  vi.resetModules();
  return (await import("../index")) as Record<string, unknown>;
};

describe("npm run synth", () => {
  it("writes the prod plan, the graph and its picture, with no secrets and no Proxmox", async () => {
    const result = await synth("prod", ROOT, out);
    expect(result.code).toBe(0);
    const plan = fs.readFileSync(path.join(out, "prod", "plan.md"), "utf8");
    // it opens with the guest-level overview (test/synth-overview.test.ts checks the diagram itself)
    expect(plan.startsWith("# Phoenix plan: prod\n\n## Overview\n\n```mermaid\nflowchart LR\n")).toBe(true);
    expect(plan).toContain("Secrets to set before `pulumi up`: `phoenix:proxmoxTokenSecret`");
    for (const tier of ["### host", "### firewall", "### core", "### models", "### docker"]) expect(plan).toContain(tier);
    expect(plan).toContain("| 802 | vllm-chat | 10.0.0.142/24 | 920 | 0 | /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models |");
    expect(plan).toContain("| 0 | NVIDIA GeForce RTX 5060 Ti | 16 GiB | 14.4 GiB |");
    // the CA is cloned before Traefik and the gateway, which boot after it
    const waves = plan.slice(plan.indexOf("## Dependency waves"), plan.indexOf("## Guests")).split("\n").filter((l) => /^\d+\. /.test(l));
    const waveOf = (name: string) => waves.findIndex((w) => w.includes(`\`${name}\``));
    expect(waveOf("ct-103")).toBeLessThan(waveOf("ct-102"));
    expect(waveOf("ct-102")).toBeLessThan(waveOf("ct-101"));
    expect(waveOf("host-nvidia")).toBeLessThan(waveOf("ct-802-root"));
    const dot = fs.readFileSync(path.join(out, "prod", "graph.dot"), "utf8");
    expect(dot).toContain('"ct-103" -> "ct-102";');
    expect(fs.readFileSync(path.join(out, "prod", "graph.svg"), "utf8")).toMatch(/<svg[\s\S]*cluster_core[\s\S]*<\/svg>/);
    // every file a guest gets, under a folder per guest, with its install script
    for (const f of ["101-nginx-gateway/etc/nginx/nginx.conf", "101-nginx-gateway/install/gateway-install-run.sh", "802-vllm-chat/install/model-802-install-check.sh", "802-vllm-chat/etc/systemd/system/vllm.service", "102-traefik/etc/traefik/traefik.yml", "102-traefik/etc/traefik/dynamic/phoenix.yml", "103-step-ca/etc/systemd/system/step-ca.service", "1001-portainer/cloud-init/user-data.yaml", "1002-drphoenix/install/vm-agents-1002-exporters.sh", "1002-drphoenix/install/vm-agents-1002-alloy.sh"]) {
      expect(fs.existsSync(path.join(out, "prod", f)), f).toBe(true);
    }
    expect(fs.readFileSync(path.join(out, "prod", "103-step-ca", "install", "step-ca-install-run.sh"), "utf8")).toContain("<<'PHOENIX_PASSWORD'\n[secret]\nPHOENIX_PASSWORD");
    expect(plan).toContain("Offline stand-ins:");
    // the VMs' user data as synthesized is what cloud-init itself accepts
    for (const vm of ["1001-portainer", "1002-drphoenix"]) {
      expect(execFileSync("cloud-init", ["schema", "--config-file", path.join(out, "prod", vm, "cloud-init", "user-data.yaml")], { encoding: "utf8" })).toContain("Valid cloud-config");
    }
  });

  it("needs none of the dev stack's local files (CA, host key) offline", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-dev-"));
    fs.copyFileSync(path.join(ROOT, "Pulumi.dev.yaml"), path.join(dir, "Pulumi.dev.yaml"));
    const result = await synth("dev", dir, out, freshProgram);
    expect(result.code).toBe(0);
    expect(fs.readFileSync(path.join(out, "dev", "plan.md"), "utf8")).toContain("| 914 | ollama | 10.10.0.155/24 | 901 | 0 |");
    fs.rmSync(dir, { recursive: true });
  });

  it("exits 1 listing every error of a bad configuration", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-bad-"));
    const text = fs.readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8").replace("ip: 10.0.0.153/24", "ip: 10.0.0.10/24").replace("clone: 920", "clone: 921");
    fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), text);
    const result = await synth("bad", dir, out);
    expect(result.code).toBe(1);
    expect(result.text).toMatch(/^Pulumi\.bad\.yaml: The stack configuration has \d+ problems/);
    expect(result.text).toContain("phoenix:guests[2].network.ip: IP 10.0.0.10 is already used");
    expect(result.text).toContain("phoenix:guests[3].clone: CT 801 vllm-embed: clone source 921 is not a template");
    expect(fs.existsSync(path.join(out, "bad"))).toBe(false);
    fs.rmSync(dir, { recursive: true });
  });
  it("refuses a stack name Pulumi would not take, or whose folder is not one inside out/, and removes nothing", async () => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-names-"));
    const project = path.join(top, "project");
    const victim = path.join(project, "victim");
    fs.mkdirSync(victim, { recursive: true });
    fs.writeFileSync(path.join(victim, "keep"), "data");
    // Each name's stack file is where the name points, so only the checks stand between it and `rm -rf`.
    const dev = fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"));
    fs.writeFileSync(path.join(top, "victim.yaml"), dev); // Pulumi.a/../../victim.yaml; out/a/../../victim is project/victim
    fs.writeFileSync(path.join(project, "Pulumi...yaml"), dev); // "..": out/.. is the project
    fs.writeFileSync(path.join(project, "Pulumi..yaml"), dev); // ".": out/ itself
    for (const name of ["a/../../victim", "..", ".", "x".repeat(101), "a b", "a\nb", "/etc"]) {
      const result = await synth(name, project, path.join(project, "out"));
      expect(result.code, JSON.stringify(name)).toBe(2);
    }
    expect((await synth("a/../../victim", project)).text).toContain("Pulumi's rule");
    expect(fs.readFileSync(path.join(victim, "keep"), "utf8")).toBe("data");
    expect(fs.existsSync(path.join(project, "Pulumi..yaml"))).toBe(true);
    fs.rmSync(top, { recursive: true });
  });

  it("renders a vLLM server that requires an API key, with the key's stand-in", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-key-"));
    const text = fs.readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8").replace(/^( +)engine: vllm$/m, "$1engine: vllm\n$1requireApiKey: true");
    expect(text).toContain("requireApiKey: true");
    fs.writeFileSync(path.join(dir, "Pulumi.keyed.yaml"), text);
    const result = await synth("keyed", dir, out, freshProgram);
    expect(result.code, result.text).toBe(0);
    const guest = path.join(out, "keyed", "801-vllm-embed");
    expect(fs.readFileSync(path.join(guest, "etc", "phoenix", "vllm.env"), "utf8")).toBe("VLLM_API_KEY=[secret]\n");
    expect(fs.readFileSync(path.join(guest, "etc", "systemd", "system", "vllm.service"), "utf8")).toContain("EnvironmentFile=/etc/phoenix/vllm.env");
    expect(fs.readFileSync(path.join(out, "keyed", "plan.md"), "utf8")).toContain("`phoenix:modelApiKey`");
    fs.rmSync(dir, { recursive: true });
  });
});

describe("plan.md", () => {
  it("keeps config text in its table cell", () => {
    const checked = validateStack(readStackFile(path.join(ROOT, "Pulumi.prod.yaml")), { requireSecrets: false });
    if (checked.ok !== true) throw new Error("Pulumi.prod.yaml does not validate");
    checked.config.host.gpus[0]!.model = "RTX | <b>x</b> `y` *z* [l](u) &lt;";
    const row = renderPlan("prod", checked.config, [], []).split("\n").find((l) => l.startsWith("| 0 | RTX"));
    expect(row?.startsWith("| 0 | RTX \\| \\<b\\>x\\</b\\> \\`y\\` \\*z\\* \\[l\\](u) \\&lt; | 16 GiB |")).toBe(true);
  });
});

describe("synth's errors", () => {
  const tsx = path.join(ROOT, "node_modules", ".bin", "tsx");
  const run = (cwd: string, ...args: string[]) => spawnSync(tsx, [path.join(ROOT, "scripts", "synth.ts"), ...args], { cwd, encoding: "utf8" });

  // Each runs tsx in a process of its own, which loads the Pulumi SDK: slow on a busy machine.
  it("name the stack file in one line, exit 1, and show the stack trace only with --debug", { timeout: 180_000 }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-yaml-"));
    fs.writeFileSync(path.join(dir, "Pulumi.bad.yaml"), "config:\n  phoenix:host: [unclosed, hunter2\n");
    const plain = run(dir, "bad");
    expect(plain.status).toBe(1);
    expect(plain.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^synth: Pulumi\.bad\.yaml: not valid YAML \(\w+ at line \d+, column \d+\)$/)]);
    expect(plain.stderr).not.toContain("hunter2");
    const debug = run(dir, "bad", "--debug");
    expect(debug.status).toBe(1);
    expect(debug.stderr).toMatch(/^synth: Pulumi\.bad\.yaml: not valid YAML[^\n]*\n[\s\S]*\n +at /);
    expect(fs.existsSync(path.join(dir, "out"))).toBe(false);
    fs.rmSync(dir, { recursive: true });
  });

  it("include a renderer's failure inside an Output: the offline run rejects with it instead of dying of an unhandled rejection", { timeout: 180_000 }, () => {
    // A tiny program whose only resource's input fails in apply, as a renderer refusing a value does.
    const program = `
      const pulumi = require(${JSON.stringify(path.join(ROOT, "node_modules", "@pulumi", "pulumi"))});
      const { runOffline } = require(${JSON.stringify(path.join(ROOT, "scripts", "offline-program"))});
      class Thing extends pulumi.CustomResource { constructor(name: string, props: Record<string, unknown>) { super("test:index:Thing", name, props); } }
      const load = async () => { new Thing("a", { files: pulumi.output(1).apply(() => { throw new Error("renderer refused"); }) }); return {}; };
      runOffline({ values: {}, secretKeys: new Set() }, { preview: false, load }).then(() => console.log("no error"), (e: Error) => console.log("rejected: " + e.message));
    `;
    const result = spawnSync(tsx, ["-e", program], { cwd: ROOT, encoding: "utf8" });
    expect(result.stdout).toBe('rejected: error serializing property "files": renderer refused\n');
    expect(result.stderr).not.toContain("Circular");
  });
});
