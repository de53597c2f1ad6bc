import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { nvidiaDriverProvider as provider, type NvidiaDriverInputs, type NvidiaDriverOutputs } from "../../providers/host/nvidia-driver";
import { deviceNodes, NVIDIA_UNIT_CONTENT } from "../../providers/host/nvidia.scripts";
import { startSshd, type SshRig } from "../rig/sshd";

const V1 = "580.76.05";
const V2 = "580.95.05";

describe("device node majors", () => {
  it("come from /proc/devices by driver name, whatever number the kernel picked", () => {
    const nodes = ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-caps/nvidia-cap1"];
    expect(deviceNodes(nodes, ["195 nvidia-frontend", "235 nvidia-uvm", "237 nvidia-caps"])).toEqual([
      { path: "/dev/nvidia-caps/nvidia-cap1", major: 237 },
      { path: "/dev/nvidia-uvm", major: 235 },
      { path: "/dev/nvidia-uvm-tools", major: 235 },
      { path: "/dev/nvidia0", major: 195 },
      { path: "/dev/nvidiactl", major: 195 },
    ]);
    expect(deviceNodes(["/dev/nvidia-uvm"], ["195 nvidia", "511 nvidia-uvm"])).toEqual([{ path: "/dev/nvidia-uvm", major: 511 }]);
  });
});

describe("NvidiaDriver provider", () => {
  let rig: SshRig;
  let outs: NvidiaDriverOutputs;
  beforeAll(async () => {
    rig = await startSshd();
  });
  afterAll(async () => {
    await rig?.stop();
  });
  const inputs = async (version: string): Promise<NvidiaDriverInputs> =>
    (await provider.check!({} as NvidiaDriverInputs, { node: "pve", connection: rig.connection, version } as never)).inputs as NvidiaDriverInputs;

  it("check defaults the installer URL and passes unknowns", async () => {
    expect((await inputs(V1)).runfileUrl).toBe(`https://us.download.nvidia.com/XFree86/Linux-x86_64/${V1}/NVIDIA-Linux-x86_64-${V1}.run`);
    expect((await provider.check!({} as NvidiaDriverInputs, { node: "pve", connection: rig.connection, version: UNKNOWN } as never)).failures).toEqual([]);
    const bad = await provider.check!({} as NvidiaDriverInputs, { node: "pve", connection: rig.connection, version: "latest", runfileUrl: "http://x/y.run" } as never);
    expect(bad.failures!.map((f) => f.property)).toEqual(["version", "runfileUrl"]);
  });

  it("create installs headers, disables nouveau, installs with DKMS, enables the boot unit and verifies with nvidia-smi", async () => {
    outs = (await provider.create(await inputs(V1))).outs!;
    const s = rig.sandbox.state();
    expect(s.aptInstalled).toEqual(["proxmox-headers-6.8.12-4-pve", "proxmox-default-headers", "dkms", "build-essential", "pkg-config"]);
    expect(rig.sandbox.read("etc/modprobe.d/phoenix-nouveau.conf")).toContain("blacklist nouveau\noptions nouveau modeset=0\n");
    expect(rig.sandbox.calls("nvidia-installer")[0]).toEqual(expect.arrayContaining(["--silent", "--dkms", "--kernel-module-type=open"]));
    expect(rig.sandbox.calls("curl")[0]!.at(-1)).toBe(outs.runfileUrl);
    expect(rig.sandbox.read("etc/systemd/system/phoenix-nvidia-devices.service")).toBe(NVIDIA_UNIT_CONTENT);
    expect(NVIDIA_UNIT_CONTENT).toMatch(/Before=pve-guests\.service[\s\S]*ExecStart=\/usr\/bin\/nvidia-smi\nExecStart=\/usr\/bin\/nvidia-modprobe -u -c=0/);
    expect(s.systemdEnabled).toEqual(["phoenix-nvidia-devices.service"]);
    expect(outs).toMatchObject({
      installedVersion: V1,
      loadedVersion: V1,
      gpus: [{ index: 0, minor: 0, busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5070 Ti", memoryMiB: 16303 }],
      installedModuleType: "open",
      kernelsWithoutModule: [],
      inSync: true,
      rebootRequired: false,
    });
    expect(outs.deviceNodes).toEqual([
      { path: "/dev/nvidia-uvm", major: 508 },
      { path: "/dev/nvidia-uvm-tools", major: 508 },
      { path: "/dev/nvidia0", major: 195 },
      { path: "/dev/nvidiactl", major: 195 },
    ]);
  });

  it("a second create adopts: no download, no installer, no package changes", async () => {
    rig.sandbox.clearCalls();
    expect((await provider.create(await inputs(V1))).outs).toEqual(outs);
    const mutating = rig.sandbox.calls().filter((c) => ["apt-get", "curl", "nvidia-installer", "systemctl", "update-initramfs"].includes(c[0]!) && c[1] !== "is-enabled");
    expect(mutating).toEqual([]);
  });

  it("a new version is an in-place upgrade that unloads the old module first", async () => {
    const next = await inputs(V2);
    expect(await provider.diff!("nvidia", outs, next)).toMatchObject({ changes: true, replaces: [] });
    expect((await provider.diff!("nvidia", outs, { ...next, connection: { ...rig.connection, host: "localhost" } })).replaces).toEqual([]);
    expect((await provider.diff!("nvidia", outs, { ...next, node: "pve2" })).replaces).toEqual(["node"]);
    rig.sandbox.clearCalls();
    outs = (await provider.update!("nvidia", outs, next)).outs!;
    expect(rig.sandbox.calls("modprobe")[0]).toEqual(["modprobe", "-r", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nvidia"]);
    expect(rig.sandbox.state().nvidia.dkms).toEqual([`nvidia/${V2}`]);
    expect(outs).toMatchObject({ version: V2, installedVersion: V2, loadedVersion: V2, rebootRequired: false });
  });

  it("an upgrade while containers hold the GPU stops with what to do", async () => {
    rig.sandbox.update((s) => (s.nvidia.inUse = true));
    await expect(provider.update!("nvidia", outs, await inputs(V1))).rejects.toThrow(/the loaded NVIDIA driver is in use .* stop them, or reboot, then run pulumi up again to install 580\.76\.05/);
    expect(rig.sandbox.state().nvidia).toMatchObject({ installed: V2, loaded: V2 });
    rig.sandbox.update((s) => (s.nvidia.inUse = false));
  });

  it("read reports drift: boot unit disabled out of band, and a re-assigned nvidia-uvm major", async () => {
    rig.sandbox.update((s) => {
      s.systemdEnabled = [];
      s.nvidia.uvmMajor = 235;
    });
    rig.sandbox.write("proc/devices", rig.sandbox.read("proc/devices").replace(/508 nvidia-uvm/, "235 nvidia-uvm"));
    const res = (await provider.read!("nvidia", outs)).props!;
    expect(res.inSync).toBe(false);
    expect(res.deviceNodes.find((n) => n.path === "/dev/nvidia-uvm")).toEqual({ path: "/dev/nvidia-uvm", major: 235 });
    expect((await provider.diff!("nvidia", res, await inputs(V2))).changes).toBe(true);
    outs = (await provider.update!("nvidia", res, await inputs(V2))).outs!;
    expect(rig.sandbox.state().systemdEnabled).toEqual(["phoenix-nvidia-devices.service"]);
    expect(outs.inSync).toBe(true);
  });

  it("reports each GPU's device minor from the driver's procfs, which can differ from nvidia-smi's index", async () => {
    rig.sandbox.update((s) => {
      s.nvidia.gpus = [
        { busId: "00000000:01:00.0", name: "NVIDIA GeForce RTX 5090", memoryMiB: 32607, minor: 1 },
        { busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5070 Ti", memoryMiB: 16303, minor: 0 },
      ];
    });
    const res = (await provider.read!("nvidia", outs)).props!;
    expect(res.gpus.map((g) => [g.index, g.minor, g.busId])).toEqual([
      [0, 1, "00000000:01:00.0"],
      [1, 0, "00000000:02:00.0"],
    ]);
    expect(rig.sandbox.read("proc/driver/nvidia/gpus/0000:01:00.0/information")).toMatch(/^Device Minor: \t 1$/m);
    // State from before minors were read asks for a probe.
    expect((await provider.diff!("nvidia", { ...outs, gpus: [{ index: 0, busId: "00000000:02:00.0" }] } as never, await inputs(V2))).changes).toBe(true);
    rig.sandbox.update((s) => (s.nvidia.gpus = [{ busId: "00000000:02:00.0", name: "NVIDIA GeForce RTX 5070 Ti", memoryMiB: 16303 }]));
  });

  it("verifies the installer's sha256 and refuses a runfile that does not match, before running it", async () => {
    rig.sandbox.clearCalls();
    const wrong = { ...(await inputs(V1)), runfileSha256: "0".repeat(64) };
    await expect(provider.update!("nvidia", outs, wrong)).rejects.toThrow(/does not have the configured sha256; check runfileSha256/);
    expect(rig.sandbox.calls("nvidia-installer")).toEqual([]);
    expect(rig.sandbox.state().nvidia.installed).toBe(V2);
  });

  it("the kernel modules are explicit: proprietary is passed to the installer and verified with modinfo", async () => {
    const proprietary = { ...(await inputs(V2)), kernelModuleType: "proprietary" as const };
    expect((await provider.diff!("nvidia", outs, proprietary)).changes).toBe(true);
    // The installed flavour is read back; the open modules on disk do not satisfy a proprietary declaration.
    const res = (await provider.read!("nvidia", outs)).props!;
    expect(res.installedModuleType).toBe("open");
    expect((await provider.check!({} as NvidiaDriverInputs, { ...proprietary, kernelModuleType: "closed" } as never)).failures!.map((f) => f.property)).toEqual(["kernelModuleType"]);
  });

  it("kernel-upgrade preflight: an installed kernel without a built module is reported and refused before a reboot into it", async () => {
    rig.sandbox.write("boot/vmlinuz-6.17.2-1-pve", "");
    rig.sandbox.update((s) => (s.nvidia.unbuildable = ["6.17.2-1-pve"]));
    const res = (await provider.read!("nvidia", outs)).props!;
    expect(res).toMatchObject({ kernelsWithoutModule: ["6.17.2-1-pve"], inSync: false });
    expect((await provider.diff!("nvidia", res, await inputs(V2))).changes).toBe(true);
    await expect(provider.update!("nvidia", res, await inputs(V2))).rejects.toThrow(
      /DKMS has no nvidia module built for installed kernel\(s\) 6\.17\.2-1-pve; do not reboot into them/,
    );
    expect(rig.sandbox.calls("dkms")).toContainEqual(["dkms", "install", "-m", "nvidia", "-v", V2, "-k", "6.17.2-1-pve"]);
    // Once DKMS can build it, the same update puts the module in place.
    rig.sandbox.update((s) => (s.nvidia.unbuildable = []));
    outs = (await provider.update!("nvidia", res, await inputs(V2))).outs!;
    expect(outs).toMatchObject({ kernelsWithoutModule: [], inSync: true });
  });

  it("with Secure Boot on, refuses to build a module the kernel would not load until DKMS's key is enrolled as a MOK", async () => {
    rig.sandbox.update((s) => {
      s.secureBoot = true;
      s.nvidia.inUse = false;
    });
    rig.sandbox.clearCalls();
    await expect(provider.update!("nvidia", outs, await inputs(V1))).rejects.toThrow(
      /Secure Boot is on and DKMS has no signing key yet \(\/var\/lib\/dkms\/mok\.pub is missing\).*Create the key with dkms generate_mok, then enroll it: mokutil --import \/var\/lib\/dkms\/mok\.pub/,
    );
    rig.sandbox.write("var/lib/dkms/mok.pub", "certificate");
    await expect(provider.update!("nvidia", outs, await inputs(V1))).rejects.toThrow(/DKMS's signing key \/var\/lib\/dkms\/mok\.pub is not enrolled, so the kernel would refuse the nvidia module DKMS builds/);
    expect(rig.sandbox.calls("nvidia-installer")).toEqual([]);
    rig.sandbox.update((s) => (s.mokEnrolled = ["/var/lib/dkms/mok.pub"]));
    const res = (await provider.read!("nvidia", outs)).props!;
    expect((await provider.update!("nvidia", res, await inputs(V2))).outs).toMatchObject({ installedVersion: V2, inSync: true });
    rig.sandbox.update((s) => (s.secureBoot = false));
  });

  it("reports a reboot when the new version is built but the old one is still loaded", async () => {
    rig.sandbox.update((s) => (s.nvidia.loaded = V1));
    const res = (await provider.read!("nvidia", outs)).props!;
    expect(res).toMatchObject({ rebootRequired: true, rebootReason: `driver ${V1} is loaded; ${V2} is built and loads at the next boot` });
    rig.sandbox.update((s) => (s.nvidia.loaded = V2));
  });

  it("delete disables the unit and uninstalls the driver", async () => {
    await provider.delete!("nvidia", outs);
    expect(rig.sandbox.exists("etc/systemd/system/phoenix-nvidia-devices.service")).toBe(false);
    expect(rig.sandbox.state().nvidia).toMatchObject({ dkms: [] });
    expect(rig.sandbox.state().systemdEnabled).toEqual([]);
    expect((await provider.read!("nvidia", outs)).props).toMatchObject({ installedVersion: "", loadedVersion: "", inSync: false });
  });

  it("on a host where nouveau holds the GPUs: builds with DKMS, does not load, asks for a reboot", async () => {
    rig.sandbox.write("sys/module/nouveau/refcnt", "1\n");
    rig.sandbox.clearCalls();
    const res = (await provider.create(await inputs(V1))).outs!;
    expect(rig.sandbox.calls("nvidia-installer")[0]).toContain("--skip-module-load");
    expect(rig.sandbox.calls("modprobe")).toEqual([]);
    expect(rig.sandbox.calls("nvidia-modprobe")).toEqual([]);
    expect(res).toMatchObject({ installedVersion: V1, loadedVersion: "", rebootRequired: true, rebootReason: "nouveau is loaded; it is blacklisted and the NVIDIA driver takes over at the next boot" });
  });
});
