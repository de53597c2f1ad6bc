import { shellcheck } from "../support";
import { describe, expect, it } from "vitest";
import { desiredKeys, gpuViewProblem, mergeSubIds, planIsEmpty, planRootConfig, renderApply, renderGpuCheck, renderProbe, type ProbedState, type RootConfigSpec } from "../../providers/guest/lxc-root-config.render";

const spec: RootConfigSpec = {
  devices: [
    { path: "/dev/nvidia1", gid: 44, mode: "0666" },
    { path: "/dev/nvidiactl", gid: 44, mode: "0666" },
  ],
  mounts: [{ hostPath: "/fastData/shared-models", path: "/models", readOnly: true, owner: { uid: 101000, gid: 101000, mode: "0755" } }],
  features: { nesting: true, keyctl: true, fuse: false },
  idmap: [],
  subuid: [],
  subgid: [],
};

const converged = (): ProbedState => ({
  exists: true,
  running: true,
  config: { hostname: "vllm-chat", rootfs: "quickOS-lxc-disks:subvol-802-disk-0,size=32G", ...desiredKeys(spec) },
  idmap: [],
  owners: { "/fastData/shared-models": { uid: 101000, gid: 101000, mode: "755" } },
});

describe("planRootConfig", () => {
  it("renders PVE's property strings", () => {
    expect(desiredKeys(spec)).toEqual({
      dev0: "/dev/nvidia1,gid=44,mode=0666",
      dev1: "/dev/nvidiactl,gid=44,mode=0666",
      mp0: "/fastData/shared-models,mp=/models,ro=1",
      features: "keyctl=1,nesting=1",
    });
  });

  it("has nothing to do when the node already matches", () => {
    expect(planIsEmpty(planRootConfig(spec, converged()))).toBe(true);
  });

  it("puts bind mounts in slots no volume holds, never over a volume", () => {
    const state = converged();
    delete state.config.mp0;
    state.config.mp0 = "quickOS-lxc-disks:subvol-802-disk-1,mp=/data,size=8G";
    const plan = planRootConfig(spec, state);
    expect(plan.set.mp1).toBe("/fastData/shared-models,mp=/models,ro=1");
    expect(plan.set.mp0).toBeUndefined();
    expect(plan.delete).not.toContain("mp0");
  });

  it("removes devices and bind mounts a clone inherited but does not declare, and leaves volumes alone", () => {
    const state = converged();
    state.config.dev2 = "/dev/nvidia0,gid=44,mode=0666";
    state.config.mp1 = "/srv/old,mp=/old";
    state.config.mp2 = "quickOS-lxc-disks:subvol-802-disk-1,mp=/data,size=8G";
    const plan = planRootConfig(spec, state);
    expect(plan.delete).toEqual(["dev2", "mp1"]);
    expect(plan.set).toEqual({});
  });

  it("sets only what differs, fixes the host directory owner, and rewrites a changed id map", () => {
    const state = converged();
    state.config.dev0 = "/dev/nvidia0,gid=44,mode=0666";
    state.owners["/fastData/shared-models"] = { uid: 0, gid: 0, mode: "777" };
    const withMap = { ...spec, idmap: [{ type: "g" as const, containerId: 0, hostId: 100000, size: 33 }], subgid: ["root:33:1"] };
    const plan = planRootConfig(withMap, { ...state, subgid: "root:100000:65536\n" });
    expect(plan.set).toEqual({ dev0: "/dev/nvidia1,gid=44,mode=0666" });
    expect(plan.chown.map((m) => m.hostPath)).toEqual(["/fastData/shared-models"]);
    expect(plan.idmap).toEqual(["g 0 100000 33"]);
    expect(plan.subgid).toBe("root:100000:65536\nroot:33:1\n");
  });
});

describe("mergeSubIds", () => {
  it("adds only what the file does not already delegate, keeping every line", () => {
    const existing = "root:100000:65536\nalice:200000:65536\n";
    expect(mergeSubIds(existing, ["root:33:1", "root:100005:1"])).toBe("root:100000:65536\nalice:200000:65536\nroot:33:1\n");
    const once = mergeSubIds(existing, ["root:33:1"]);
    expect(mergeSubIds(once, ["root:33:1"])).toBe(once);
  });
});

describe("the rendered scripts", () => {
  const state = converged();
  state.config.dev2 = "/dev/nvidia0,gid=44,mode=0666";
  const plan = planRootConfig({ ...spec, idmap: [{ type: "u", containerId: 0, hostId: 100000, size: 65536 }], subuid: ["root:33:1"] }, { ...state, owners: {} });
  it.each([
    ["probe", renderProbe(802, ["/fastData/shared-models", "/path with space"])],
    ["apply", renderApply(802, plan, true)],
    ["gpu check", renderGpuCheck(802)],
  ])("%s passes shellcheck", (_name, script) => {
    expect(() => shellcheck(_name, script)).not.toThrow();
  });

  it("reboots a running container only when its config changed", () => {
    expect(renderApply(802, plan, true)).toContain('pct reboot "$vmid"');
    expect(renderApply(802, { ...plan, set: {}, delete: [], idmap: undefined }, true)).not.toContain("pct reboot");
    expect(renderApply(802, plan, false)).not.toContain("pct reboot");
  });
});

describe("gpuViewProblem", () => {
  const expected = { busIds: ["00000000:01:00.0"], driverVersion: "580.95.05" };
  it("accepts exactly the assigned GPU on the host's driver", () => {
    expect(gpuViewProblem(expected, ["00000000:01:00.0, 580.95.05"])).toBeUndefined();
  });
  it("names a GPU the guest should not see", () => {
    expect(gpuViewProblem(expected, ["00000000:01:00.0, 580.95.05", "00000000:02:00.0, 580.95.05"])).toContain("expected exactly [00000000:01:00.0]");
  });
  it("names a user-space that does not match the host driver", () => {
    expect(gpuViewProblem(expected, ["00000000:01:00.0, 575.64.05"])).toContain("reports driver 575.64.05, the host runs 580.95.05");
  });
});
