import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { DOCKER_DATA_MOUNT, renderDockerHostUserData, renderVmUserData, STEP_CA_ROOT_PATH, type DockerHostUserData } from "../../components/docker/cloud-init";
import { nfsMountOf, portainerVmParts } from "../../components/docker/docker-tier";
import { composeHostParts } from "../../components/compose-host/user-data";
import { aptMarkHold } from "../../providers/ssh/apt";
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
    // held through the wait for dpkg's locks (providers/ssh/apt.ts aptMarkHold), in runcmd's #!/bin/sh script
    expect(doc.runcmd[0]).toBe(aptMarkHold(["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"]));
    const sh = spawnSync("shellcheck", ["--shell=sh", "--severity=style", "-"], { input: `#!/bin/sh\n${String(doc.runcmd[0])}\n`, encoding: "utf8" });
    expect(sh.status, sh.stdout).toBe(0);
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

  it("installs the guest agent and carries no exporter or Alloy install: those arrive through the agent on every apply (components/observability/vm-agents.ts)", () => {
    for (const { name, config, g } of vms) {
      const doc = parse(userDataOf(config, g)) as { packages: (string | string[])[]; write_files: { path: string; content: string }[]; runcmd: string[][] };
      expect(doc.packages, `${name}/${g.name}`).toContain("qemu-guest-agent");
      expect(doc.runcmd, `${name}/${g.name}`).toContainEqual(expect.arrayContaining(["systemctl", "enable", "--now", "qemu-guest-agent"]));
      expect(doc.write_files.filter((f) => /phoenix-(exporters|alloy)-install|node-exporter|alloy/.test(f.path) || f.content.includes("phoenix-exporters.files")), `${name}/${g.name}`).toEqual([]);
    }
  });
});
