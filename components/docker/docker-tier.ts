/**
 * The Docker tier: each Portainer VM's cloud-init user data (Docker pinned,
 * the CA trusted, the Portainer server or agent started from its compose
 * file) written as a snippet on the node before the VM is cloned, then
 * Portainer itself driven through its API once it answers: admin, Phoenix's
 * token, the agent environments and their stacks.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ServiceHealth } from "../../providers/portainer/health";
import { NodeFile } from "../../providers/host/node-file";
import type { SshConnection } from "../../providers/ssh";
import type { StackConfig, VmGuest } from "../../stacks/schema";
import { stepCaEndpoints, stepCliRelease } from "../core/step-ca.render";
import { guestIp, ownCertificateName } from "../../stacks/routing";
import { serviceUrls } from "../../stacks/outputs";
import { renderReleaseInstalls } from "../render/install-script";
import { DOCKER_DATA_MOUNT, renderDockerHostUserData, type NfsMount } from "./cloud-init";
import { snippetStorage } from "../../stacks/plan";
import type { NfsExport } from "./exports";
import { dataDirs, renderDataDirsScript } from "./data-dirs";
import { dockerStackSpecs, PortainerControl } from "./portainer-control";
import { PORTAINER_AGENT_DIR, PORTAINER_CONTAINER, PORTAINER_DIR, renderPortainerAgentFiles, renderPortainerServerFiles } from "./portainer";

/** The NFS mount a Docker host VM gets, from host.nfsExports. */
export function nfsMountOf(config: StackConfig, vmid: number): NfsMount | undefined {
  const e = config.host.nfsExports.find((x) => x.clients.includes(vmid));
  return e ? { server: config.host.address.split("/")[0]!, export: `/${e.volume}`, mountPoint: DOCKER_DATA_MOUNT } : undefined;
}

/** The exports as /etc/exports lines need them: each client by its address. */
export function nfsExports(config: StackConfig): NfsExport[] {
  return config.host.nfsExports.map((e) => ({
    path: `/${e.volume}`,
    clients: e.clients.map((vmid) => ({ host: guestIp(config.guests.find((g) => g.vmid === vmid)!), options: e.options })),
  }));
}

const composeUp = (dir: string) => ["docker", "compose", "-f", `${dir}/compose.yaml`, "up", "-d"];
const STEP_INSTALLER = "/usr/local/sbin/phoenix-install-step";

export interface DockerHostUserDataArgs {
  /** The validated stack. */
  config: StackConfig;
  /** The Docker host VM. */
  guest: VmGuest;
  /** SSH to the node, where the snippet is written. */
  connection: pulumi.Input<SshConnection>;
  /** The CA's root, trusted by the VM. */
  caRootPem: pulumi.Input<string>;
  /** The export this VM mounts for its containers' data, if any. */
  nfs?: NfsMount;
}

/** The user data snippet of a Docker host VM, and the id VmLegacy refers to it by. */
export function dockerHostUserData(name: string, args: DockerHostUserDataArgs, opts: pulumi.CustomResourceOptions): { file: NodeFile; fileId: string } {
  const { config, guest: g } = args;
  const store = snippetStorage(config.host)!;
  const role = g.role;
  let files;
  let run: string[][];
  if (role?.type === "portainer-server") {
    files = [
      ...renderPortainerServerFiles({ version: role.version, port: role.port, dnsNames: [ownCertificateName(config, g)!], address: guestIp(g), caUrl: stepCaEndpoints(config).caUrlByAddress }),
      { path: STEP_INSTALLER, content: `#!/usr/bin/env bash\nset -euo pipefail\n${renderReleaseInstalls([stepCliRelease(config)])}\n`, mode: "0755" },
    ];
    run = [[STEP_INSTALLER], ["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "phoenix-portainer-cert.timer"], ["systemctl", "start", "phoenix-portainer-cert.service"], composeUp(PORTAINER_DIR)];
  } else if (role?.type === "portainer-agent") {
    files = renderPortainerAgentFiles(role.version, role.port);
    run = [composeUp(PORTAINER_AGENT_DIR)];
  } else {
    throw new Error(`${name}: VM ${g.vmid} has no Portainer role`);
  }
  const file = `phoenix-vm-${g.vmid}.yaml`;
  const content = pulumi.output(args.caRootPem).apply((caRootPem) =>
    renderDockerHostUserData({ hostname: g.name, domain: config.host.domain, user: g.cloudInit.user, sshKeys: g.cloudInit.sshKeys, ubuntuCodename: "noble", docker: g.docker, caRootPem, files, run, ...(args.nfs ? { nfs: args.nfs } : {}) }),
  );
  return {
    file: new NodeFile(name, { node: config.host.node ?? config.proxmox.nodes[0]!.name, connection: args.connection, path: `${store.dir}/snippets/${file}`, mode: "0640", content }, opts),
    fileId: `${store.id}:snippets/${file}`,
  };
}

export interface PortainerTierArgs {
  /** The validated stack. */
  config: StackConfig;
  /** The CA's root: Portainer's certificate is issued by it. */
  caRootPem: pulumi.Input<string>;
  /** phoenix:portainerAdminPassword. */
  adminPassword: pulumi.Input<string>;
  /** A compose file named by the stack, read from the project. */
  projectFile: (file: string, configPath: string) => string;
  /** A secret config value by key. */
  secret: (key: string) => pulumi.Input<string>;
  /** The VMs, by vmid, once they run. */
  ready: (vmid: number) => pulumi.Resource;
  /** The gateway's address and installation, for stacks routed through it. */
  gateway?: { address: string; ready: pulumi.Resource };
  /** SSH to the node the Portainer server VM runs on: Phoenix restarts Portainer there after its admin-initialisation timeout. */
  serverNode?: pulumi.Input<SshConnection>;
  /** The NFS server (the node exporting host.nfsExports) and its exports: the stacks' folders are made there first. */
  nfsServer?: { connection: pulumi.Input<SshConnection>; exports?: pulumi.Resource };
}

/**
 * The folders an agent VM's stacks bind from its NFS export, made on the node before the stacks
 * deploy (components/docker/data-dirs.ts); again whenever the list changes, never removed.
 */
function dataDirsOnNode(config: StackConfig, vmid: number, stacks: { name: string; compose: string }[], server: NonNullable<PortainerTierArgs["nfsServer"]>): pulumi.Resource | undefined {
  const exp = config.host.nfsExports.find((e) => e.clients.includes(vmid));
  const dirs = dataDirs(config, vmid, stacks);
  if (!exp || dirs.length === 0) return undefined;
  const script = renderDataDirsScript(exp.volume, dirs);
  return new command.remote.Command(
    `vm-${vmid}-data-dirs`,
    {
      connection: pulumi.output(server.connection).apply((c) => ({ host: c.host, port: c.port ?? 22, user: c.username, privateKey: c.privateKey, hostKey: c.hostKey })),
      create: "bash -s",
      stdin: script,
      triggers: [script],
    },
    { additionalSecretOutputs: ["connection"], ...(server.exports ? { dependsOn: [server.exports] } : {}) },
  );
}

/** Admin, token, environments and stacks, once the Portainer server answers. */
export function portainerTier(args: PortainerTierArgs): PortainerControl | undefined {
  const { config } = args;
  const server = config.guests.find((g) => g.role?.type === "portainer-server");
  if (server?.role?.type !== "portainer-server") return undefined;
  const url = `https://${guestIp(server)}:${server.role.port}`;
  const access = pulumi.output(args.caRootPem).apply((caPem) => ({ url, caPem }));
  const health = new ServiceHealth("portainer-health", { url: `${url}/api/system/status`, caPem: args.caRootPem }, { dependsOn: [args.ready(server.vmid)] });
  const agents = config.guests.flatMap((g, i) =>
    g.kind === "vm" && g.role?.type === "portainer-agent"
      ? [{ vmid: g.vmid, environment: g.role.environment, agentUrl: `tcp://${guestIp(g)}:${g.role.port}`, stacks: dockerStackSpecs(g, args.projectFile, args.secret, i), ready: args.ready(g.vmid) }]
      : [],
  ).map((a) => {
    const dirs = args.nfsServer && dataDirsOnNode(config, a.vmid, a.stacks, args.nfsServer);
    return dirs ? { ...a, before: [dirs] } : a;
  });
  const restart = args.serverNode ? pulumi.output(args.serverNode).apply((connection) => ({ connection, vmid: server.vmid, container: PORTAINER_CONTAINER })) : undefined;
  const control = new PortainerControl("portainer", {
    access,
    adminUser: server.role.adminUser,
    adminPassword: args.adminPassword,
    tokenDescription: `phoenix-${pulumi.getStack()}`,
    agents,
    dependsOn: [health],
    ...(restart ? { restart } : {}),
  });
  // A stack routed through the gateway is done when it answers there (Qdrant's /qdrant/healthz).
  const urls = serviceUrls(config);
  for (const agent of agents) {
    for (const s of agent.stacks) {
      const service = config.services.find((x) => x.name === s.name && x.guest === agent.vmid);
      const url = service && urls[service.name];
      if (!url || !args.gateway) continue;
      new ServiceHealth(
        `${s.name}-health`,
        { url: `${url.replace(/\/$/, "")}${service.healthPath}`, address: args.gateway.address, caPem: args.caRootPem },
        { dependsOn: [control.stacks[`${agent.vmid}/${s.name}`]!, args.gateway.ready] },
      );
    }
  }
  return control;
}
