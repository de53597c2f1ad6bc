/** The HA configuration endpoints (ha.ts) as pve-ha-manager answers them, every call validated against the schema. */
import { afterEach, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, seedTemplate } from "./http";
import { startSimulator, type Simulator } from "./server";

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

async function call(s: Simulator, method: string, path: string, params: Record<string, string | number> = {}): Promise<{ status: number; data: unknown; message?: string }> {
  const res = await rawCall(s, method, path, method === "GET" || method === "DELETE" ? { query: form(params) } : { form: form(params) });
  const body = res.body as { data: unknown; message?: string };
  return { status: res.status, data: body.data, message: body.message };
}

async function withGuest(version: 8 | 9): Promise<Simulator> {
  const s = await startSimulator({ version, timing: { taskDurationMs: 1, allocationMs: 1 } });
  sim = s;
  seedTemplate(s);
  s.state.addNode("pve2");
  const upid = (await call(s, "POST", "/nodes/pve/lxc", { vmid: 200, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:8", hostname: "web" })).data;
  await s.tasks.tasks.get(String(upid))?.done;
  return s;
}

describe("HA resources, rules and groups", () => {
  it("PVE 9: a rule names configured resources and cluster nodes; groups are migrated", async () => {
    const s = await withGuest(9);
    expect((await call(s, "POST", "/cluster/ha/rules", { rule: "r1", type: "node-affinity", resources: "ct:200", nodes: "pve:2,pve2:1" })).message).toMatch(/cannot use unmanaged resource\(s\) ct:200\./);
    expect((await call(s, "POST", "/cluster/ha/resources", { sid: "ct:201", type: "ct" })).status).toBe(500);
    expect((await call(s, "POST", "/cluster/ha/resources", { sid: "ct:200", type: "ct", state: "started", max_restart: 1 })).status).toBe(200);
    expect((await call(s, "POST", "/cluster/ha/resources", { sid: "ct:200", type: "ct" })).message).toMatch(/resource ID 'ct:200' already defined/);
    expect((await call(s, "POST", "/cluster/ha/rules", { rule: "r1", type: "node-affinity", resources: "ct:200", nodes: "pve:2,pve9:1" })).message).toMatch(/cannot use non-existent node\(s\) pve9\./);
    expect((await call(s, "POST", "/cluster/ha/rules", { rule: "r1", type: "node-affinity", resources: "ct:200", nodes: "pve:2,pve2:1", strict: 1 })).status).toBe(200);
    expect((await call(s, "GET", "/cluster/ha/rules/r1")).data).toMatchObject({ rule: "r1", type: "node-affinity", resources: "ct:200", nodes: "pve:2,pve2:1", strict: "1", order: "1" });
    expect((await call(s, "POST", "/cluster/ha/groups", { group: "g1", nodes: "pve" })).message).toMatch(/cannot create group: ha groups have been migrated to rules/);
    // Deleting the resource purges it from the rules; a rule left without resources goes.
    expect((await call(s, "DELETE", "/cluster/ha/resources/ct:200")).status).toBe(200);
    expect((await call(s, "GET", "/cluster/ha/rules")).data).toEqual([]);
  });

  it("PVE 8: a resource in a group; the group cannot go while it is used", async () => {
    const s = await withGuest(8);
    expect((await call(s, "POST", "/cluster/ha/resources", { sid: "ct:200", group: "g1" })).message).toMatch(/HA group 'g1' does not exist/);
    expect((await call(s, "POST", "/cluster/ha/groups", { group: "g1", type: "group", nodes: "pve:2,pve2:1", restricted: 1, nofailback: 0 })).status).toBe(200);
    expect((await call(s, "POST", "/cluster/ha/resources", { sid: "ct:200", group: "g1" })).status).toBe(200);
    expect((await call(s, "DELETE", "/cluster/ha/groups/g1")).message).toMatch(/ha group is used by service 'ct:200'/);
  });
});
