import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { KERNEL_MODULE_COMMAND, kernelModuleCheck } from "../../scripts/doctor/kernel-modules";

const V = "580.95.05";
const run = (stdout: string, code = 0) => ({ stdout, stderr: "", code });

describe("kernel-upgrade preflight (NVIDIA/open-gpu-kernel-modules#1143)", () => {
  it("fails, before any reboot, when an installed kernel has no built nvidia module", () => {
    const out = ["bootkernel 6.14.11-4-pve", "bootkernel 6.17.2-1-pve", `dkms nvidia/${V}, 6.14.11-4-pve, x86_64: installed`, `dkms nvidia/${V}: added`].join("\n");
    const res = kernelModuleCheck(V, run(out));
    expect(res.finding).toMatchObject({ service: "node", status: "fail", failure: "kernel-module-missing" });
    expect(res.diagnosis?.detail).toBe(`nvidia ${V} is not built for installed kernel(s) 6.17.2-1-pve: rebooting into one leaves the GPUs without a driver`);
    expect(res.diagnosis?.hints[0]).toContain(`dkms install -m nvidia -v ${V} -k <kernel>`);
  });

  it("is ok when every installed kernel has it, and only warns before the driver is installed", () => {
    const built = ["bootkernel 6.14.11-4-pve", `dkms nvidia/${V}, 6.14.11-4-pve, x86_64: installed`].join("\n");
    expect(kernelModuleCheck(V, run(built)).finding.status).toBe("ok");
    expect(kernelModuleCheck(V, run("bootkernel 6.14.11-4-pve")).finding.status).toBe("warn");
    // A module of another version does not count for the pinned one.
    expect(kernelModuleCheck(V, run(["bootkernel 6.14.11-4-pve", "dkms nvidia/580.76.05, 6.14.11-4-pve, x86_64: installed", `dkms nvidia/${V}: added`].join("\n"))).diagnosis).toBeDefined();
  });

  it("the command is valid shell", () => {
    expect(spawnSync("bash", ["-n", "-c", KERNEL_MODULE_COMMAND]).status).toBe(0);
    expect(spawnSync("shellcheck", ["--shell=bash", "-"], { input: KERNEL_MODULE_COMMAND, encoding: "utf8" }).stdout).toBe("");
  });
});
