/**
 * Units Phoenix renders for its core guests, checked against what the guest
 * can do: no option that needs a mount namespace in a container without
 * nesting (components/render/systemd-sandbox.ts), and every unit accepted by
 * systemd-analyze verify.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { GATEWAY_LAYOUT, renderGatewayCertFiles } from "../../components/core/nginx.render";
import { renderStepCaFiles, stepCaEndpoints, stepCliRelease } from "../../components/core/step-ca.render";
import { renderTraefikFiles } from "../../components/core/traefik.render";
import { canSandboxMounts, MOUNT_NAMESPACE_OPTIONS } from "../../components/render/systemd-sandbox";
import type { RenderedFile } from "../../components/render/files";
import type { StackConfig } from "../../stacks/schema";
import { prodConfig, tempDir } from "./helpers";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/** Every systemd unit the core renders, by the vmid of the guest it goes to. */
function coreUnits(config: StackConfig): { vmid: number; file: RenderedFile }[] {
  const byRole = (type: string) => config.guests.find((g) => g.role?.type === type)!.vmid;
  const ep = stepCaEndpoints(config);
  const sets: [number, RenderedFile[]][] = [
    [byRole("step-ca"), renderStepCaFiles(config)],
    [byRole("traefik"), renderTraefikFiles(config, { caRootPem: PEM, acmeDirectoryUrl: ep.acmeDirectoryUrl, dashboardPassword: "test-password" })],
    [byRole("nginx-gateway"), renderGatewayCertFiles(config, { caUrl: ep.caUrl, stepCli: stepCliRelease(config) }, GATEWAY_LAYOUT)],
  ];
  return sets.flatMap(([vmid, files]) => files.filter((f) => /\.(service|timer)$/.test(f.path)).map((file) => ({ vmid, file })));
}

const optionsIn = (unit: string) => MOUNT_NAMESPACE_OPTIONS.filter((o) => new RegExp(`^${o}=`, "m").test(unit));

describe("systemd units against their guest", () => {
  it("carry no mount-namespace option in an unprivileged container without nesting, and the sandbox where nesting allows it", () => {
    const config = prodConfig();
    const units = coreUnits(config);
    expect(units.length).toBeGreaterThanOrEqual(4);
    for (const { vmid, file } of units) {
      const guest = config.guests.find((g) => g.vmid === vmid)!;
      expect(canSandboxMounts(guest)).toBe(false);
      expect({ unit: file.path, options: optionsIn(file.content) }).toEqual({ unit: file.path, options: [] });
    }
    const nested = prodConfig();
    for (const g of nested.guests) if (g.kind === "lxc") g.features.nesting = true;
    const sandboxed = coreUnits(nested).filter((u) => /step-ca\.service|traefik\.service/.test(u.file.path));
    for (const { file } of sandboxed) expect(optionsIn(file.content)).toEqual(expect.arrayContaining(["ProtectSystem", "ProtectHome", "PrivateTmp", "ReadWritePaths"]));
  });

  it("pass systemd-analyze verify, with and without the sandbox", () => {
    const dir = tempDir("units");
    const nested = prodConfig();
    for (const g of nested.guests) if (g.kind === "lxc") g.features.nesting = true;
    let n = 0;
    for (const { file } of [...coreUnits(prodConfig()), ...coreUnits(nested)]) {
      if (!file.path.endsWith(".service")) continue;
      const caseDir = path.join(dir, String(n++));
      fs.mkdirSync(caseDir);
      const target = path.join(caseDir, path.basename(file.path));
      // The binaries are not installed here: verify checks that ExecStart's is executable.
      fs.writeFileSync(target, file.content.replace(/^ExecStart=\S+/m, "ExecStart=/bin/true"));
      const run = spawnSync("systemd-analyze", ["verify", "--man=no", target], { encoding: "utf8" });
      expect(run.status, `${file.path}: ${run.stdout}${run.stderr}`).toBe(0);
    }
    fs.rmSync(dir, { recursive: true });
  });
});
