/**
 * The planning-HQ VM's user data (issue #25 item 1): the pinned NVIDIA driver, CUDA and the NVIDIA
 * container toolkit installed in the VM, then its declared Docker stack (the vector DB) started.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { composeHostParts, NVIDIA_INSTALLER } from "../../components/compose-host/user-data";
import type { VmGuest } from "../../stacks/schema";
import { ROOT } from "../stacks/fixtures";
import { loadStack } from "../support";

const config = loadStack("Pulumi.vrooli.yaml");
const hq = config.guests.find((g) => g.name === "plan-hq") as VmGuest;
const role = hq.role?.type === "compose-host" ? hq.role : undefined;
const parts = composeHostParts({ config, guest: hq, projectFile: (f) => fs.readFileSync(path.join(ROOT, f), "utf8") });

describe("plan-hq's user data", () => {
  it("installs the pinned driver, CUDA and container toolkit, and holds them", () => {
    const script = parts.files.find((f) => f.path === NVIDIA_INSTALLER)!.content;
    const n = role!.nvidia!;
    const install = script.split("\n").find((l) => / install -y -q /.test(l))!;
    expect(install).toContain(` nvidia-driver-${n.branch}-open=${n.driver} `);
    expect(install).toContain(` cuda-toolkit-${n.cuda.replace(".", "-")} `);
    // nvidia-container-toolkit depends on nvidia-container-toolkit-base (= its own version): both pinned, or apt
    // picks the newest -base and refuses the install.
    expect(install).toContain(` nvidia-container-toolkit=${n.containerToolkit}`);
    expect(install).toContain(` nvidia-container-toolkit-base=${n.containerToolkit}`);
    expect(script).toMatch(/apt-mark hold [^\n]*\bnvidia-container-toolkit nvidia-container-toolkit-base\b/);
    expect(script).toContain("nvidia-ctk runtime configure --runtime=docker");
  });

  it("runs the installer before starting the vector DB stack from the project's compose file", () => {
    expect(parts.run).toEqual([[NVIDIA_INSTALLER], ["docker", "compose", "--project-directory", "/opt/phoenix/stacks/vector-db", "--project-name", "vector-db", "up", "-d"]]);
    expect(parts.files.find((f) => f.path === "/opt/phoenix/stacks/vector-db/compose.yaml")?.content).toBe(fs.readFileSync(path.join(ROOT, "docker/vector-db/compose.yaml"), "utf8"));
  });
});
