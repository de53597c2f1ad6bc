import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderPortainerAgentCompose, renderPortainerServerCompose } from "../../components/docker/portainer";
import {
  implementation as agentSecret,
  PORTAINER_ENV_FILE,
  renderDeliveryScript,
  renderProbeScript,
  type PortainerAgentSecretInputs,
  type PortainerAgentSecretOutputs,
} from "../../providers/portainer/agent-secret";
import type { PortainerApi } from "../../providers/portainer/common";
import { implementation as environment } from "../../providers/portainer/environment";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { startSshd, type SshRig } from "../rig/sshd";
import { shellcheck } from "../support";
import { AGENT_URL, bootstrap } from "./helpers";

const SECRET = "3f9a1c7e5b2d8a4f6e0c9b7d5a3f1e8c2b6d4a9f7e5c3b1a";
const ROTATED = "Zq8vN2xL5pR7tW1yB4mK9cH3jF6gD0sA-rotated";
const COMPOSE = "/opt/phoenix/portainer-agent/compose.yaml";
const AGENT_KEY = AGENT_URL.replace("tcp://", "");

describe("the Portainer simulator's agent signature check (agent crypto/ecdsa.go, notary.go)", () => {
  let secrets: { server?: string; agent?: string };
  let sim: PortainerSim;
  let api: PortainerApi;
  beforeAll(async () => {
    secrets = {};
    sim = await startPortainerSim({ agents: [AGENT_URL], agentSecrets: { server: () => secrets.server, agent: () => secrets.agent } });
  });
  afterAll(() => sim.stop());

  it("without AGENT_SECRET, whoever reaches the agent first owns it: Phoenix's Portainer is then refused", async () => {
    expect(sim.signedRequestFrom(AGENT_URL, { key: "intruder" })).toBe(true);
    ({ api } = await bootstrap(sim));
    await expect(environment.create({ api, name: "drphoenix", agentUrl: AGENT_URL })).rejects.toThrow(/500 Unable to initiate communications with environment.*agent already paired with another Portainer instance/s);
    expect(sim.state.endpoints).toEqual([]);
  });

  it("with a shared secret, the intruder is refused and Phoenix's Portainer registers the agent", async () => {
    sim.state.agents.get(AGENT_KEY)!.pairedKey = undefined; // the agent restarted
    secrets = { server: SECRET, agent: SECRET };
    expect(sim.signedRequestFrom(AGENT_URL, { key: "intruder" })).toBe(false);
    expect(sim.signedRequestFrom(AGENT_URL, { key: "intruder", secret: "guessed-wrong" })).toBe(false);
    const env = await environment.create({ api, name: "drphoenix", agentUrl: AGENT_URL });
    expect(env.outs).toMatchObject({ status: 1 });
    // One side restarted with another secret: the agent refuses the server, the environment shows down.
    secrets = { server: ROTATED, agent: SECRET };
    expect((await environment.read(env.id, env.outs as never)).props).toMatchObject({ status: 2 });
    secrets = { server: ROTATED, agent: ROTATED };
    expect((await environment.read(env.id, env.outs as never)).props).toMatchObject({ status: 1 });
  });
});

describe("both compose files read AGENT_SECRET from the root-only env file, and hold no secret", () => {
  it("server and agent name the env file", () => {
    const server = renderPortainerServerCompose({ version: "2.33.2", port: 9443, dnsNames: ["portainer.internal.example"], address: "10.0.0.101", caUrl: "https://10.0.0.10:9000" });
    const agent = renderPortainerAgentCompose("2.33.2", 9001);
    for (const text of [server, agent]) {
      expect(text).toContain(`    env_file:\n      - ${PORTAINER_ENV_FILE}\n`);
      expect(text).not.toMatch(/AGENT_SECRET/);
    }
  });
});

describe("PortainerAgentSecret: checks and scripts", () => {
  const inputs: PortainerAgentSecretInputs = { connection: { host: "10.0.0.13", username: "root", privateKey: "k", hostKey: "SHA256:" + "A".repeat(43) }, node: "phoenix", vmid: 1002, secret: SECRET, composeFile: COMPOSE };

  it("the secret travels only as qm's stdin (a quoted heredoc), never on a command line", () => {
    const script = renderDeliveryScript(inputs);
    shellcheck("agent secret delivery", script);
    const lines = script.split("\n");
    const withSecret = lines.filter((l) => l.includes(SECRET));
    expect(withSecret).toEqual([`AGENT_SECRET=${SECRET}`]);
    expect(lines.find((l) => l.startsWith("qm guest exec"))).toBe("qm guest exec 1002 --timeout 900 --pass-stdin 1 -- sh -c 'set -eu");
    expect(script).toContain(`docker compose -f ${COMPOSE} up -d --force-recreate' <<'PHOENIX_GUEST_STDIN'\nAGENT_SECRET=${SECRET}\nPHOENIX_GUEST_STDIN\n`);
    shellcheck("agent secret probe", renderProbeScript(1002));
  });

  it("refuses a short or shell-meaningful secret without echoing it", async () => {
    for (const bad of ["short", `${SECRET} #x`, `${SECRET}$HOME`, `${SECRET}\nX=1`]) {
      const { failures } = await agentSecret.check({}, { ...inputs, secret: bad });
      expect(failures?.map((f) => f.property)).toEqual(["secret"]);
      expect(JSON.stringify(failures)).not.toContain(SECRET);
    }
    expect((await agentSecret.check({}, { ...inputs })).failures).toEqual([]);
  });

  it("a new secret is an update that re-delivers; a new way to reach the node is not; drift is", async () => {
    const olds: PortainerAgentSecretOutputs = { ...inputs, inSync: true };
    expect(await agentSecret.diff("id", olds, { ...inputs, secret: ROTATED })).toMatchObject({ changes: true, replaces: [] });
    expect(await agentSecret.diff("id", olds, { ...inputs })).toMatchObject({ changes: false });
    expect(await agentSecret.diff("id", { ...olds, inSync: false }, { ...inputs })).toMatchObject({ changes: true, replaces: [] });
    expect(await agentSecret.diff("id", olds, { ...inputs, vmid: 1003 })).toMatchObject({ replaces: ["vmid"] });
  });
});

describe("PortainerAgentSecret through the node's qm into a VM (sshd rig, qm stand-in)", () => {
  let rig: SshRig;
  let inputs: PortainerAgentSecretInputs;
  const vmRoot = () => join(rig.sandbox.root, "vm", "1002");
  const compose = () => rig.sandbox.state().vms?.["1002"]?.compose[COMPOSE];
  beforeAll(async () => {
    rig = await startSshd();
    inputs = { connection: rig.connection, node: "phoenix", vmid: 1002, secret: SECRET, composeFile: COMPOSE };
    // The VM after cloud-init's first boot: its compose file written, the guest agent up.
    rig.sandbox.write("run/qm/1002.status", "running\n");
    rig.sandbox.write(`vm/1002${COMPOSE}`, renderPortainerAgentCompose("2.33.2", 9001));
  });
  afterAll(() => rig.stop());

  it("puts the secret in a 0600 file in the VM and (re)creates the agent with it; nothing the node logs carries it", async () => {
    const { id, outs } = await agentSecret.create(inputs);
    expect(id).toBe("phoenix/qemu/1002/portainer-agent-secret");
    expect(outs).toMatchObject({ inSync: true });
    expect(rig.sandbox.read(`vm/1002${PORTAINER_ENV_FILE}`)).toBe(`AGENT_SECRET=${SECRET}\n`);
    expect(statSync(join(vmRoot(), PORTAINER_ENV_FILE)).mode & 0o777).toBe(0o600);
    expect(compose()).toEqual({ starts: 1, env: { AGENT_SECRET: SECRET } });
    expect(JSON.stringify(rig.sandbox.calls())).not.toContain(SECRET);
    expect(rig.sandbox.calls("qm").map((c) => c.slice(0, 4).join(" "))).toEqual(["qm guest cmd 1002", "qm guest exec 1002"]);
  });

  it("read finds the file in sync, and reports drift when it changed in the VM", async () => {
    const props = { ...inputs, inSync: true };
    expect((await agentSecret.read("id", props)).props).toMatchObject({ inSync: true });
    rig.sandbox.write(`vm/1002${PORTAINER_ENV_FILE}`, "AGENT_SECRET=something-else\n");
    expect((await agentSecret.read("id", props)).props).toMatchObject({ inSync: false });
  });

  it("rotating re-delivers and recreates the container with the new secret", async () => {
    const { outs } = await agentSecret.update("id", { ...inputs, inSync: true }, { ...inputs, secret: ROTATED });
    expect(outs).toMatchObject({ inSync: true });
    expect(compose()).toEqual({ starts: 2, env: { AGENT_SECRET: ROTATED } });
    expect(JSON.stringify(rig.sandbox.calls())).not.toContain(ROTATED);
  });

  it("fails naming the VM and Compose's complaint when the VM has no compose file, without the secret", async () => {
    const err = await agentSecret.create({ ...inputs, composeFile: "/opt/phoenix/missing/compose.yaml" }).catch((e: Error) => e);
    expect(String(err)).toMatch(/VM 1002.*exit 1:\nopen \/opt\/phoenix\/missing\/compose.yaml: no such file or directory/s);
    expect(String(err)).not.toContain(SECRET);
  });
});
