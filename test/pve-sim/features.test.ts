/**
 * The simulator refuses container feature changes from an API token the way pve-container@6.0.18
 * (963730e) src/PVE/LXC.pm check_ct_modify_config_perm does, and seeds `local` with the content
 * PVE's installer writes (pve-installer Proxmox/Install/StorageConfig.pm).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEBIAN_TEMPLATE, form, rawCall, rootTicket, seedTemplate, settle, type RawAuth } from "./http";
import { startSimulator, type Simulator } from "./server";

let sim: Simulator;
let root: { ticket: string; csrf: string };

beforeAll(async () => {
  sim = await startSimulator({ timing: { taskDurationMs: 1 } });
  seedTemplate(sim);
  root = await rootTicket(sim);
});

afterAll(async () => {
  await sim.stop();
});

async function call(method: string, path: string, params: Record<string, string | number>, auth: RawAuth = "token"): Promise<{ status: number; message?: string }> {
  const res = await rawCall(sim, method, path, { form: form(params), auth });
  await settle(sim);
  return { status: res.status, message: res.status === 200 ? undefined : String(res.body.message ?? res.reason) };
}

let next = 400;
/** A container made by root@pam, so its starting features are whatever the test needs. */
async function container(extra: Record<string, string | number>): Promise<number> {
  const vmid = next++;
  expect((await call("POST", "/nodes/pve/lxc", { vmid, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4", ...extra }, root)).status).toBe(200);
  return vmid;
}

const PRIVILEGED = "Permission check failed (changing feature flags for privileged container is only allowed for root@pam)\n";
const NOT_NESTING = "Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)\n";

describe("container features from an API token (check_ct_modify_config_perm)", () => {
  it("refuses any features on a privileged container, at create and on update, even nesting alone", async () => {
    expect(await call("POST", "/nodes/pve/lxc", { vmid: next++, ostemplate: DEBIAN_TEMPLATE, rootfs: "local-zfs:4", unprivileged: 0, features: "nesting=1" })).toEqual({ status: 403, message: PRIVILEGED });
    const ct = await container({ unprivileged: 0 });
    expect(await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "nesting=1" })).toEqual({ status: 403, message: PRIVILEGED });
    expect((await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "nesting=1" }, root)).status).toBe(200);
  });

  it("refuses the four flags bpg's update sends, because keys newly present as 0 count as changes", async () => {
    const ct = await container({ features: "nesting=1" });
    // bpg v0.111.1 containerGetFeaturesForUpdate + CustomFeatures.EncodeValues: fuse, keyctl, nesting, mknod, all of them.
    expect(await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "fuse=0,keyctl=0,nesting=0,mknod=0" })).toEqual({ status: 403, message: NOT_NESTING });
    expect(await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "fuse=0,keyctl=0,nesting=1,mknod=0" })).toEqual({ status: 403, message: NOT_NESTING });
    const fresh = await container({});
    expect(await call("PUT", `/nodes/pve/lxc/${fresh}/config`, { features: "fuse=0,keyctl=0,nesting=1,mknod=0" })).toEqual({ status: 403, message: NOT_NESTING });
  });

  it("lets a token change nesting alone on an unprivileged container, and delete features that were nesting alone", async () => {
    const ct = await container({});
    expect((await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "nesting=1" })).status).toBe(200);
    expect((await call("PUT", `/nodes/pve/lxc/${ct}/config`, { features: "nesting=0" })).status).toBe(200);
    expect((await call("PUT", `/nodes/pve/lxc/${ct}/config`, { delete: "features" })).status).toBe(200);
    const withKeyctl = await container({ features: "keyctl=1,nesting=1" });
    expect((await call("PUT", `/nodes/pve/lxc/${withKeyctl}/config`, { features: "keyctl=1,nesting=0" })).status).toBe(200);
    expect(await call("PUT", `/nodes/pve/lxc/${withKeyctl}/config`, { delete: "features" })).toEqual({ status: 403, message: NOT_NESTING });
    expect(await call("PUT", `/nodes/pve/lxc/${withKeyctl}/config`, { features: "nesting=1" })).toEqual({ status: 403, message: NOT_NESTING });
  });
});

describe("the installer's storages", () => {
  it("seed local with iso, vztmpl, backup and import on PVE 9, without import on 8, never snippets", async () => {
    const content = async (version: 8 | 9) => {
      const s = await startSimulator({ version, seed: "empty" });
      try {
        return s.state.storage("local").config.content;
      } finally {
        await s.stop();
      }
    };
    expect(await content(9)).toBe("iso,vztmpl,backup,import");
    expect(await content(8)).toBe("iso,vztmpl,backup");
    expect(sim.state.storage("local").config.content).toBe("iso,vztmpl,backup,import");
  });
});
