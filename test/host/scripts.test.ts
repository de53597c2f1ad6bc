import { spawnSync } from "child_process";
import { describe, expect, it } from "vitest";
import { renderModulesLoadConf, renderVfioModprobeConf } from "../../providers/host/kernel-cmdline";
import { renderNvidiaInstall, renderNvidiaProbe, renderNvidiaUninstall } from "../../providers/host/nvidia.scripts";
import { renderVfioApply, renderVfioProbe } from "../../providers/host/vfio.scripts";
import {
  renderArcApply,
  renderArcProbe,
  renderDatasetCreate,
  renderDatasetDestroy,
  renderDatasetProbe,
  renderDatasetSet,
  renderPoolCreate,
  renderPoolDestroy,
  renderPoolProbe,
} from "../../providers/host/zfs.scripts";

const disks = ["/dev/disk/by-id/nvme-A", "/dev/disk/by-id/nvme-B"];
// Values with spaces and quotes prove the renderers quote what they interpolate.
const scripts: Record<string, string> = {
  datasetProbe: renderDatasetProbe("quickOS/vm disks", ["recordsize", "quota"]),
  datasetCreate: renderDatasetCreate("quickOS/vm-disks", { recordsize: "128K", "user:note": "it's mine" }),
  datasetCreateBare: renderDatasetCreate("quickOS/plain", {}),
  datasetSet: renderDatasetSet("quickOS/vm-disks", { quota: "1T" }),
  datasetDestroy: renderDatasetDestroy("quickOS/vm-disks"),
  poolProbe: renderPoolProbe("quickOS", disks),
  poolCreateMirror: renderPoolCreate({ pool: "quickOS", vdevType: "mirror", disks, poolOptions: { ashift: "12" }, filesystemProperties: { compression: "lz4" }, wipeDisksOnCreate: false }),
  poolCreateSingle: renderPoolCreate({ pool: "fastData", vdevType: "single", disks: disks.slice(0, 1), poolOptions: {}, filesystemProperties: {}, wipeDisksOnCreate: true }),
  poolDestroy: renderPoolDestroy("quickOS"),
  arcProbe: renderArcProbe(),
  arcApplyRoot: renderArcApply("options zfs zfs_arc_max=8589934592 zfs_arc_min=4294967296\n", { maxBytes: 8589934592, minBytes: 4294967296 }, true),
  arcApplyRemove: renderArcApply("", { maxBytes: 0, minBytes: 0 }, false),
  vfioProbe: renderVfioProbe(),
  vfioApplySystemdBoot: renderVfioApply({
    boot: "systemd-boot",
    files: { kernelCmdline: "root=ZFS=rpool/ROOT/pve-1 intel_iommu=on iommu=pt\n", vfio: renderVfioModprobeConf(["10de:2b85"]), modules: renderModulesLoadConf(["vfio"]) },
  }),
  vfioApplyGrubRemove: renderVfioApply({ boot: "grub", files: { grub: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', vfio: undefined, modules: undefined } }),
  nvidiaProbe: renderNvidiaProbe(),
  nvidiaInstall: renderNvidiaInstall({ version: "580.76.05", runfileUrl: "https://example.com/NVIDIA-Linux-x86_64-580.76.05.run", kernelModuleType: "open" }),
  nvidiaInstallChecked: renderNvidiaInstall({ version: "580.76.05", runfileUrl: "https://example.com/a.run", runfileSha256: "a".repeat(64), kernelModuleType: "proprietary" }),
  nvidiaUninstall: renderNvidiaUninstall(),
};

describe("rendered scripts", () => {
  it.each(Object.entries(scripts))("%s passes shellcheck and stops on the first error", (_name, script) => {
    expect(script.startsWith("#!/bin/bash\nset -euo pipefail\n")).toBe(true);
    const res = spawnSync("shellcheck", ["--shell=bash", "--severity=style", "-"], { input: script, encoding: "utf8" });
    expect(res.error).toBeUndefined();
    expect(res.stdout).toBe("");
    expect(res.status).toBe(0);
  });

  it("shellcheck would catch a bad script (the check is live)", () => {
    const res = spawnSync("shellcheck", ["--shell=bash", "-"], { input: "#!/bin/bash\nrm -rf $1/*\n", encoding: "utf8" });
    expect(res.status).not.toBe(0);
  });

  it("quotes interpolated values", () => {
    expect(scripts.datasetCreate).toContain(`zfs create -o recordsize=128K -o 'user:note=it'\\''s mine' quickOS/vm-disks`);
    expect(scripts.poolCreateMirror).toContain('zpool create "${force[@]}" -o ashift=12 -O compression=lz4 quickOS mirror /dev/disk/by-id/nvme-A /dev/disk/by-id/nvme-B');
  });
});
