/**
 * The machine an e2e apply runs against: the PVE simulator and the real sshd with its sandbox as
 * the node's shell, sharing /etc/pve (node-files.ts); the lab network's stand-ins at the guests'
 * addresses (lab-network.ts); and a stack file rewritten to point at them, with every secret set.
 *
 * A cluster: every node the stack file lists (plus WorldOptions.nodes) is a node of the simulator
 * and is reached through the same rig, so one sandbox is every node's shell and /etc/pve, as
 * pmxcfs shares /etc/pve across a cluster: a guest that migrates keeps its files.
 */
import { STEP_CA_OUTPUT_BEGIN } from "../../components/core/step-ca.render";
import { runCommand } from "../../providers/ssh";
import { readStackFile, validateStack, type RawStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { secretShapeProblem } from "../../stacks/secrets";
import { createPveClient, type PveApi } from "../../providers/pve";
import { startSimulator, type Simulator } from "../pve-sim";
import { startSshd, type SshRig } from "../rig/sshd";
import { apply, EngineState, type ApplyOptions, type ApplyResult, type Translation } from "./engine";
import { startLabNetwork, type LabNetwork } from "./lab-network";
import { nodeFiles } from "./node-files";
import { vmBoot } from "./vm-boot";
import { commandTranslation, proxmoxTranslations, TYPES } from "./translations";

/** A command the apply ran: inside a container (checked, recorded) or on the node (run in the sandbox). */
export interface CommandRun {
  /** The container it targets, or undefined for the node. */
  vmid?: number;
  command: string;
  stdin: string;
}

export interface World {
  sim: Simulator;
  rig: SshRig;
  lab: LabNetwork;
  /** Every command run, in order. */
  commands: CommandRun[];
  api: PveApi;
  /** host.node (or the first node listed): the one with the simulator's seeded hardware. */
  node: string;
  /** Every node of the simulated cluster, `node` first; all share the one rig. */
  nodes: string[];
  raw: RawStack;
  state: EngineState;
  translations: Record<string, Translation>;
  /** Applies the stack (or a changed copy of it) once, carrying state over from the previous apply. */
  apply(raw?: RawStack, extra?: Partial<ApplyOptions>): Promise<ApplyResult>;
  stop(): Promise<void>;
}

export interface WorldOptions {
  /** Pulumi.<stack>.yaml to start from. */
  stackFile: string;
  /** Evaluates index.ts afresh. */
  loadProgram: () => Promise<Record<string, unknown>>;
  parallel?: number;
  /** Gives up on an operation after this long (see ApplyOptions.operationTimeoutMs). */
  operationTimeoutMs?: number;
  /** Nodes to add to the stack's `proxmox.nodes` (and to the simulator), bare: no PCI devices, disks or pools of their own. */
  nodes?: string[];
}

/** Disk paths the stack's pools name, so the sandbox has them as empty disks. */
function poolDisks(config: StackConfig): string[] {
  return config.host.zfs.pools.flatMap((p) => p.disks);
}

/** A value for each secret the stack needs: `e2e-<key>`, made long enough where the key has a required shape (stacks/secrets.ts secretShapeProblem). */
function e2eSecretValue(key: string): string {
  const value = `e2e-${key}`;
  return secretShapeProblem(key, value) === undefined ? value : `${value}-0123456789abcdef0123456789abcdef`;
}

type FileNodes = Array<{ name: string; ssh?: Record<string, unknown> }>;

/** The nodes a stack file lists, host.node first (it gets the simulator's seeded hardware), then `extra` ones it does not list. */
function nodeNames(raw: RawStack, extra: readonly string[] = []): string[] {
  const listed = (raw.values.proxmox as { nodes: FileNodes }).nodes.map((n) => n.name);
  const hostNode = (raw.values.host as { node?: string } | undefined)?.node;
  return [...new Set([...(hostNode ? [hostNode] : []), ...listed, ...extra])];
}

/** The stack file pointed at this simulator and rig (every node of `nodes` reached through it), with every secret it may need set, and the configuration it describes. */
export function pointAt(raw: RawStack, sim: Simulator, rig: SshRig, nodes: readonly string[]): { raw: RawStack; config: StackConfig } {
  const values = structuredClone(raw.values);
  const proxmox = values.proxmox as { endpoint: string; tokenId: string; nodes: FileNodes; tls: Record<string, unknown> };
  proxmox.endpoint = sim.endpoint;
  proxmox.tokenId = sim.token.id;
  proxmox.tls = { caPem: sim.caPem };
  const ssh = { host: "127.0.0.1", port: rig.port, user: rig.connection.username, hostKey: rig.hostKeyLine };
  proxmox.nodes = nodes.map((name) => ({ ...proxmox.nodes.find((n) => n.name === name), name, ssh }));
  const host = values.host as { node?: string };
  host.node = nodes[0];
  values.proxmoxTokenSecret = sim.token.secret;
  values.sshPrivateKey = rig.connection.privateKey;
  const pointed = { values, secretKeys: new Set([...raw.secretKeys, "proxmoxTokenSecret", "sshPrivateKey"]) };
  const loaded = validateStack(pointed, { requireSecrets: false });
  if (loaded.ok !== true) throw new Error(`the stack does not validate once pointed at the simulator: ${JSON.stringify(loaded)}`);
  for (const need of loaded.missingSecrets) {
    values[need.key] = e2eSecretValue(need.key);
    pointed.secretKeys.add(need.key);
  }
  return { raw: pointed, config: loaded.config };
}

/** How Phoenix runs a script inside a container: through the node, on stdin. */
const IN_CONTAINER = /^pct exec (\d+) -- bash -s$/;
/** How Phoenix runs a script inside a VM: through the node and the VM's guest agent, on stdin (components/tailscale). */
const IN_VM = /qm guest exec (\d+) --pass-stdin 1 /;

/**
 * A command:remote:Command, as the world runs it. A script for the node runs in the sandbox.
 * A script for a container needs the guest's own tools (apt, systemd, the services), which the
 * sandbox does not have: it is parsed by bash (`-n`) inside the container through the rig's pct,
 * which proves the container exists and runs, and is recorded; its stdout is what the guest
 * would print that Phoenix reads, the CA's root block for the CA's install.
 */
async function runCommandResource(i: Record<string, unknown>, lab: LabNetwork, log: CommandRun[]): Promise<{ stdout: string; stderr: string }> {
  const c = i.connection as { host: string; port: number; user: string; privateKey: string; hostKey: string };
  const conn = { host: c.host, port: c.port, username: c.user, privateKey: c.privateKey, hostKey: c.hostKey };
  const command = String(i.create);
  const stdin = String(i.stdin ?? "");
  const inside = IN_CONTAINER.exec(command);
  const inVm = IN_VM.exec(command);
  log.push({ vmid: inside ? Number(inside[1]) : inVm ? Number(inVm[1]) : undefined, command, stdin });
  // The sandbox has no VM to run it in: the script is parsed by bash on the node and recorded.
  if (inVm) {
    const parsed = await runCommand(conn, "bash -n -s", { stdin });
    if (parsed.code !== 0) throw new Error(`${command}: exit ${String(parsed.code)}: ${parsed.stderr.trim()}`);
    return { stdout: "", stderr: "" };
  }
  const res = await runCommand(conn, inside ? `pct exec ${inside[1]} -- bash -n -s` : command, { stdin });
  if (res.code !== 0) throw new Error(`${command}: exit ${String(res.code)}: ${res.stderr.trim()}`);
  if (!inside) return { stdout: res.stdout, stderr: res.stderr };
  return { stdout: stdin.includes(STEP_CA_OUTPUT_BEGIN) ? lab.caStdout : "", stderr: "" };
}

export async function startWorld(opts: WorldOptions): Promise<World> {
  const file = readStackFile(opts.stackFile);
  const nodes = nodeNames(file, opts.nodes);
  const node = nodes[0]!;
  const rig = await startSshd();
  const files = nodeFiles(rig.sandbox, nodes);
  // The VMs boot from the configuration once it is pointed at the rig (below).
  const pointed: { config?: StackConfig } = {};
  const vms = vmBoot(rig.sandbox, nodes, () => pointed.config);
  const sim = await startSimulator({ nodeName: node, tokenId: "phoenix@pve!pulumi", timing: { taskDurationMs: 5, allocationMs: 2 }, nodeFiles: { pull: (s) => files.pull(s), push: (s) => (files.push(s), vms.push(s)) } });
  for (const n of nodes.slice(1)) sim.state.addNode(n);
  const { raw, config } = pointAt(file, sim, rig, nodes);
  pointed.config = config;
  // What each VM's containers started with (the rig's docker stand-in), for the Portainer simulator.
  const lab = await startLabNetwork(config, (vmid, composeFile) => rig.sandbox.state().vms?.[String(vmid)]?.compose[composeFile]?.env);
  const commands: CommandRun[] = [];
  rig.sandbox.update((s) => {
    for (const d of poolDisks(config)) s.disks[d] = { signatures: [], partitions: [] };
    // The node's lspci lists what the simulator's PCI listing has, so vfio binds the ids the mappings name.
    const hex = (v: string) => v.replace(/^0x/, "").padStart(4, "0");
    s.pci = (sim.state.nodes.get(node)?.pci ?? []).map((d) => ({ address: d.id, classCode: hex(d.class).slice(0, 4), id: `${hex(d.vendor)}:${hex(d.device)}` }));
    s.nvidia.gpus = config.host.gpus.filter((g) => g.mode === "lxc-shared").map((g) => ({ busId: `0000${g.pci}`, name: "NVIDIA GeForce RTX 5060 Ti", memoryMiB: 16311 }));
  });
  for (const d of poolDisks(config)) rig.sandbox.write(d.slice(1), "");
  const api = createPveClient({
    endpoint: sim.endpoint,
    auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret },
    tls: { caPem: sim.caPem },
    // Short backoff so injected faults cost milliseconds.
    retry: { attempts: 6, baseDelayMs: 20, maxDelayMs: 500 },
    task: { pollIntervalMs: 5 },
  });
  const translations = { ...proxmoxTranslations(api), [TYPES.command]: commandTranslation((i) => runCommandResource(i, lab, commands)) };
  const state = new EngineState();
  const world: World = {
    sim,
    rig,
    lab,
    commands,
    api,
    node,
    nodes,
    raw,
    state,
    translations,
    apply: (r = world.raw, extra = {}) => apply({ raw: r, state, translations, loadProgram: opts.loadProgram, parallel: opts.parallel, operationTimeoutMs: opts.operationTimeoutMs, ...extra }),
    async stop() {
      api.close();
      await lab.close();
      await rig.stop();
      await sim.stop();
    },
  };
  return world;
}
