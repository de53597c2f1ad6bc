/**
 * Portainer as its handlers behave (portainer/portainer, api/adminmonitor,
 * api/http/handler/users, api/http/handler/stacks/stack_update.go), in the
 * simulator and in what Phoenix does about it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { implementation as admin, renderPortainerRestart, type PortainerAdminOutputs } from "../../providers/portainer/admin";
import { PortainerApiError, PortainerClient } from "../../providers/portainer/client";
import { implementation as stack, type PortainerStackInputs } from "../../providers/portainer/stack";
import { ADMIN_INIT_TIMEOUT_MS, startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { PORTAINER_CONTAINER, PORTAINER_DIR, renderPortainerServerCompose } from "../../components/docker/portainer";
import { PORTAINER_ENV_FILE } from "../../providers/portainer/agent-secret";
import { renderGuestExec } from "../../providers/portainer/guest-exec";
import { runScriptChecked } from "../../providers/ssh/exec";
import { renderScript } from "../../providers/ssh/script";
import { startSshd } from "../rig/sshd";
import { shellcheck } from "../support";
import { adminInputs, AGENT_URL, bootstrap, PASSWORD, registerAgent } from "./helpers";

let sim: PortainerSim | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

function client(s: PortainerSim, auth: ConstructorParameters<typeof PortainerClient>[1] = { kind: "none" }): PortainerClient {
  return new PortainerClient({ url: s.url, caPem: s.caPem }, auth);
}

describe("Portainer's admin-initialisation timeout (api/adminmonitor)", () => {
  it("after five minutes without an administrator, /api answers 303 except /api/status; a restart starts the clock over", async () => {
    let now = 1_000_000;
    sim = await startPortainerSim({ clock: () => now });
    const c = client(sim);
    expect(await c.adminExists()).toBe(false);
    now += ADMIN_INIT_TIMEOUT_MS;
    const err = await c.systemStatus().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortainerApiError);
    expect(err).toMatchObject({ status: 303, apiMessage: "Administrator initialization timeout", redirectReason: "AdminInitTimeout" });
    expect((await c.request("GET", "/api/status", undefined, [404])).status).toBe(404);
    sim.restart();
    expect(await c.adminExists()).toBe(false);
    c.close();
  });

  it("does not fire once an administrator exists", async () => {
    let now = 0;
    sim = await startPortainerSim({ clock: () => now });
    await admin.create(adminInputs(sim));
    now += 2 * ADMIN_INIT_TIMEOUT_MS;
    const c = client(sim);
    expect(await c.adminExists()).toBe(true);
    c.close();
  });

  it("PortainerAdmin says how to recover when it cannot restart Portainer itself, and initialises after the restart", async () => {
    let now = 0;
    sim = await startPortainerSim({ clock: () => now });
    now += ADMIN_INIT_TIMEOUT_MS + 1;
    await expect(admin.create(adminInputs(sim))).rejects.toThrow(/disabled its API.*docker restart portainer/);
    // read of a timed-out Portainer: no administrator, so the resource is gone (not an error)
    expect((await admin.read("x", { ...adminInputs(sim), userId: 1, tokenId: 1, apiToken: "ptr_x", initializedByPhoenix: true })).id).toBe("");
    sim.restart();
    const { outs } = await admin.create(adminInputs(sim));
    expect((outs as PortainerAdminOutputs).initializedByPhoenix).toBe(true);
  });

  it("PortainerAdmin restarts a Portainer that timed out through the VM's guest agent, then initialises it (sshd rig, qm stand-in)", async () => {
    let now = 0;
    sim = await startPortainerSim({ clock: () => now });
    const rig = await startSshd();
    const compose = `${PORTAINER_DIR}/compose.yaml`;
    let seen = 0;
    const watch = setInterval(() => {
      // Portainer starts over when its container restarts in the VM.
      const restarts = rig.sandbox.state().vms?.["1001"]?.restarts?.[PORTAINER_CONTAINER] ?? 0;
      if (restarts > seen) {
        seen = restarts;
        sim!.restart();
      }
    }, 50);
    try {
      rig.sandbox.write("run/qm/1001.status", "running\n");
      rig.sandbox.write(`vm/1001${compose}`, renderPortainerServerCompose({ version: "2.33.2", port: 9443, dnsNames: ["vm-1001.internal.example"], address: "10.0.0.101", caUrl: "https://10.0.0.10:9000" }));
      rig.sandbox.write(`vm/1001${PORTAINER_ENV_FILE}`, "AGENT_SECRET=x\n");
      await runScriptChecked(rig.connection, "start Portainer", renderScript(renderGuestExec(1001, ["docker", "compose", "-f", compose, "up", "-d"], { timeoutSeconds: 30 })));
      now += ADMIN_INIT_TIMEOUT_MS + 1;
      const restart = { connection: rig.connection, vmid: 1001, container: PORTAINER_CONTAINER };
      const { outs } = await admin.create(adminInputs(sim, { restart }));
      expect((outs as PortainerAdminOutputs).initializedByPhoenix).toBe(true);
      expect(rig.sandbox.state().vms?.["1001"]?.restarts).toEqual({ [PORTAINER_CONTAINER]: 1 });
      // A container Docker does not know: the error says the restart failed and how it ended.
      now += ADMIN_INIT_TIMEOUT_MS + 1;
      sim.state.users.length = 0;
      await expect(admin.create(adminInputs(sim, { restart: { ...restart, container: "nope" } }))).rejects.toThrow(/`docker restart nope` in VM 1001 did not succeed \(exit 1\)/);
    } finally {
      clearInterval(watch);
      await rig.stop();
    }
  });

  it("the restart runs through the VM's guest agent, as one checked shell line", () => {
    const script = renderPortainerRestart({ connection: { host: "10.0.0.13", username: "root", privateKey: "k", hostKey: "SHA256:x" }, vmid: 1001, container: "portainer" });
    expect(script).toContain("qm guest exec 1001 --timeout 120 -- docker restart portainer");
    shellcheck("portainer restart", script);
    expect(() => renderPortainerRestart({ connection: { host: "h", username: "u", privateKey: "k", hostKey: "SHA256:x" }, vmid: 1001, container: "x; reboot" })).toThrow(/not a Docker container name/);
  });
});

describe("API tokens (users/user_create_access_token.go, user_remove_access_token.go)", () => {
  it("creation answers 201", async () => {
    sim = await startPortainerSim();
    await admin.create(adminInputs(sim));
    const c = client(sim);
    const { jwt, userId } = await c.login("admin", PASSWORD);
    const res = await c.withAuth({ kind: "jwt", jwt }).request("POST", `/api/users/${userId}/tokens`, { json: { description: "probe", password: PASSWORD } }, [201]);
    expect(res.status).toBe(201);
    c.close();
  });

  it("deleting a missing key is 500 'API Key not found', which the client takes for gone; an admin may delete another user's key", async () => {
    sim = await startPortainerSim();
    const { admin: out } = await bootstrap(sim);
    const c = client(sim, { kind: "apiKey", key: out.apiToken });
    const raw = await c.request("DELETE", `/api/users/${out.userId}/tokens/999`, undefined, [500]);
    expect(raw.status).toBe(500);
    const again = await c.request("DELETE", `/api/users/${out.userId}/tokens/999`, undefined, [204]).catch((e: unknown) => e);
    expect(again).toMatchObject({ status: 500, apiMessage: "API Key not found" });
    await expect(c.deleteApiKey(out.userId, 999)).resolves.toBeUndefined();
    const other = sim.state.addUser("bob", "bob-password-long", 2);
    const bobKey = sim.state.addApiKey(other.Id, "bob's");
    await c.deleteApiKey(other.Id, bobKey.key.id);
    expect(sim.state.apiKeys.some((k) => k.id === bobKey.key.id)).toBe(false);
    c.close();
  });
});

describe("compose stack updates (stacks/stack_update.go)", () => {
  const TWO = "services:\n  web:\n    image: nginx:1.27\n  worker:\n    image: busybox:1.37\n";
  const ONE = "services:\n  web:\n    image: nginx:1.27\n";
  const projectServices = (s: PortainerSim) => s.state.containers.map((c) => c.Labels["com.docker.compose.service"]).sort();

  it("Portainer ignores Prune for a compose stack: the removed service keeps running", async () => {
    sim = await startPortainerSim({ agents: [AGENT_URL] });
    const { api } = await bootstrap(sim);
    const { endpointId } = await registerAgent(api);
    const c = client(sim, { kind: "apiKey", key: api.apiKey });
    const created = await c.createStack(endpointId, "app", TWO, []);
    await c.request("PUT", `/api/stacks/${created.Id}?endpointId=${endpointId}`, { json: { StackFileContent: ONE, Env: [], Prune: true } });
    expect(projectServices(sim)).toEqual(["web", "worker"]);
    c.close();
  });

  it("PortainerStack removes the containers of services gone from the file", async () => {
    sim = await startPortainerSim({ agents: [AGENT_URL] });
    const { api } = await bootstrap(sim);
    const { endpointId } = await registerAgent(api);
    const inputs: PortainerStackInputs = { api, endpointId, name: "app", compose: TWO, env: {}, secretEnv: {} };
    const { id, outs } = await stack.create(inputs);
    expect(projectServices(sim)).toEqual(["web", "worker"]);
    await stack.update!(id, outs as never, { ...inputs, compose: ONE });
    expect(projectServices(sim)).toEqual(["web"]);
    expect(sim.log.some((e) => e.method === "PUT" && e.path === `/api/stacks/${id}`)).toBe(true);
  });
});
