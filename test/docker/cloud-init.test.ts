import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { DOCKER_DATA_MOUNT, renderDockerHostUserData, STEP_CA_ROOT_PATH, type DockerHostUserData } from "../../components/docker/cloud-init";

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
