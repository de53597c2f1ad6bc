import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { synth } from "../scripts/synth";
import { ROOT } from "./stacks/fixtures";

const out = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-synth-"));
afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe("npm run synth", () => {
  it("writes the prod plan, the graph and its picture, with no secrets and no Proxmox", async () => {
    const result = await synth("prod", ROOT, out);
    expect(result.code).toBe(0);
    const plan = fs.readFileSync(path.join(out, "prod", "plan.md"), "utf8");
    expect(plan).toContain("Secrets to set before `pulumi up`: `phoenix:proxmoxTokenSecret`");
    for (const tier of ["### host", "### firewall", "### core", "### models", "### docker"]) expect(plan).toContain(tier);
    expect(plan).toContain("| 802 | vllm-chat | 10.0.0.142/24 | 920 | 0 | /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models |");
    expect(plan).toContain("| 0 | NVIDIA GeForce RTX 5060 Ti | 16 GiB | 14.4 GiB |");
    // the CA is cloned before Traefik and the gateway, which boot after it
    const waves = plan.slice(plan.indexOf("## Dependency waves"), plan.indexOf("## Guests")).split("\n").filter((l) => /^\d+\. /.test(l));
    const waveOf = (name: string) => waves.findIndex((w) => w.includes(`\`${name}\``));
    expect(waveOf("ct-103-step-ca")).toBeLessThan(waveOf("ct-102-traefik"));
    expect(waveOf("ct-102-traefik")).toBeLessThan(waveOf("ct-101-nginx-gateway"));
    expect(waveOf("host-nvidia")).toBeLessThan(waveOf("ct-802-vllm-chat-root"));
    const dot = fs.readFileSync(path.join(out, "prod", "graph.dot"), "utf8");
    expect(dot).toContain('"ct-103-step-ca" -> "ct-102-traefik";');
    expect(fs.readFileSync(path.join(out, "prod", "graph.svg"), "utf8")).toMatch(/<svg[\s\S]*cluster_core[\s\S]*<\/svg>/);
    // every file a guest gets, under a folder per guest, with its install script
    for (const f of ["101-nginx-gateway/etc/nginx/nginx.conf", "101-nginx-gateway/install/gateway-install-run.sh", "802-vllm-chat/install/model-802-install-check.sh", "802-vllm-chat/etc/systemd/system/vllm.service", "102-traefik/etc/traefik/traefik.yml", "102-traefik/etc/traefik/dynamic/phoenix.yml", "103-step-ca/etc/systemd/system/step-ca.service", "1001-portainer/cloud-init/user-data.yaml"]) {
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
    const result = await synth("dev", dir, out);
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
    expect(result.text).toContain("phoenix:guests[2].network.ip: IP 10.0.0.10 is already used");
    expect(result.text).toContain("phoenix:guests[3].clone: CT 801 vllm-embed: clone source 921 is not a template");
    expect(fs.existsSync(path.join(out, "bad"))).toBe(false);
    fs.rmSync(dir, { recursive: true });
  });
});
