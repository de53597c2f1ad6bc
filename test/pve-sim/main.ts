import * as fs from "node:fs";
import * as path from "node:path";
import { startSshd } from "../rig/sshd";
import { faultsFromEnv } from "./faults";
import { startSimulator } from "./server";
import { runCli } from "../../scripts/cli";

/**
 * `npm run sim`: the simulator seeded like the prod host, for the dev stack.
 * Environment: PVE_SIM_PORT (8006), PVE_SIM_VERSION (9|8), PVE_SIM_FAULTS
 * (`5xx:0.05,lock:0.02,drop:0.01,taskfail:0.01`), PVE_SIM_LATENCY (`50` or
 * `GET:5,POST:200`), PVE_SIM_TOKEN_SECRET, PVE_SIM_ROOT_PASSWORD,
 * PVE_SIM_TASK_MS (how long tasks run), PVE_SIM_AUTH_DELAY_MS (PVE: 3000),
 * PVE_SIM_NODE and PVE_SIM_TOKEN_ID (default: what Pulumi.dev.yaml declares).
 * It also starts a sandboxed sshd standing in for the node's SSH on
 * PVE_SIM_SSH_PORT (2222): host-preparation scripts run for real there, against
 * stand-ins for zfs, nvidia-smi and the rest, never touching this machine.
 * The CA, the sshd's host key and a client key go to .pve-sim/, where
 * Pulumi.dev.yaml looks for them.
 */
async function main(): Promise<void> {
  const env = process.env;
  const version = env.PVE_SIM_VERSION ?? "9";
  if (version !== "9" && version !== "8") throw new Error(`PVE_SIM_VERSION must be 9 or 8, got '${version}'`);
  const port = Number(env.PVE_SIM_PORT ?? 8006);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PVE_SIM_PORT must be a TCP port, got '${env.PVE_SIM_PORT}'`);
  const sim = await startSimulator({
    port,
    version: version === "9" ? 9 : 8,
    seed: "prod",
    nodeName: env.PVE_SIM_NODE ?? "pve-dev",
    tokenId: env.PVE_SIM_TOKEN_ID ?? "phoenix@pve!pulumi",
    tokenSecret: env.PVE_SIM_TOKEN_SECRET,
    rootPassword: env.PVE_SIM_ROOT_PASSWORD,
    faults: faultsFromEnv(env.PVE_SIM_FAULTS, env.PVE_SIM_LATENCY),
    timing: env.PVE_SIM_TASK_MS ? { taskDurationMs: Number(env.PVE_SIM_TASK_MS) } : { taskDurationMs: 500 },
    authFailureDelayMs: Number(env.PVE_SIM_AUTH_DELAY_MS ?? 3000),
  });
  const sshPort = Number(env.PVE_SIM_SSH_PORT ?? 2222);
  const rig = await startSshd({ port: sshPort });
  const out = path.join(process.cwd(), ".pve-sim");
  fs.mkdirSync(out, { recursive: true });
  const caFile = path.join(out, "ca.pem");
  fs.writeFileSync(caFile, sim.caPem);
  fs.writeFileSync(path.join(out, "ssh_host_ed25519_key.pub"), rig.hostKeyLine + "\n");
  fs.writeFileSync(path.join(out, "id_ed25519"), rig.connection.privateKey, { mode: 0o600 });
  console.log(`PVE ${version} API simulator listening`);
  console.log(`  endpoint:      ${sim.endpoint}`);
  console.log(`  token:         ${sim.token.id}=${sim.token.secret}`);
  console.log(`  token id:      ${sim.token.id}`);
  console.log(`  token secret:  ${sim.token.secret}`);
  console.log(`  root password: ${sim.rootPassword}`);
  console.log(`  CA:            ${path.relative(process.cwd(), caFile)} (also ${sim.caPath})`);
  console.log(`  node SSH:      127.0.0.1:${sshPort} as ${rig.connection.username}, host key .pve-sim/ssh_host_ed25519_key.pub, client key .pve-sim/id_ed25519`);
  console.log(`  sandbox root:  ${rig.sandbox.root}`);
  const shutdown = (): void => {
    Promise.all([sim.stop(), rig.stop()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

void runCli("pve-sim", main);
