import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseProbe } from "../../providers/common";
import { planRootConfig, renderApply, renderProbe, type ProbedState, type RootConfigSpec } from "../../providers/guest/lxc-root-config.render";
import { runCommand, runScriptChecked } from "../../providers/ssh";
import { startSshd, type SshRig } from "./sshd";

const CONF = `arch: amd64
hostname: vllm-chat
memory: 4096
dev0: /dev/nvidia7,gid=44,mode=0666
lxc.cgroup2.devices.allow: c 195:* rwm

[before-upgrade]
hostname: vllm-chat
dev0: /dev/nvidia7,gid=44,mode=0666
`;

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
  rig.sandbox.write("etc/pve/lxc/802.conf", CONF);
});
afterAll(async () => {
  await rig?.stop();
});

const pct = (args: string, stdin?: string) => runCommand(rig.connection, `pct ${args}`, stdin === undefined ? {} : { stdin });

describe("pct stand-in", () => {
  it("config prints the current section only, lxc.* lines included", async () => {
    expect((await pct("config 802")).stdout).toBe("arch: amd64\nhostname: vllm-chat\nmemory: 4096\ndev0: /dev/nvidia7,gid=44,mode=0666\nlxc.cgroup2.devices.allow: c 195:* rwm\n");
    expect(await pct("config 999")).toMatchObject({ code: 255, stderr: "Configuration file 'nodes/pve/lxc/999.conf' does not exist\n" });
  });

  it("set changes and deletes keys of the current section and leaves snapshots alone", async () => {
    expect((await pct("set 802 --memory 8192 --dev1 /dev/nvidiactl,gid=44 --delete dev0")).code).toBe(0);
    const conf = rig.sandbox.read("etc/pve/lxc/802.conf");
    expect(conf.split("\n[")[0]).toBe("arch: amd64\nhostname: vllm-chat\nlxc.cgroup2.devices.allow: c 195:* rwm\nmemory: 8192\ndev1: /dev/nvidiactl,gid=44\n");
    expect(conf).toContain("[before-upgrade]\nhostname: vllm-chat\ndev0: /dev/nvidia7,gid=44,mode=0666\n");
  });

  it("start, status, reboot and stop follow the status file as PVE's CLI would", async () => {
    expect((await pct("status 802")).stdout).toBe("status: stopped\n");
    expect(await pct("reboot 802")).toMatchObject({ code: 255, stderr: "CT 802 not running\n" });
    expect((await pct("start 802")).code).toBe(0);
    expect(await pct("start 802")).toMatchObject({ code: 255, stderr: "CT 802 already running\n" });
    expect((await pct("status 802")).stdout).toBe("status: running\n");
    expect((await pct("reboot 802")).code).toBe(0);
    expect((await pct("stop 802")).code).toBe(0);
    expect(rig.sandbox.read("run/pct/802.status")).toBe("stopped\n");
  });

  it("exec runs the command in the container's root with stdin, only while it runs, and passes its exit status", async () => {
    expect(await pct("exec 802 -- bash -s", "echo hi")).toMatchObject({ code: 255, stderr: "CT 802 not running\n" });
    await pct("start 802");
    const res = await pct("exec 802 -- bash -s", 'echo "root=$PHOENIX_ROOT"; mkdir -p "$PHOENIX_ROOT/etc"; echo x > "$PHOENIX_ROOT/etc/marker"; exit 7');
    expect(res.code).toBe(7);
    expect(res.stdout).toBe(`root=${rig.sandbox.root}/ct/802\n`);
    expect(rig.sandbox.read("ct/802/etc/marker")).toBe("x\n");
    expect(rig.sandbox.exists("etc/marker")).toBe(false);
  });

  it("package tools inside a container keep their own state, apart from the node's", async () => {
    await pct("exec 802 -- apt-get install -y htop");
    expect(rig.sandbox.state().containers["802"]?.aptInstalled).toEqual(["htop"]);
    expect(rig.sandbox.state().aptInstalled).toEqual([]);
    expect((await pct("exec 802 -- dpkg-query -W htop")).code).toBe(0);
    expect((await runCommand(rig.connection, "dpkg-query -W htop")).code).toBe(1);
  });

  it("serves LxcRootConfig's probe and apply: a converged container needs nothing the second time", async () => {
    const spec: RootConfigSpec = { devices: [{ path: "/dev/nvidia0", gid: 44, mode: "0666" }], mounts: [], features: { nesting: true, keyctl: false, fuse: false }, idmap: [], subuid: [], subgid: [] };
    const probe = async (): Promise<ProbedState> => {
      const out = parseProbe((await runScriptChecked(rig.connection, "probe", renderProbe(802, []))).stdout);
      const config = Object.fromEntries(out.all("config").map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]));
      return { exists: out.get("exists") === "1", running: out.get("running") === "1", config, idmap: [], owners: {} };
    };
    const before = await probe();
    expect(before).toMatchObject({ exists: true, running: true });
    const plan = planRootConfig(spec, before);
    expect(plan.delete).toEqual(["dev1"]);
    const applied = await runScriptChecked(rig.connection, "apply", renderApply(802, plan, before.running));
    expect(applied.stdout).toBe("changed config\nrebooted\n");
    expect(rig.sandbox.calls("pct").at(-1)).toEqual(["pct", "reboot", "802"]);
    expect(planRootConfig(spec, await probe())).toMatchObject({ set: {}, delete: [] });
  });
});
