/**
 * The machine an e2e apply runs against: the PVE simulator and the real sshd with its sandbox as
 * the node's shell, sharing /etc/pve (node-files.ts); the lab network's stand-ins at the guests'
 * addresses (lab-network.ts); and a stack file rewritten to point at them, with every secret set.
 */
import { STEP_CA_OUTPUT_BEGIN } from "../../components/core/step-ca.render";
import { runCommand } from "../../providers/ssh";
import { readStackFile, validateStack, type RawStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { createPveClient, type PveApi } from "../../providers/pve";
import { startSimulator, type Simulator } from "../pve-sim";
import { startSshd, type SshRig } from "../rig/sshd";
import { apply, EngineState, type ApplyOptions, type ApplyResult, type Translation } from "./engine";
import { startLabNetwork, type LabNetwork } from "./lab-network";
import { nodeFiles } from "./node-files";
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
  node: string;
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
}

/** Disk paths the stack's pools name, so the sandbox has them as empty disks. */
function poolDisks(config: StackConfig): string[] {
  return config.host.zfs.pools.flatMap((p) => p.disks);
}

/** The stack file pointed at this simulator and rig, with every secret it may need set, and the configuration it describes. */
export function pointAt(raw: RawStack, sim: Simulator, rig: SshRig, node: string): { raw: RawStack; config: StackConfig } {
  const values = structuredClone(raw.values);
  const proxmox = values.proxmox as { endpoint: string; tokenId: string; nodes: Array<{ name: string; ssh?: Record<string, unknown> }>; tls: Record<string, unknown> };
  proxmox.endpoint = sim.endpoint;
  proxmox.tokenId = sim.token.id;
  proxmox.tls = { caPem: sim.caPem };
  proxmox.nodes = [{ name: node, ssh: { host: "127.0.0.1", port: rig.port, user: rig.connection.username, hostKey: rig.hostKeyLine } }];
  const host = values.host as { node?: string };
  host.node = node;
  values.proxmoxTokenSecret = sim.token.secret;
  values.sshPrivateKey = rig.connection.privateKey;
  const pointed = { values, secretKeys: new Set([...raw.secretKeys, "proxmoxTokenSecret", "sshPrivateKey"]) };
  const loaded = validateStack(pointed, { requireSecrets: false });
  if (loaded.ok !== true) throw new Error(`the stack does not validate once pointed at the simulator: ${JSON.stringify(loaded)}`);
  for (const need of loaded.missingSecrets) {
    values[need.key] = `e2e-${need.key}`;
    pointed.secretKeys.add(need.key);
  }
  return { raw: pointed, config: loaded.config };
}

/** How Phoenix runs a script inside a container: through the node, on stdin. */
const IN_CONTAINER = /^pct exec (\d+) -- bash -s$/;

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
  log.push({ vmid: inside ? Number(inside[1]) : undefined, command, stdin });
  const res = await runCommand(conn, inside ? `pct exec ${inside[1]} -- bash -n -s` : command, { stdin });
  if (res.code !== 0) throw new Error(`${command}: exit ${String(res.code)}: ${res.stderr.trim()}`);
  if (!inside) return { stdout: res.stdout, stderr: res.stderr };
  return { stdout: stdin.includes(STEP_CA_OUTPUT_BEGIN) ? lab.caStdout : "", stderr: "" };
}

export async function startWorld(opts: WorldOptions): Promise<World> {
  const file = readStackFile(opts.stackFile);
  const node = (file.values.proxmox as { nodes: Array<{ name: string }> }).nodes[0]!.name;
  const rig = await startSshd();
  const files = nodeFiles(rig.sandbox, node);
  const sim = await startSimulator({ nodeName: node, tokenId: "phoenix@pve!pulumi", timing: { taskDurationMs: 5, allocationMs: 2 }, nodeFiles: files });
  const { raw, config } = pointAt(file, sim, rig, node);
  const lab = await startLabNetwork(config);
  const commands: CommandRun[] = [];
  rig.sandbox.update((s) => {
    for (const d of poolDisks(config)) s.disks[d] = { signatures: [], partitions: [] };
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
