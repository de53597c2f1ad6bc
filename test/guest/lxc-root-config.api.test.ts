import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { implementation, type LxcRootConfigInputs } from "../../providers/guest/lxc-root-config";
import { createPveClient } from "../../providers/pve";
import { seedTemplate } from "../pve-sim/http";
import { startSimulator, type Simulator } from "../pve-sim/server";

let sim: Simulator;
let inputs: LxcRootConfigInputs;
const VMID = 802;

const tokenClient = () => createPveClient({ endpoint: sim.endpoint, auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret }, tls: { caPem: sim.caPem } });

beforeAll(async () => {
  sim = await startSimulator({ timing: { taskDurationMs: 5 } });
  const api = tokenClient();
  // A container cloned from a template that carried a GPU line it should not pass on.
  await api.createContainer("pve", { vmid: VMID, ostemplate: seedTemplate(sim), rootfs: "local-zfs:8", net0: "name=eth0,bridge=vmbr0,ip=10.0.0.142/24,gw=10.0.0.1,firewall=1" });
  api.close();
  const root = createPveClient({ endpoint: sim.endpoint, auth: { kind: "ticket", username: "root@pam", password: sim.rootPassword }, tls: { caPem: sim.caPem } });
  await root.updateGuestConfig("pve", "lxc", VMID, { dev3: "/dev/nvidia7,gid=44,mode=0666" });
  root.close();
  inputs = {
    transport: { kind: "api", endpoint: sim.endpoint, password: sim.rootPassword, caPem: sim.caPem },
    node: "pve",
    vmid: VMID,
    devices: [
      { path: "/dev/nvidia1", gid: 44, mode: "0666" },
      { path: "/dev/nvidiactl", gid: 44, mode: "0666" },
    ],
    mounts: [],
    features: { nesting: true, keyctl: true, fuse: false },
    idmap: [],
    subuid: [],
    subgid: [],
  };
});
afterAll(() => sim.stop());

const configOf = async () => {
  const api = tokenClient();
  try {
    return (await api.guestConfig("pve", "lxc", VMID)) as Record<string, unknown>;
  } finally {
    api.close();
  }
};

describe("LxcRootConfig through the API as root@pam", () => {
  it("sets exactly the declared devices and features, and drops the inherited GPU line", async () => {
    const { id, outs } = await implementation.create(inputs);
    expect(id).toBe("pve/802");
    const config = await configOf();
    expect(config.dev0).toBe("/dev/nvidia1,gid=44,mode=0666");
    expect(config.dev1).toBe("/dev/nvidiactl,gid=44,mode=0666");
    expect(config.dev3).toBeUndefined();
    expect(config.features).toBe("keyctl=1,nesting=1");
    expect(outs.actual).toEqual({ dev0: "/dev/nvidia1,gid=44,mode=0666", dev1: "/dev/nvidiactl,gid=44,mode=0666", features: "keyctl=1,nesting=1" });
  });

  it("changes nothing when run again", async () => {
    sim.log.clear();
    await implementation.update("pve/802", { ...inputs, actual: {}, actualIdmap: [] }, inputs);
    expect(sim.log.mutating()).toHaveLength(0);
  });

  it("reports drift on read after an out-of-band change, and diff asks to converge it", async () => {
    const root = createPveClient({ endpoint: sim.endpoint, auth: { kind: "ticket", username: "root@pam", password: sim.rootPassword }, tls: { caPem: sim.caPem } });
    await root.updateGuestConfig("pve", "lxc", VMID, { dev0: "/dev/nvidia0,gid=44,mode=0666" });
    root.close();
    const { props } = await implementation.read("pve/802", { ...inputs, actual: {}, actualIdmap: [] });
    expect(props.actual?.dev0).toBe("/dev/nvidia0,gid=44,mode=0666");
    const diff = await implementation.diff("pve/802", props as never, inputs);
    expect(diff.changes).toBe(true);
    expect(diff.replaces).toEqual([]);
  });

  it("refuses bind mounts and id maps, which the API cannot do, at check time", async () => {
    const news = { ...inputs, mounts: [{ hostPath: "/fastData/models", path: "/models", readOnly: false, owner: { uid: 101000, gid: 101000, mode: "0755" } }] };
    const { failures } = await implementation.check({}, news as unknown as Record<string, unknown>);
    expect(failures?.[0]?.reason).toContain("CT 802 on pve: bind mounts (their host directories get an owner) need SSH to the node");
  });

  it("is refused by PVE when attempted with the token instead of root@pam", async () => {
    const api = tokenClient();
    await expect(api.updateGuestConfig("pve", "lxc", VMID, { dev0: "/dev/nvidia1,gid=44,mode=0666" })).rejects.toThrow(/only allowed for root@pam/);
    api.close();
  });
});
