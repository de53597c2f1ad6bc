import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { DOCKER_DATA_MOUNT, renderDockerHostUserData, renderVmUserData, STEP_CA_ROOT_PATH, type DockerHostUserData } from "../../components/docker/cloud-init";
import { nfsMountOf, portainerVmParts } from "../../components/docker/docker-tier";
import { composeHostParts, NVIDIA_INSTALLER } from "../../components/compose-host/user-data";
import { ALLOY_PATHS, renderAlloyFiles, renderAlloyInstallScript } from "../../components/observability/alloy.render";
import { renderGuestExportersScript } from "../../components/observability/exporters.render";
import { VM_AGENT_SCRIPTS } from "../../components/observability/vm-agents.render";
import { loadStack } from "../support";
import { trustsInternalCa } from "../../stacks/plan";
import type { StackConfig, VmGuest } from "../../stacks/schema";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIBdDCCARmgAwIBAgIQ\n-----END CERTIFICATE-----\n";
const host: DockerHostUserData = {
  hostname: "drphoenix",
  domain: "internal.thinkheads.ai",
  user: "phoenix",
  sshKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ phoenix@admin"],
  ubuntuCodename: "noble",
  docker: { engine: "5:28.5.1-1~ubuntu.24.04~noble", containerd: "1.7.28-1~ubuntu.24.04~noble", compose: "2.40.0-1~ubuntu.24.04~noble" },
  caRootPem: PEM,
  nfs: { server: "10.0.0.13", export: "/fastData/docker-data", mountPoint: DOCKER_DATA_MOUNT },
};

// Top-level modules of cloud-init's cc_* set that this renderer may use; anything else is a typo.
const KNOWN_KEYS = new Set(["hostname", "fqdn", "manage_etc_hosts", "users", "ssh_pwauth", "disable_root", "ca_certs", "apt", "package_update", "packages", "write_files", "mounts", "runcmd"]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-cloud-init-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("Docker host user-data", () => {
  const text = renderDockerHostUserData(host);
  const doc = parse(text) as Record<string, unknown> & { packages: (string | string[])[]; runcmd: string[][]; ca_certs?: unknown; mounts: string[][]; write_files: { path: string }[] };

  it("is #cloud-config YAML with only known modules", () => {
    expect(text.startsWith("#cloud-config\n")).toBe(true);
    expect(Object.keys(doc).filter((k) => !KNOWN_KEYS.has(k))).toEqual([]);
  });

  it("passes cloud-init's own schema", () => {
    const file = path.join(dir, "user-data.yaml");
    fs.writeFileSync(file, text);
    expect(execFileSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" })).toContain("Valid cloud-config");
    fs.writeFileSync(file, text.replace("package_update: true", "package_update: sometimes"));
    expect(spawnSync("cloud-init", ["schema", "--config-file", file]).status).not.toBe(0);
  });

  it("passes the schema too for a user with no SSH keys, as the prod VMs have, with a Portainer server's files and commands", () => {
    const file = path.join(dir, "no-keys.yaml");
    fs.writeFileSync(file, renderDockerHostUserData({ ...host, sshKeys: [], files: [{ path: "/opt/x/compose.yaml", content: "name: x\n", mode: "0600" }], run: [["docker", "compose", "up", "-d"]] }));
    expect(execFileSync("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" })).toContain("Valid cloud-config");
  });

  it("installs Docker Engine and the compose plugin from Docker's repository at pinned versions, and holds them", () => {
    expect(doc.packages.filter(Array.isArray)).toEqual([
      ["docker-ce", host.docker.engine],
      ["docker-ce-cli", host.docker.engine],
      ["containerd.io", host.docker.containerd],
      ["docker-compose-plugin", host.docker.compose],
    ]);
    expect(text).toContain("https://download.docker.com/linux/ubuntu noble stable");
    expect(text).toContain("keyid: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88");
    expect(doc.runcmd[0]).toEqual(["apt-mark", "hold", "docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"]);
    expect(() => renderDockerHostUserData({ ...host, docker: { ...host.docker, compose: "latest" } })).toThrow("must be an exact apt version");
  });

  it("keeps the Step-CA root in a file for step, out of the system store, and mounts the persistent dataset over NFS", () => {
    expect(doc.ca_certs).toBeUndefined();
    expect(doc.write_files.map((f) => f.path)).toContain(STEP_CA_ROOT_PATH);
    expect(doc.mounts).toEqual([["10.0.0.13:/fastData/docker-data", DOCKER_DATA_MOUNT, "nfs", "defaults,_netdev,noatime,nofail,x-systemd.automount", "0", "0"]]);
    expect(doc.packages).toContain("nfs-common");
    const { nfs: _nfs, ...withoutNfs } = host;
    const plain = parse(renderDockerHostUserData(withoutNfs)) as Record<string, unknown> & { packages: unknown[] };
    expect(plain.mounts).toBeUndefined();
    expect(plain.packages).not.toContain("nfs-common");
  });

  it("allows key-only login for the declared user and nothing for root", () => {
    expect(doc.users).toEqual([expect.objectContaining({ name: "phoenix", lock_passwd: true, ssh_authorized_keys: host.sshKeys })]);
    expect(doc).toMatchObject({ ssh_pwauth: false, disable_root: true });
  });
});

/** A VM's user data as the Docker tier writes it (docker-tier.ts dockerHostUserData, compose-host/user-data.ts). */
function userDataOf(config: StackConfig, g: VmGuest): string {
  const projectFile = (f: string) => fs.readFileSync(path.join(__dirname, "..", "..", f), "utf8");
  if (g.role?.type === "compose-host") return renderVmUserData(config, g, PEM, composeHostParts({ config, guest: g, projectFile }));
  const nfs = nfsMountOf(config, g.vmid);
  return renderVmUserData(config, g, PEM, { ...portainerVmParts(config, g), ...(nfs ? { nfs } : {}) });
}

describe("every VM's user data in prod, dev and vrooli", () => {
  const vms = ["prod", "dev", "vrooli"].flatMap((name) => {
    const config = loadStack(`Pulumi.${name}.yaml`);
    return config.guests.filter(trustsInternalCa).map((g) => ({ name, config, g }));
  });

  it("covers the Portainer VMs of prod and dev and vrooli's plan-hq", () => {
    expect(vms.map((v) => `${v.name}/${v.g.name}`)).toEqual(["prod/portainer", "prod/drphoenix", "dev/portainer", "dev/drphoenix", "vrooli/plan-hq"]);
  });

  it("passes cloud-init's own schema", async () => {
    // One cloud-init process per file, run side by side: each spends most of its time starting Python.
    const verdicts = await Promise.all(
      vms.map(async ({ name, config, g }) => {
        const file = path.join(dir, `${name}-${g.vmid}.yaml`);
        fs.writeFileSync(file, userDataOf(config, g));
        return [`${name}/${g.name}`, (await promisify(execFile)("cloud-init", ["schema", "--config-file", file], { encoding: "utf8" })).stdout] as const;
      }),
    );
    for (const [vm, out] of verdicts) expect(out, vm).toContain("Valid cloud-config");
  });

  it("runs the containers' exporter and Alloy install scripts last, root-only, the GPU exporter after the driver where a GPU is passed through", () => {
    for (const { name, config, g } of vms) {
      const doc = parse(userDataOf(config, g)) as { write_files: { path: string; content: string; permissions: string }[]; runcmd: string[][] };
      const file = (p: string) => doc.write_files.find((f) => f.path === p);
      // The very scripts a container runs (one renderer for both), so the pins, units and Alloy's config are shared.
      expect(file(VM_AGENT_SCRIPTS.exporters), `${name}/${g.name}`).toEqual({ path: VM_AGENT_SCRIPTS.exporters, content: renderGuestExportersScript(config, g), permissions: "0700" });
      expect(file(VM_AGENT_SCRIPTS.alloy), `${name}/${g.name}`).toEqual({ path: VM_AGENT_SCRIPTS.alloy, content: renderAlloyInstallScript(config, g), permissions: "0700" });
      expect(doc.runcmd.slice(-2)).toEqual([[VM_AGENT_SCRIPTS.exporters], [VM_AGENT_SCRIPTS.alloy]]);
      // The script carries the VM's Alloy config, its journal labelled with the VM's id, name and role.
      const alloyConfig = renderAlloyFiles(config, g).find((f) => f.path === ALLOY_PATHS.config)!.content;
      expect(file(VM_AGENT_SCRIPTS.alloy)!.content).toContain(Buffer.from(alloyConfig).toString("base64").slice(0, 76));
      expect(alloyConfig).toContain(`guest = "${g.vmid}",\n    name = ${JSON.stringify(g.name)},\n    role = ${JSON.stringify(g.role!.type)},`);
    }
    const hq = vms.find((v) => v.g.name === "plan-hq")!;
    const doc = parse(userDataOf(hq.config, hq.g)) as { runcmd: string[][] };
    const order = doc.runcmd.map((c) => c[0]);
    expect(order.indexOf(NVIDIA_INSTALLER)).toBeGreaterThanOrEqual(0);
    expect(order.indexOf(NVIDIA_INSTALLER)).toBeLessThan(order.indexOf(VM_AGENT_SCRIPTS.exporters));
    expect(renderGuestExportersScript(hq.config, hq.g)).toContain("nvidia_gpu_exporter_1.14.0_linux_x86_64.tar.gz");
    const portainer = vms.find((v) => v.name === "prod" && v.g.name === "portainer")!;
    expect(renderGuestExportersScript(portainer.config, portainer.g)).not.toContain("nvidia_gpu_exporter");
  });

  it("carries no agents without an ops guest", () => {
    const config = loadStack("Pulumi.prod.yaml");
    const noOps = { ...config, guests: config.guests.filter((g) => g.role?.type !== "observability") };
    const g = noOps.guests.find((x): x is VmGuest => x.kind === "vm" && x.role?.type === "portainer-agent")!;
    const doc = parse(renderVmUserData(noOps, g, PEM, portainerVmParts(noOps, g))) as { write_files: { path: string }[]; runcmd: string[][] };
    expect(doc.write_files.map((f) => f.path)).not.toContain(VM_AGENT_SCRIPTS.exporters);
    expect(doc.runcmd.flat()).not.toContain(VM_AGENT_SCRIPTS.alloy);
  });
});
