/**
 * Composition of the tiers from a validated configuration, and the stack's
 * outputs. Order comes from the graph: data that flows, plus explicit
 * dependsOn where none does (clone order, host preparation before guests).
 */
import * as pulumi from "@pulumi/pulumi";
import { NginxGateway, StepCa, Traefik } from "../components/core/core";
import { guestIp, keyedModelServices, type GuestOfRole } from "../stacks/routing";
import { composeHostUserData } from "../components/compose-host/user-data";
import { TailscaleJoin } from "../components/tailscale/tailscale";
import { dockerHostUserData, nfsExports, nfsMountOf, portainerTier } from "../components/docker/docker-tier";
import { ClusterFirewall } from "../components/firewall";
import { DataProtection } from "../components/backup/backup";
import { ModelServer } from "../components/models/model-server";
import { modelServerSpec } from "../components/models/server";
import { Observability } from "../components/observability/observability";
import { MetricsExporters } from "../components/observability/exporters";
import { LogShipping } from "../components/observability/alloy";
import { VmAgents } from "../components/observability/vm-agents";
import type { GuestContext } from "../components/guest/common";
import { LxcGuest } from "../components/guest/lxc";
import { changeSnapshotPolicy, type ChangeSnapshotPolicy } from "../components/guest/snapshot";
import { guardedGuests } from "../stacks/replacement";
import { DestroyGuard } from "../providers/guest/destroy-guard";
import { VmGuest } from "../components/guest/vm";
import { HostPrep } from "../components/host";
import { templateArchive, Templates } from "../components/templates";
import { HighAvailability, prepareNodes } from "../components/cluster";
import { nodeHost, templateFor } from "../stacks/cluster";
import { proxmoxProvider } from "../components/proxmox";
import type { RootTransport } from "../providers/guest/lxc-root-config";
import type { SshConnection } from "../providers/ssh";
import type { LoadedStack } from "../stacks/engine";
import { gatewayApiKeySecret } from "../stacks/secrets";
import { bridgeNetwork, cloneOrder, creationOrder, gpuAllocation, guestAddress, implicitDependencies, modelsOf, trustsInternalCa } from "../stacks/plan";
import type { Guest, StackConfig } from "../stacks/schema";
import { openaiBaseUrl, serviceUrls, type GuestOutput, type PhoenixExports, type PhoenixOutputs } from "../stacks/outputs";
import { templateNesting } from "../stacks/validate";
import { derivedRules, nodeRuleList } from "../stacks/firewall-rules";
import { Machine, movedUnder } from "./machine";

function sshConnection(stack: LoadedStack, nodeIndex: number): pulumi.Output<SshConnection> | undefined {
  const node = stack.config.proxmox.nodes[nodeIndex]!;
  if (!node.ssh) return undefined;
  const hostKey = node.ssh.hostKey ?? stack.projectFile(node.ssh.hostKeyFile!, `proxmox.nodes[${nodeIndex}].ssh.hostKeyFile`);
  return stack.secret("sshPrivateKey").apply((privateKey) => ({ host: node.ssh!.host, port: node.ssh!.port, username: node.ssh!.user, privateKey, hostKey }));
}

export function buildStack(stack: LoadedStack): PhoenixExports {
  const { config } = stack;
  const hostNode = config.host.node ?? config.proxmox.nodes[0]!.name;
  const provider = proxmoxProvider("pve", { proxmox: config.proxmox, tokenSecret: stack.secret("proxmoxTokenSecret") });
  // Read only when an API call of Phoenix's own needs it, so a stack that never does needs no CA file.
  const caPem = () => config.proxmox.tls.caPem ?? (config.proxmox.tls.caFile ? stack.projectFile(config.proxmox.tls.caFile, "proxmox.tls.caFile") : undefined);
  const connections = new Map(config.proxmox.nodes.map((n, i) => [n.name, sshConnection(stack, i)]));
  // The root of the tree (machine/machine.ts); every tier moved under it keeps its old URN as an alias.
  const machine = new Machine();

  const hostConnection = connections.get(hostNode);
  const api = stack.secret("proxmoxTokenSecret").apply((tokenSecret) => ({ endpoint: config.proxmox.endpoint, tokenId: config.proxmox.tokenId, tokenSecret, caPem: caPem(), insecure: config.proxmox.tls.insecure }));
  const host = hostConnection ? new HostPrep("host", { host: nodeHost(config, hostNode), node: hostNode, connection: hostConnection, provider, api, exports: nfsExports(config) }, movedUnder(machine)) : undefined;
  // The other nodes' preparation and what guests there wait for (components/cluster.ts).
  const preps = prepareNodes({ config, host, connections, provider, api }, movedUnder(machine));
  const prepOf = (node: string): HostPrep | undefined => preps[node];
  const templates = new Templates(
    "templates",
    { templates: config.templates, host: config.host, node: hostNode, api, connections: Object.fromEntries(connections), provider, nvidia: host?.nvidia, storages: host?.storages, preps, keepBuilds: templateArchive(config) },
    { providers: [provider], ...movedUnder(machine) },
  );
  const firewall = new ClusterFirewall(
    "firewall",
    { firewall: config.firewall, adminNetworks: config.host.adminNetworks, nodeLists: Object.fromEntries(config.proxmox.nodes.map((n) => [n.name, nodeRuleList(config, n.name)])) },
    { providers: [provider], ...movedUnder(machine) },
  );

  // Backup jobs, PBS storages and sanoid's snapshot policies (components/backup); a PBS password is a key of the stack's own.
  if (config.backup) new DataProtection("backup", { config, node: hostNode, connection: hostConnection, provider, storages: host?.storages ?? {}, datasets: host?.datasets ?? {}, secret: stack.dockerSecret }, { parent: machine });

  const transportOf = (node: string): pulumi.Input<RootTransport> | undefined => {
    const connection = connections.get(node);
    if (connection) return connection.apply((c): RootTransport => ({ kind: "ssh", connection: c }));
    if (!stack.hasSecret("proxmoxRootPassword")) return undefined;
    return stack.secret("proxmoxRootPassword").apply((password): RootTransport => ({ kind: "api", endpoint: config.proxmox.endpoint, password, caPem: caPem(), insecure: config.proxmox.tls.insecure }));
  };
  // One per node, made when its first container needs it and shared by the others: each Output is a chain of promises the SDK keeps until the program ends.
  const transports = new Map<string, pulumi.Input<RootTransport> | undefined>();
  const rootTransport = (node: string): pulumi.Input<RootTransport> | undefined => {
    if (!transports.has(node)) transports.set(node, transportOf(node));
    return transports.get(node);
  };

  const cloneAfter = cloneOrder(config);
  // Fails preview when an edit would destroy a guest the configuration does not allow to (stacks/replacement.ts).
  const guard = new DestroyGuard("destroy-guard", { guests: guardedGuests(config) }, movedUnder(machine));
  const built = new Map<number, LxcGuest | VmGuest>();
  const builtGuest = (vmid: number): LxcGuest | VmGuest => built.get(vmid)!;
  const build = (g: Guest): LxcGuest | VmGuest => {
    const previous = cloneAfter.get(g.vmid);
    // creationOrder puts every guest after those it waits for, so they are all built.
    // PVE locks the template only while a clone runs: the next clone waits for the previous guest's creation, not its setup.
    const before = [...(previous === undefined ? [] : [builtGuest(previous).machine]), ...[...g.dependsOn, ...implicitDependencies(g)].map((d) => builtGuest(d).ready)];
    const node = g.node ?? hostNode;
    const net = bridgeNetwork(config.host, g.network.bridge ?? config.host.managementBridge, g.network.vlan);
    const context: GuestContext = { node, bridge: config.host.managementBridge, gateway: net?.gateway, dnsServers: config.host.dnsServers, domain: config.host.domain, derivedRules: derivedRules(config, g) };
    const groups = g.firewall.groups.map((name) => firewall.groups[name]!);
    // A storage on several nodes: its registration (one node's preparation) and each node's dataset.
    const storage = Object.values(preps).map((p) => p.storages[g.storage]).filter((r): r is pulumi.Resource => r !== undefined);
    const dependsOn = [...before, ...groups, ...storage, templates.byVmid[g.clone]!, guard];
    const opts = { providers: [provider], ...movedUnder(machine.tier("Guests")) };
    const vmUserData = g.kind === "vm" ? userData(g) : undefined;
    // Validation refused a template not reachable from the guest's node; another node's is on shared storage.
    const templateNode = templateFor(config, g.clone, node)?.node;
    return g.kind === "lxc"
      ? new LxcGuest(
          `guest-${g.vmid}`,
          {
            guest: g,
            context,
            template: g.clone,
            templateNode,
            templateDiskGiB: config.templates.find((t) => t.vmid === g.clone)!.diskGiB,
            templateNesting: templateNesting(config.templates, g),
            api,
            gpus: config.host.gpus,
            hostGpus: prepOf(node)?.gpuInfo,
            datasets: config.host.zfs.datasets,
            rootTransport: rootTransport(node),
            snapshot: changeSnapshotPolicy(config, g, api, connections.get(node)),
            dependsOn: [...dependsOn, ...g.mounts.map((m) => prepOf(node)?.datasets[m.volume]).filter((d): d is pulumi.Resource => d !== undefined), ...(g.gpus.length > 0 && prepOf(node)?.nvidia ? [prepOf(node)!.nvidia!] : [])],
          },
          opts,
        )
      : new VmGuest(`guest-${g.vmid}`, { guest: g, context, template: g.clone, templateNode, dependsOn: [...dependsOn, ...(vmUserData?.deps ?? [])], userDataFileId: vmUserData?.fileId, pciMappings: Object.assign({}, ...Object.values(preps).map((p) => p.pciMappings)) }, opts);
  };
  const connectionOf = (g: Guest) => connections.get(g.node ?? hostNode)!;
  // Step-CA, built on first need: Docker hosts' user data trusts its CA, and they wait for its guest (guestDependencies).
  const caGuest = config.guests.find((g): g is GuestOfRole<"step-ca"> => g.role?.type === "step-ca");
  let stepCa: StepCa | undefined;
  const ca = (): StepCa | undefined =>
    caGuest &&
    (stepCa ??= new StepCa(
      "step-ca",
      { guest: caGuest, routing: config, connection: connectionOf(caGuest), dependsOn: [builtGuest(caGuest.vmid).ready], password: stack.secret("stepCaPassword"), snapshot: changeSnapshotPolicy(config, caGuest, api, connectionOf(caGuest)) },
      movedUnder(machine.tier("Core")),
    ));
  const userData = (g: Guest): { deps: pulumi.Resource[]; fileId?: string } => {
    if (!trustsInternalCa(g)) return { deps: [] };
    const stepCaOf = ca();
    if (!stepCaOf) throw new Error(`${g.name}: a Docker host trusts the internal CA: declare a guest with role step-ca`);
    if (g.role?.type === "compose-host") {
      const { file, fileId } = composeHostUserData(`vm-${g.vmid}-user-data`, { config, guest: g, connection: connections.get(hostNode)!, caRootPem: stepCaOf.rootPem, projectFile: stack.projectFile }, movedUnder(machine.tier("Docker")));
      return { deps: [file], fileId };
    }
    const nfs = nfsMountOf(config, g.vmid);
    const { file, fileId } = dockerHostUserData(`vm-${g.vmid}-user-data`, { config, guest: g, connection: connections.get(hostNode)!, caRootPem: stepCaOf.rootPem, nfs }, movedUnder(machine.tier("Docker")));
    // The VM mounts its export at boot: the export and the node's ACCEPT for it come first.
    return { deps: [file, ...(nfs && host?.exports ? [host.exports] : []), ...(nfs ? [firewall.nodeRules[hostNode]!] : [])], fileId };
  };
  for (const g of creationOrder(config)) built.set(g.vmid, build(g));
  // HA resources and rules for the guests that ask (components/cluster.ts).
  if (config.guests.some((g) => g.ha)) new HighAvailability("ha", { config, provider, readyOf: (vmid) => builtGuest(vmid).ready }, { providers: [provider], parent: machine });
  // Guests that join the tailnet, with the pre-auth key through the node (components/tailscale).
  for (const g of config.guests.filter((x) => x.tailscale)) {
    new TailscaleJoin(`tailscale-${g.vmid}`, { config, guest: g, connection: connectionOf(g), authKey: stack.secret("tailscaleAuthKey"), dependsOn: [builtGuest(g.vmid).ready] }, movedUnder(machine));
  }
  for (const g of config.guests) {
    if (g.role?.type !== "model-server") continue;
    const apiKey = g.role.server.engine === "vllm" && g.role.server.requireApiKey ? stack.secret("modelApiKey") : undefined;
    new ModelServer(
      `model-${g.vmid}`,
      { spec: modelServerSpec(config, g.vmid), connection: connections.get(g.node ?? hostNode)!, apiKey, dependsOn: [built.get(g.vmid)!.ready], snapshot: changeSnapshotPolicy(config, g, api, connections.get(g.node ?? hostNode)) },
      movedUnder(machine.tier("Models")),
    );
  }
  const ops = config.guests.find((g) => g.role?.type === "observability");
  const opsCa = ops && ca();
  if (ops && opsCa) new Observability("observability", { config, connection: connectionOf(ops), caRootPem: opsCa.rootPem, dependsOn: [builtGuest(ops.vmid).ready], snapshot: changeSnapshotPolicy(config, ops, api, connectionOf(ops)) }, movedUnder(machine));
  if (ops && opsCa) {
    // The host's exporters run on the node host preparation made ready: the GPU exporter reads the driver it installed.
    const hostExporters = host && hostConnection ? { connection: hostConnection, dependsOn: [...(host.nvidia ? [host.nvidia] : [])] } : undefined;
    const exporters = new MetricsExporters("exporters", { config, provider, connectionOf, ready: (vmid) => builtGuest(vmid).ready, host: hostExporters }, movedUnder(machine));
    // The host's Alloy after the host's exporters: one install (and one apt) at a time on the node.
    const hostLogs = hostExporters && exporters.host ? { connection: hostExporters.connection, dependsOn: [exporters.host] } : undefined;
    new LogShipping("logs", { config, connectionOf, readyOf: (vmid) => builtGuest(vmid).ready, ...(hostLogs ? { host: hostLogs } : {}) }, movedUnder(machine));
    // The VMs' exporters and Alloy, through each VM's guest agent.
    new VmAgents("vm-agents", { config, connectionOf, readyOf: (vmid) => builtGuest(vmid).ready }, movedUnder(machine));
  }
  const core = buildCore(config, ca(), stack.secret, (g) => ({ routing: config, connection: connectionOf(g), dependsOn: [builtGuest(g.vmid).ready], snapshot: changeSnapshotPolicy(config, g, api, connectionOf(g)) }), () => machine.tier("Core"));
  if (core.caRootPem && config.guests.some((g) => g.role?.type === "portainer-server")) {
    portainerTier({ config, caRootPem: core.caRootPem, adminPassword: stack.secret("portainerAdminPassword"), projectFile: stack.projectFile, secret: stack.dockerSecret, ready: (vmid) => built.get(vmid)!.ready, gateway: core.gateway, agentSecret: stack.secret("portainerAgentSecret"), nodeOf: (vmid) => { const g = config.guests.find((x) => x.vmid === vmid)!; return { name: g.node ?? hostNode, connection: connectionOf(g) }; }, ...(hostConnection ? { nfsServer: { connection: hostConnection, ...(host?.exports ? { exports: host.exports } : {}) } } : {}) }, movedUnder(machine.tier("Docker")));
  }
  const urls = serviceUrls(config);
  return {
    ...describeStack(config),
    gatewayUrl: core.gatewayUrl,
    caUrl: core.caUrl,
    acmeDirectoryUrl: core.acmeDirectoryUrl,
    caRootPem: core.caRootPem,
    caFingerprint: core.caFingerprint,
    serviceUrls: urls,
    openaiBaseUrl: core.gatewayUrl ? openaiBaseUrl(config) : undefined,
    qdrantUrl: urls.qdrant,
    portainerUrl: urls.portainer,
  };
}

export interface CoreOutputs {
  /** The gateway's address and installation, for health checks through it. */
  gateway?: { address: string; ready: pulumi.Resource };
  gatewayUrl?: string;
  caUrl?: string;
  acmeDirectoryUrl?: string;
  caRootPem?: pulumi.Output<string>;
  caFingerprint?: pulumi.Output<string>;
}

/** Step-CA → Traefik → gateway, each in the guest with its role, ordered by the data they pass on. */
function buildCore(
  config: StackConfig,
  ca: StepCa | undefined,
  secret: LoadedStack["secret"],
  tierArgs: (g: Guest) => { routing: StackConfig; connection: pulumi.Input<SshConnection>; dependsOn: pulumi.Resource[]; snapshot: ChangeSnapshotPolicy },
  tier: () => pulumi.Resource,
): CoreOutputs {
  const withRole = <T extends "traefik" | "nginx-gateway">(type: T) => config.guests.find((g): g is GuestOfRole<T> => g.role?.type === type);
  if (!ca) return {};
  const out: CoreOutputs = { caUrl: ca.caUrl, acmeDirectoryUrl: ca.acmeDirectoryUrl, caRootPem: ca.rootPem, caFingerprint: ca.fingerprint };
  const traefikGuest = withRole("traefik");
  if (!traefikGuest) return out;
  const dashboardPassword = traefikGuest.role.dashboard ? secret("traefikDashboardPassword") : undefined;
  const traefik = new Traefik(
    "traefik",
    { guest: traefikGuest, ...tierArgs(traefikGuest), caRootPem: ca.rootPem, acmeDirectoryUrl: ca.acmeDirectoryUrl, ...(dashboardPassword ? { dashboardPassword } : {}) },
    movedUnder(tier()),
  );
  const gatewayGuest = withRole("nginx-gateway");
  if (!gatewayGuest) return out;
  const gateway = new NginxGateway(
    "gateway",
    { guest: gatewayGuest, ...tierArgs(gatewayGuest), caRootPem: ca.rootPem, caUrl: ca.caUrl, traefik: traefik.address, traefikInstall: traefik.install, ...gatewayApiKeys(config, gatewayGuest, secret) },
    movedUnder(tier()),
  );
  return { ...out, gatewayUrl: gateway.url, gateway: { address: guestIp(gatewayGuest), ready: gateway.install.ready } };
}

/**
 * The gateway's API clients' keys (phoenix:gatewayApiKey-<client>) while its apiKeys are on, and then
 * phoenix:modelApiKey too if a vLLM server behind it requires its own key (the gateway sends it in place of the client's).
 */
function gatewayApiKeys(config: StackConfig, guest: GuestOfRole<"nginx-gateway">, secret: LoadedStack["secret"]): { apiKeys?: Record<string, pulumi.Output<string>>; modelApiKey?: pulumi.Output<string> } {
  const { enabled, clients } = guest.role.apiKeys;
  if (!enabled) return {};
  return {
    apiKeys: Object.fromEntries(clients.map((c) => [c.name, secret(gatewayApiKeySecret(c.name))])),
    ...(keyedModelServices(config).size > 0 ? { modelApiKey: secret("modelApiKey") } : {}),
  };
}

/** What the configuration alone determines about the machine. */
export function describeStack(config: StackConfig): Pick<PhoenixOutputs, "guests" | "models" | "gpuAllocation"> {
  const guests: Record<string, GuestOutput> = {};
  for (const g of config.guests) {
    guests[String(g.vmid)] = { name: g.name, kind: g.kind, ip: guestAddress(g) ?? "dhcp", role: g.role?.type ?? "none" };
  }
  return { guests, models: config.guests.flatMap(modelsOf), gpuAllocation: gpuAllocation(config) };
}
