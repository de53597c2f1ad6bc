import * as fs from "node:fs";
import * as path from "node:path";
import { faultsFromEnv } from "./faults";
import { startSimulator } from "./server";

/**
 * `npm run sim`: the simulator seeded like the prod host, for the dev stack.
 * Environment: PVE_SIM_PORT (8006), PVE_SIM_VERSION (9|8), PVE_SIM_FAULTS
 * (`5xx:0.05,lock:0.02,drop:0.01,taskfail:0.01`), PVE_SIM_LATENCY (`50` or
 * `GET:5,POST:200`), PVE_SIM_TOKEN_SECRET, PVE_SIM_ROOT_PASSWORD,
 * PVE_SIM_TASK_MS (how long tasks run), PVE_SIM_AUTH_DELAY_MS (PVE: 3000),
 * PVE_SIM_NODE and PVE_SIM_TOKEN_ID (default: what Pulumi.dev.yaml declares).
 * The CA is copied to .pve-sim/ca.pem, the path Pulumi.dev.yaml names.
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
  const caFile = path.join(process.cwd(), ".pve-sim", "ca.pem");
  fs.mkdirSync(path.dirname(caFile), { recursive: true });
  fs.writeFileSync(caFile, sim.caPem);
  console.log(`PVE ${version} API simulator listening`);
  console.log(`  endpoint:      ${sim.endpoint}`);
  console.log(`  token:         ${sim.token.id}=${sim.token.secret}`);
  console.log(`  token id:      ${sim.token.id}`);
  console.log(`  token secret:  ${sim.token.secret}`);
  console.log(`  root password: ${sim.rootPassword}`);
  console.log(`  CA:            ${path.relative(process.cwd(), caFile)} (also ${sim.caPath})`);
  const shutdown = (): void => {
    sim.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

main().catch((e: unknown) => {
  console.error(`pve-sim: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
