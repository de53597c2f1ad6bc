import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { implementation as admin, type PortainerAdminOutputs } from "../../providers/portainer/admin";
import { PortainerClient } from "../../providers/portainer/client";
import { startPortainerSim, type PortainerSim } from "../portainer-sim/server";
import { adminInputs } from "./helpers";

const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
let sim: PortainerSim;
beforeEach(async () => {
  sim = await startPortainerSim();
});
afterEach(() => sim.stop());

const inits = () => sim.log.filter((e) => e.path === "/api/users/admin/init");

describe("PortainerAdmin against the Portainer simulator", () => {
  it("initialises the administrator when admin/check says none exists, then mints a working token", async () => {
    const { id, outs } = await admin.create(adminInputs(sim));
    const out = outs as PortainerAdminOutputs;
    expect(out.initializedByPhoenix).toBe(true);
    expect(inits()).toHaveLength(1);
    expect(id).toBe(`${sim.url}/users/${out.userId}`);
    expect(out.apiToken).toMatch(/^ptr_/);
    const c = new PortainerClient({ url: sim.url, caPem: sim.caPem }, { kind: "apiKey", key: out.apiToken });
    expect((await c.apiKeys(out.userId)).map((k) => k.description)).toEqual(["phoenix-test"]);
    c.close();
  });

  it("a second run finds the administrator and never initialises again", async () => {
    await admin.create(adminInputs(sim));
    const again = (await admin.create(adminInputs(sim))).outs as PortainerAdminOutputs;
    expect(again.initializedByPhoenix).toBe(false);
    expect(inits()).toHaveLength(1);
    // the earlier token of the same description was replaced, not piled up
    expect(sim.state.apiKeys.map((k) => k.id)).toEqual([again.tokenId]);
  });

  it("an existing administrator with another password is a clear error, not a re-initialisation", async () => {
    sim.state.addUser("admin", "the-real-password-123");
    await expect(admin.create(adminInputs(sim))).rejects.toThrow(/already has an administrator, and admin cannot log in with the password in phoenix:portainerAdminPassword/);
    expect(inits()).toHaveLength(0);
    expect(sim.state.users).toHaveLength(1);
  });

  it("a probe that fails is an error, never taken for 'no admin'", async () => {
    const c = new PortainerClient({ url: sim.url.replace(/:\d+$/, ":1") });
    await expect(c.adminExists()).rejects.toThrow(/GET \/api\/users\/admin\/check at https:\/\/127\.0\.0\.1:1/);
    c.close();
    // an untrusted certificate is refused rather than skipped
    await expect(admin.create(adminInputs(sim, { access: { url: sim.url } }))).rejects.toThrow(/certificate/);
    expect(inits()).toHaveLength(0);
  });

  it("read reports the token gone when it was revoked in Portainer", async () => {
    const { id, outs } = await admin.create(adminInputs(sim));
    const out = outs as PortainerAdminOutputs;
    expect((await admin.read(id, out)).id).toBe(id);
    sim.state.apiKeys.length = 0;
    expect((await admin.read(id, out)).id).toBe("");
  });

  it("delete revokes the token and keeps the administrator", async () => {
    const { id, outs } = await admin.create(adminInputs(sim));
    await admin.delete(id, outs);
    expect(sim.state.apiKeys).toHaveLength(0);
    expect(sim.state.users.map((u) => u.Username)).toEqual(["admin"]);
  });

  it("check enforces Portainer's password minimum and lets preview unknowns through", async () => {
    const short = await admin.check({}, { ...adminInputs(sim), password: "short" });
    expect(short.failures?.map((f) => f.property)).toEqual(["password"]);
    const unknown = await admin.check({}, { ...adminInputs(sim), password: UNKNOWN, access: UNKNOWN });
    expect(unknown.failures).toEqual([]);
  });

  it("a changed description rotates the token; a changed URL replaces the resource", async () => {
    const { id, outs } = await admin.create(adminInputs(sim));
    const out = outs as PortainerAdminOutputs;
    const rotated = (await admin.update(id, out, adminInputs(sim, { tokenDescription: "phoenix-prod" }))).outs as PortainerAdminOutputs;
    expect(rotated.tokenId).not.toBe(out.tokenId);
    expect(sim.state.apiKeys.map((k) => k.description)).toEqual(["phoenix-prod"]);
    const moved = await admin.diff(id, out, adminInputs(sim, { access: { url: "https://10.0.0.111:9443" } }));
    expect(moved.replaces).toEqual(["access"]);
  });
});
