import { rmSync, symlinkSync } from "fs";
import { join } from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import {
  iommuArgs,
  mergeKernelArgs,
  planVfio,
  renderVfioModprobeConf,
  setGrubDefaultArgs,
  vfioModules,
  type GpuDeclaration,
} from "../../providers/host/kernel-cmdline";
import { vfioHostProvider as provider, type VfioHostInputs, type VfioHostOutputs } from "../../providers/host/vfio";
import { startSshd, type SshRig } from "../rig/sshd";

const GPUS: GpuDeclaration[] = [
  { name: "rtx5090-vm", mode: "vm-passthrough", ids: ["10de:2b85", "10de:22e8"] },
  { name: "rtx5070ti-lxc", mode: "lxc-shared", ids: ["10de:2c05", "10de:22e9"] },
];

describe("kernel command line merge", () => {
  it("only what the kernel needs (pve-docs qm-pci-passthrough.adoc): intel_iommu=on before 6.8, never amd_iommu=on, always iommu=pt", () => {
    expect(iommuArgs("intel", "6.5.13-6-pve")).toEqual(["intel_iommu=on", "iommu=pt"]);
    expect(iommuArgs("intel", "6.8.12-4-pve")).toEqual(["iommu=pt"]);
    expect(iommuArgs("intel", "6.14.8-2-pve", "quiet intel_iommu=off")).toEqual(["intel_iommu=on", "iommu=pt"]);
    expect(iommuArgs("amd", "5.15.158-2-pve")).toEqual(["iommu=pt"]);
    expect(iommuArgs("amd", "6.8.12-4-pve")).toEqual(["iommu=pt"]);
  });
  it("systemd-boot, Intel before 6.8: keeps existing arguments and adds the IOMMU ones once", () => {
    const once = mergeKernelArgs("root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet", iommuArgs("intel", "6.5.13-6-pve"));
    expect(once).toBe("root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet intel_iommu=on iommu=pt");
    expect(mergeKernelArgs(once, iommuArgs("intel", "6.5.13-6-pve"))).toBe(once);
  });
  it("systemd-boot: a conflicting value is changed where it stands", () => {
    expect(mergeKernelArgs("root=ZFS=rpool/ROOT/pve-1 iommu=off boot=zfs", iommuArgs("amd", "6.8.12-4-pve"))).toBe("root=ZFS=rpool/ROOT/pve-1 iommu=pt boot=zfs");
    const off = "root=ZFS=rpool/ROOT/pve-1 intel_iommu=off boot=zfs";
    expect(mergeKernelArgs(off, iommuArgs("intel", "6.8.12-4-pve", off))).toBe("root=ZFS=rpool/ROOT/pve-1 intel_iommu=on boot=zfs iommu=pt");
  });
  it("GRUB, Intel: edits only GRUB_CMDLINE_LINUX_DEFAULT and is stable", () => {
    const grub = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX="console=ttyS0"\n';
    const once = setGrubDefaultArgs(grub, iommuArgs("intel", "6.5.13-6-pve"));
    expect(once).toBe('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash intel_iommu=on iommu=pt"\nGRUB_CMDLINE_LINUX="console=ttyS0"\n');
    expect(setGrubDefaultArgs(once, iommuArgs("intel", "6.5.13-6-pve"))).toBe(once);
  });
  it("GRUB, AMD: single-quoted or missing lines are handled", () => {
    expect(setGrubDefaultArgs("GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n", iommuArgs("amd", "6.8.12-4-pve"))).toBe('GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n');
    expect(setGrubDefaultArgs("GRUB_TIMEOUT=5\n", iommuArgs("amd", "6.8.12-4-pve"))).toBe('GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n');
  });
  it("vfio_virqfd only before kernel 6.2", () => {
    expect(vfioModules("6.8.12-4-pve")).toEqual(["vfio", "vfio_iommu_type1", "vfio_pci"]);
    expect(vfioModules("6.2.16-20-pve")).not.toContain("vfio_virqfd");
    expect(vfioModules("5.15.158-2-pve")).toContain("vfio_virqfd");
  });
});

describe("vfio planning", () => {
  it("one lxc-shared and one vm-passthrough GPU: vfio claims only the VM card, nvidia is not blacklisted", () => {
    const plan = planVfio(GPUS);
    expect(plan).toEqual({ vfioIds: ["10de:22e8", "10de:2b85"], sharedIds: ["10de:22e9", "10de:2c05"] });
    const conf = renderVfioModprobeConf(plan.vfioIds);
    expect(conf).toContain("options vfio-pci ids=10de:22e8,10de:2b85\n");
    expect(conf).not.toMatch(/^\s*blacklist/m);
    expect(conf).toContain("softdep nvidia pre: vfio-pci");
  });
  it("refuses two cards of one model in different modes", () => {
    expect(() => planVfio([GPUS[0]!, { name: "twin", mode: "lxc-shared", ids: ["10de:2b85"] }])).toThrow(/GPUs rtx5090-vm \(vm-passthrough\), twin \(lxc-shared\) share PCI id\(s\) 10de:2b85/);
  });
});

describe("VfioHost provider", () => {
  let rig: SshRig;
  let outs: VfioHostOutputs;
  beforeAll(async () => {
    rig = await startSshd();
  });
  afterAll(async () => {
    await rig?.stop();
  });
  const inputs = (gpus = GPUS): VfioHostInputs => ({ node: "pve", connection: rig.connection, gpus });
  const bind = (address: string, driver: string) => {
    rmSync(join(rig.sandbox.root, `sys/bus/pci/devices/${address}/driver`), { force: true });
    rig.sandbox.write(`sys/bus/pci/drivers/${driver}/.keep`, "");
    symlinkSync(`../../../bus/pci/drivers/${driver}`, join(rig.sandbox.root, `sys/bus/pci/devices/${address}/driver`));
  };

  it("check validates ids, rejects conflicting modes, and lets unknowns through", async () => {
    const bad = await provider.check!({} as VfioHostInputs, inputs([{ name: "x", mode: "vm-passthrough", ids: ["10DE:2B85"] }]));
    expect(bad.failures!.map((f) => f.property)).toEqual(["gpus[0].ids[0]"]);
    const twin = await provider.check!({} as VfioHostInputs, inputs([GPUS[0]!, { name: "twin", mode: "lxc-shared", ids: ["10de:2b85"] }]));
    expect(twin.failures![0]!.reason).toMatch(/share PCI id/);
    expect((await provider.check!({} as VfioHostInputs, { node: "pve", connection: rig.connection, gpus: [UNKNOWN, { name: "a", mode: UNKNOWN, ids: UNKNOWN }] } as never)).failures).toEqual([]);
  });

  it("create on a systemd-boot Intel host with kernel 6.8: only iommu=pt merged, refreshed, vfio for the VM GPU only, reboot required", async () => {
    rig.sandbox.write("sys/bus/pci/devices/0000:01:00.0/.keep", "");
    bind("0000:01:00.0", "nvidia");
    outs = (await provider.create(inputs())).outs!;
    expect(rig.sandbox.read("etc/kernel/cmdline")).toBe("root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet iommu=pt\n");
    expect(rig.sandbox.read("etc/modprobe.d/vfio.conf")).toContain("options vfio-pci ids=10de:22e8,10de:2b85\n");
    expect(rig.sandbox.read("etc/modules-load.d/vfio.conf")).toBe("# Managed by Phoenix: vfio for GPUs passed through to VMs.\nvfio\nvfio_iommu_type1\nvfio_pci\n");
    expect(rig.sandbox.read("etc/default/grub")).not.toContain("iommu");
    const rebuilds = rig.sandbox.calls().filter((c) => ["update-initramfs", "proxmox-boot-tool", "update-grub"].includes(c[0]!) && c[1] !== "status");
    expect(rebuilds).toEqual([["update-initramfs", "-u", "-k", "all"], ["proxmox-boot-tool", "refresh"]]);
    expect(outs).toMatchObject({ bootLoader: "systemd-boot", cpuVendor: "intel", vfioIds: ["10de:22e8", "10de:2b85"], inSync: true, rebootRequired: true });
    expect(outs.rebootReason).toBe("the running kernel was booted without iommu=pt; 0000:01:00.0 (10de:2b85) is bound to nvidia, not vfio-pci; 0000:01:00.1 (10de:22e8) is bound to no driver, not vfio-pci");
  });

  it("a second create changes nothing; after a reboot nothing is required", async () => {
    rig.sandbox.clearCalls();
    expect((await provider.create(inputs())).outs).toEqual(outs);
    expect(rig.sandbox.calls().filter((c) => ["update-initramfs", "proxmox-boot-tool", "update-grub"].includes(c[0]!) && c[1] !== "status")).toEqual([]);
    rig.sandbox.write("proc/cmdline", rig.sandbox.read("etc/kernel/cmdline"));
    rig.sandbox.write("sys/bus/pci/devices/0000:01:00.1/.keep", "");
    bind("0000:01:00.0", "vfio-pci");
    bind("0000:01:00.1", "vfio-pci");
    outs = (await provider.read!("vfio", outs)).props!;
    expect(outs).toMatchObject({ rebootRequired: false, rebootReason: "", inSync: true });
  });

  it("update in place when a GPU changes mode: the VM card's ids leave vfio", async () => {
    const shared = GPUS.map((g) => ({ ...g, mode: "lxc-shared" as const }));
    expect(await provider.diff!("vfio", outs, inputs(shared))).toMatchObject({ changes: true, replaces: [] });
    expect((await provider.diff!("vfio", outs, { ...inputs(), connection: { ...rig.connection, host: "localhost" } })).replaces).toEqual([]);
    expect((await provider.diff!("vfio", outs, { ...inputs(), node: "pve2" })).replaces).toEqual(["node"]);
    expect((await provider.diff!("vfio", { ...outs, __provider: "x" } as never, inputs())).changes).toBe(false);
    const res = (await provider.update!("vfio", outs, inputs(shared))).outs!;
    expect(rig.sandbox.exists("etc/modprobe.d/vfio.conf")).toBe(false);
    expect(res).toMatchObject({ vfioIds: [], rebootRequired: true });
    expect(res.rebootReason).toMatch(/0000:01:00.0 \(10de:2b85\) is shared with containers but still bound to vfio-pci/);
    outs = (await provider.update!("vfio", res, inputs())).outs!;
    expect(outs.vfioIds).toEqual(["10de:22e8", "10de:2b85"]);
  });

  it("read reports an argument removed out of band, and diff asks to restore it", async () => {
    rig.sandbox.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet intel_iommu=off\n");
    const res = (await provider.read!("vfio", outs)).props!;
    expect(res).toMatchObject({ kernelCmdline: "root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet intel_iommu=off", inSync: false });
    expect((await provider.diff!("vfio", res, inputs())).changes).toBe(true);
    outs = (await provider.update!("vfio", res, inputs())).outs!;
    expect(rig.sandbox.read("etc/kernel/cmdline")).toBe("root=ZFS=rpool/ROOT/pve-1 boot=zfs quiet intel_iommu=on iommu=pt\n");
  });

  it("refuses to go on while an old blacklist takes the driver from shared GPUs", async () => {
    rig.sandbox.write("etc/modprobe.d/blacklist.conf", "blacklist nouveau\nblacklist nvidia\nblacklist nvidiafb\n");
    await expect(provider.update!("vfio", outs, inputs())).rejects.toThrow(/\/etc\/modprobe\.d\/blacklist\.conf:2:blacklist nvidia blacklists the NVIDIA driver, but GPUs are declared lxc-shared/);
    rig.sandbox.write("etc/modprobe.d/blacklist.conf", "blacklist nouveau\nblacklist nvidiafb\n");
  });

  it("refuses to write a systemd-boot command line that has lost its root=", async () => {
    const saved = rig.sandbox.read("etc/kernel/cmdline");
    rig.sandbox.write("etc/kernel/cmdline", "quiet\n");
    await expect(provider.update!("vfio", outs, inputs())).rejects.toThrow(/\/etc\/kernel\/cmdline is without root= on a systemd-boot host; refusing/);
    expect(rig.sandbox.read("etc/kernel/cmdline")).toBe("quiet\n");
    rig.sandbox.write("etc/kernel/cmdline", saved);
  });

  it("refuses ids no device on the host has", async () => {
    await expect(provider.update!("vfio", outs, inputs([{ name: "old", mode: "vm-passthrough", ids: ["10de:1e84"] }]))).rejects.toThrow(/no PCI device with id 10de:1e84/);
  });

  it("delete removes the vfio binding and keeps the IOMMU arguments", async () => {
    await provider.delete!("vfio", outs);
    expect(rig.sandbox.exists("etc/modprobe.d/vfio.conf")).toBe(false);
    expect(rig.sandbox.exists("etc/modules-load.d/vfio.conf")).toBe(false);
    expect(rig.sandbox.read("etc/kernel/cmdline")).toContain("iommu=pt");
  });

  it("on a GRUB host with an AMD CPU and an older kernel, edits /etc/default/grub and runs update-grub", async () => {
    rmSync(join(rig.sandbox.root, "etc/kernel/proxmox-boot-uuids"));
    rig.sandbox.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\n");
    rig.sandbox.update((s) => {
      s.boot = "grub";
      s.kernelRelease = "5.15.158-2-pve";
    });
    rig.sandbox.clearCalls();
    const res = (await provider.create(inputs())).outs!;
    expect(rig.sandbox.read("etc/default/grub")).toContain('GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n');
    expect(rig.sandbox.read("etc/modules-load.d/vfio.conf")).toContain("vfio_virqfd\n");
    expect(rig.sandbox.calls("update-grub")).toEqual([["update-grub"]]);
    expect(rig.sandbox.calls("proxmox-boot-tool")).toEqual([]);
    expect(res).toMatchObject({ bootLoader: "grub", cpuVendor: "amd", kernelCmdline: "quiet iommu=pt" });
    rig.sandbox.clearCalls();
    await provider.create(inputs());
    expect(rig.sandbox.calls("update-grub")).toEqual([]);
  });
});

describe("VfioHost on a ZFS/UEFI host switched to Secure Boot", () => {
  let rig: SshRig;
  beforeAll(async () => {
    rig = await startSshd();
  });
  afterAll(async () => {
    await rig?.stop();
  });

  it("writes the IOMMU arguments for GRUB, which boots under Secure Boot, not to /etc/kernel/cmdline", async () => {
    // pve-docs system-booting.adoc: systemd-boot stays on the ESP, GRUB boots with Secure Boot on.
    rig.sandbox.update((s) => {
      s.secureBoot = true;
      s.kernelRelease = "6.5.13-6-pve";
    });
    const cmdline = rig.sandbox.read("etc/kernel/cmdline");
    const outs = (await provider.create({ node: "pve", connection: rig.connection, gpus: GPUS })).outs!;
    expect(outs).toMatchObject({ secureBoot: true, bootLoader: "grub-proxmox-boot-tool", kernelCmdline: "quiet intel_iommu=on iommu=pt" });
    expect(rig.sandbox.read("etc/default/grub")).toContain('GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n');
    expect(rig.sandbox.read("etc/kernel/cmdline")).toBe(cmdline);
    expect(rig.sandbox.calls("proxmox-boot-tool")).toContainEqual(["proxmox-boot-tool", "refresh"]);
  });
});
