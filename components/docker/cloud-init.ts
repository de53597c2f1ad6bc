/**
 * Cloud-init user-data for a Docker host VM: Docker Engine and the compose
 * plugin from Docker's apt repository at pinned versions (held, so an
 * unattended upgrade cannot move them), the Step-CA root as a file for the step
 * CLI (not in the system store: nothing else on the VM talks to an internal
 * name, and a root trusted there would vouch for every name to apt and Docker),
 * the persistent dataset mounted over NFS, and nothing else joined.
 * Proxmox uses this file instead of its generated user-data, so the user and
 * SSH keys are set here too.
 */
import type { RenderedFile } from "../render/files";
import { stringify } from "yaml";
import { aptMarkHold } from "../../providers/ssh/apt";
import type { StackConfig, VmGuest } from "../../stacks/schema";

/** Docker's release signing key (https://download.docker.com/linux/ubuntu/gpg). */
export const DOCKER_APT_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88";
/** Where the Docker host mounts the persistent dataset; the stacks in docker/ keep their data below it. */
export const DOCKER_DATA_MOUNT = "/srv/phoenix-data";
/** The docker.service drop-in that ties Docker to the NFS mount. */
export const DOCKER_MOUNT_DROPIN = "/etc/systemd/system/docker.service.d/phoenix-data-mount.conf";
/** Where the Step-CA root lands on the VM, for tools (step) that take a root file. */
export const STEP_CA_ROOT_PATH = "/etc/phoenix/step-ca-root.pem";

export interface DockerVersions {
  /** apt version of docker-ce and docker-ce-cli, e.g. 5:28.5.1-1~ubuntu.24.04~noble. */
  engine: string;
  /** apt version of containerd.io, e.g. 1.7.28-1~ubuntu.24.04~noble. */
  containerd: string;
  /** apt version of docker-compose-plugin, e.g. 2.40.0-1~ubuntu.24.04~noble. */
  compose: string;
}

export interface NfsMount {
  /** Address of the NFS server (the Proxmox host). */
  server: string;
  /** Exported path on the server, e.g. /fastData/docker-data. */
  export: string;
  /** Where it is mounted on the VM. */
  mountPoint: string;
}

export interface DockerHostUserData {
  hostname: string;
  /** Internal DNS domain; the VM's FQDN is hostname.domain. */
  domain: string;
  user: string;
  sshKeys: string[];
  /** Ubuntu release code name of the cloud image, e.g. noble. */
  ubuntuCodename: string;
  docker: DockerVersions;
  /** The Step-CA root certificate (PEM). */
  caRootPem: string;
  nfs?: NfsMount;
  /** More files to write (the Portainer server's or agent's). */
  files?: RenderedFile[];
  /** Commands run last, in order, e.g. starting a compose project. */
  run?: string[][];
}

const APT_VERSION_RE = /^(\d+:)?[0-9][A-Za-z0-9.+~-]*$/;
const DOCKER_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"] as const;

export function renderDockerHostUserData(d: DockerHostUserData): string {
  for (const [what, v] of Object.entries(d.docker)) {
    if (!APT_VERSION_RE.test(v)) throw new Error(`docker ${what} version ${JSON.stringify(v)} must be an exact apt version such as 5:28.5.1-1~ubuntu.24.04~noble`);
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(d.caRootPem)) throw new Error("the Step-CA root must be a PEM certificate");
  const versions: Record<(typeof DOCKER_PACKAGES)[number], string> = {
    "docker-ce": d.docker.engine,
    "docker-ce-cli": d.docker.engine,
    "containerd.io": d.docker.containerd,
    "docker-compose-plugin": d.docker.compose,
  };
  const config = {
    hostname: d.hostname,
    fqdn: `${d.hostname}.${d.domain}`,
    manage_etc_hosts: true,
    users: [
      {
        name: d.user,
        shell: "/bin/bash",
        // Key-only login: provisioning over SSH needs sudo, and there is no password to type.
        sudo: "ALL=(ALL) NOPASSWD:ALL",
        lock_passwd: true,
        // cloud-init's schema refuses an empty list.
        ...(d.sshKeys.length > 0 ? { ssh_authorized_keys: d.sshKeys } : {}),
      },
    ],
    ssh_pwauth: false,
    disable_root: true,
    apt: {
      sources: {
        "docker.list": {
          source: `deb [arch=amd64 signed-by=$KEY_FILE] https://download.docker.com/linux/ubuntu ${d.ubuntuCodename} stable`,
          keyid: DOCKER_APT_KEY_FINGERPRINT,
        },
      },
    },
    package_update: true,
    packages: ["ca-certificates", "qemu-guest-agent", ...(d.nfs ? ["nfs-common"] : []), ...DOCKER_PACKAGES.map((p) => [p, versions[p]])],
    write_files: [
      { path: STEP_CA_ROOT_PATH, content: d.caRootPem, permissions: "0644" },
      // The local driver rotates container logs; the default json-file grows without bound.
      { path: "/etc/docker/daemon.json", content: `${JSON.stringify({ "log-driver": "local" }, null, 2)}\n`, permissions: "0644" },
      // Docker starts only with the dataset mounted: otherwise it would create the stacks' bind sources on the VM's own
      // disk, under the empty mount point. RequiresMountsFor= adds Requires= and After= on the mount units the path
      // needs (systemd.unit(5)); that also mounts it on first boot, when cloud-init's `mount -a` has not (nofail) and
      // the fstab generator's automount is not started before the next boot (cloud-init cc_mounts.py: mount -a, then
      // systemctl daemon-reload). write_files runs before the packages are installed, so docker-ce's first start has it.
      ...(d.nfs ? [{ path: DOCKER_MOUNT_DROPIN, content: `[Unit]\nRequiresMountsFor=${d.nfs.mountPoint}\n`, permissions: "0644" }] : []),
      ...(d.files ?? []).map((f) => ({ path: f.path, content: f.content, permissions: f.mode ?? "0644", ...(f.owner ? { owner: f.owner } : {}) })),
    ],
    ...(d.nfs ? { mounts: [[`${d.nfs.server}:${d.nfs.export}`, d.nfs.mountPoint, "nfs", "defaults,_netdev,noatime,nofail,x-systemd.automount", "0", "0"]] } : {}),
    runcmd: [
      // A string entry is written into runcmd's #!/bin/sh script as it is (cloud-init 26.2 cloudinit/util.py
      // shellify). The hold waits for dpkg's locks, which unattended-upgrades may hold on first boot (aptMarkHold).
      aptMarkHold(DOCKER_PACKAGES),
      ["systemctl", "enable", "--now", "qemu-guest-agent", "docker"],
      ...(d.run ?? []),
    ],
  };
  return `#cloud-config\n${stringify(config, { lineWidth: 0 })}`;
}

/**
 * A Phoenix VM's user data from the stack: the Docker host's, with its role's files and commands
 * (the Portainer server's or agent's, a compose host's). node_exporter and Alloy are not in it:
 * cloud-init runs once, so they arrive through the guest agent it installs, on every apply where
 * they are missing or changed (components/observability/vm-agents.ts).
 */
export function renderVmUserData(config: StackConfig, g: VmGuest, caRootPem: string, role: { files: RenderedFile[]; run: string[][]; nfs?: NfsMount }): string {
  return renderDockerHostUserData({
    hostname: g.name,
    domain: config.host.domain,
    user: g.cloudInit.user,
    sshKeys: g.cloudInit.sshKeys,
    ubuntuCodename: "noble",
    docker: g.docker,
    caRootPem,
    files: role.files,
    run: role.run,
    ...(role.nfs ? { nfs: role.nfs } : {}),
  });
}
