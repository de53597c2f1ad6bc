/**
 * The Docker tier: each Portainer VM's cloud-init user data (Docker pinned,
 * the CA trusted, the Portainer server's or agent's compose file) written as
 * a snippet on the node before the VM is cloned; then the secret the server
 * and agents share put into each VM through its guest agent, which starts
 * their containers (PortainerAgentSecret: the secret never goes into the
 * snippet); then Portainer itself driven through its API once it answers:
 * admin, Phoenix's token, the agent environments and their stacks.
 */
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ServiceHealth } from "../../providers/portainer/health";
import { PortainerAgentSecret } from "../../providers/portainer/agent-secret";
import { NodeFile } from "../../providers/host/node-file";
import type { SshConnection } from "../../providers/ssh";
import type { StackConfig, VmGuest } from "../../stacks/schema";
import { stepCaEndpoints, stepCliRelease } from "../core/step-ca.render";
import { guestIp, ownCertificateName } from "../../stacks/routing";
import { serviceUrls } from "../../stacks/outputs";
import { renderReleaseInstalls } from "../render/install-script";
import type { RenderedFile } from "../render/files";
import { DOCKER_DATA_MOUNT, renderVmUserData, type NfsMount } from "./cloud-init";
import { snippetStorage } from "../../stacks/plan";
import type { NfsExport } from "../../providers/host/exports";
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

/** Where a VM's user data goes on the node (host.snippetStorage), and the id VmLegacy refers to it by. */
export function userDataSnippet(config: StackConfig, vmid: number): { path: string; fileId: string } | undefined {
  const store = snippetStorage(config.host);
  const file = `phoenix-vm-${vmid}.yaml`;
  return store && { path: `${store.dir}/snippets/${file}`, fileId: `${store.id}:snippets/${file}` };
}

/** A Portainer VM's part of its user data: the server's or agent's files and the commands that start them. */
export function portainerVmParts(config: StackConfig, g: VmGuest): { files: RenderedFile[]; run: string[][] } {
  const role = g.role;
  if (role?.type === "portainer-server") {
    return {
      files: [
        ...renderPortainerServerFiles({ version: role.version, port: role.port, dnsNames: [ownCertificateName(config, g)!], address: guestIp(g), caUrl: stepCaEndpoints(config).caUrlByAddress }),
        { path: STEP_INSTALLER, content: `#!/usr/bin/env bash\nset -euo pipefail\n${renderReleaseInstalls([stepCliRelease(config)])}\n`, mode: "0755" },
      ],
      // The containers start once the agent secret is in the VM (portainerTier: PortainerAgentSecret), not here.
      run: [[STEP_INSTALLER], ["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "phoenix-portainer-cert.timer"], ["systemctl", "start", "phoenix-portainer-cert.service"]],
    };
  }
  if (role?.type === "portainer-agent") return { files: renderPortainerAgentFiles(role.version, role.port), run: [] };
  throw new Error(`VM ${g.vmid} has no Portainer role`);
}

/** The user data snippet of a Docker host VM, and the id VmLegacy refers to it by. */
export function dockerHostUserData(name: string, args: DockerHostUserDataArgs, opts: pulumi.CustomResourceOptions): { file: NodeFile; fileId: string } {
  const { config, guest: g } = args;
  const snippet = userDataSnippet(config, g.vmid)!;
  const parts = portainerVmParts(config, g);
  const content = pulumi.output(args.caRootPem).apply((caRootPem) => renderVmUserData(config, g, caRootPem, { ...parts, ...(args.nfs ? { nfs: args.nfs } : {}) }));
  return {
    file: new NodeFile(name, { node: config.host.node ?? config.proxmox.nodes[0]!.name, connection: args.connection, path: snippet.path, mode: "0640", content }, opts),
    fileId: snippet.fileId,
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
  /** phoenix:portainerAgentSecret, shared by the server and every agent (AGENT_SECRET). */
  agentSecret: pulumi.Input<string>;
  /**
   * The node a Portainer VM runs on, by vmid: its name and SSH to it. Phoenix reaches the VMs
   * through their guest agent from there: to put the agent secret in, and to restart Portainer
   * after its admin-initialisation timeout.
   */
  nodeOf: (vmid: number) => { name: string; connection: pulumi.Input<SshConnection> };
  /** The NFS server (the node exporting host.nfsExports) and its exports: the stacks' folders are made there first. */
  nfsServer?: { connection: pulumi.Input<SshConnection>; exports?: pulumi.Resource };
}

/**
 * The folders an agent VM's stacks bind from its NFS export, made on the node before the stacks
 * deploy (components/docker/data-dirs.ts); again whenever the list changes, never removed.
 */
function dataDirsOnNode(config: StackConfig, vmid: number, stacks: { name: string; compose: string }[], server: NonNullable<PortainerTierArgs["nfsServer"]>, tier: TierOptions): pulumi.Resource | undefined {
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
    { ...tier, additionalSecretOutputs: ["connection"], ...(server.exports ? { dependsOn: [server.exports] } : {}) },
  );
}

/**
 * The agent secret in one Portainer VM, its containers started with it. After the VM runs; again
 * when the secret changes (which recreates the containers) and when the VM is replaced (replaceWith:
 * a new VM has no file; https://www.pulumi.com/docs/iac/concepts/resources/options/replacewith/).
 */
function agentSecretIn(args: PortainerTierArgs, vmid: number, composeDir: string, tier: TierOptions): PortainerAgentSecret {
  const node = args.nodeOf(vmid);
  const vm = args.ready(vmid);
  return new PortainerAgentSecret(
    `vm-${vmid}-portainer-secret`,
    { connection: node.connection, node: node.name, vmid, secret: args.agentSecret, composeFile: `${composeDir}/compose.yaml` },
    { ...tier, dependsOn: [vm], ...(vm instanceof pulumi.CustomResource ? { replaceWith: [vm] } : {}) },
  );
}

/** The agent secret in every Portainer VM, then admin, token, environments and stacks, once the Portainer server answers. */
/** Where the tier's resources go in the tree, and the URNs they had before it (machine/machine.ts movedUnder). */
export type TierOptions = Pick<pulumi.CustomResourceOptions, "parent" | "aliases">;

export function portainerTier(args: PortainerTierArgs, tier: TierOptions = {}): PortainerControl | undefined {
  const { config } = args;
  const server = config.guests.find((g) => g.role?.type === "portainer-server");
  if (server?.role?.type !== "portainer-server") return undefined;
  const url = `https://${guestIp(server)}:${server.role.port}`;
  const access = pulumi.output(args.caRootPem).apply((caPem) => ({ url, caPem }));
  const health = new ServiceHealth("portainer-health", { url: `${url}/api/system/status`, caPem: args.caRootPem }, { ...tier, dependsOn: [agentSecretIn(args, server.vmid, PORTAINER_DIR, tier)] });
  // An environment is registered only once its agent runs with the secret (and the server does, through health).
  const agents = config.guests.flatMap((g, i) =>
    g.kind === "vm" && g.role?.type === "portainer-agent"
      ? [{ vmid: g.vmid, environment: g.role.environment, agentUrl: `tcp://${guestIp(g)}:${g.role.port}`, stacks: dockerStackSpecs(g, args.projectFile, args.secret, i), ready: agentSecretIn(args, g.vmid, PORTAINER_AGENT_DIR, tier) }]
      : [],
  ).map((a) => {
    const dirs = args.nfsServer && dataDirsOnNode(config, a.vmid, a.stacks, args.nfsServer, tier);
    return dirs ? { ...a, before: [dirs] } : a;
  });
  const restart = pulumi.output(args.nodeOf(server.vmid).connection).apply((connection) => ({ connection, vmid: server.vmid, container: PORTAINER_CONTAINER }));
  const control = new PortainerControl("portainer", {
    access,
    adminUser: server.role.adminUser,
    adminPassword: args.adminPassword,
    tokenDescription: `phoenix-${pulumi.getStack()}`,
    agents,
    dependsOn: [health],
    restart,
  }, tier);
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
        { ...tier, dependsOn: [control.stacks[`${agent.vmid}/${s.name}`]!, args.gateway.ready] },
      );
    }
  }
  return control;
}
