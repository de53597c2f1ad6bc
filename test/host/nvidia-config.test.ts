import { describe, expect, it } from "vitest";
import { issuesOf, prodWithSecrets, validate } from "../stacks/fixtures";

// The raw stack is untyped YAML: tests reach into it the way a user edits the file.
/* eslint-disable @typescript-eslint/no-explicit-any */
const withDriver = (change: (d: Record<string, any>) => void) => {
  const raw = prodWithSecrets();
  change((raw.values as any).host.nvidiaDriver);
  return issuesOf(validate(raw));
};

describe("host.nvidiaDriver", () => {
  it("prod pins the runfile's sha256 and the open kernel modules", () => {
    const result = validate(prodWithSecrets());
    if (result.ok !== true) throw new Error("prod did not validate");
    expect(result.config.host.nvidiaDriver).toEqual({ version: "580.95.05", runfileSha256: "849ef0ef8e842b9806b2cde9f11c1303d54f1a9a769467e4e5d961b2fe1182a7", kernelModules: "open" });
  });

  it("refuses a malformed sha256 and an unknown module flavour, at their paths", () => {
    expect(withDriver((d) => (d.runfileSha256 = "abc")).map((i) => i.path)).toEqual(["host.nvidiaDriver.runfileSha256"]);
    expect(withDriver((d) => (d.kernelModules = "closed")).map((i) => i.path)).toEqual(["host.nvidiaDriver.kernelModules"]);
  });

  it("refuses the proprietary modules for Blackwell (RTX 50) GPUs shared with containers", () => {
    const issues = withDriver((d) => (d.kernelModules = "proprietary"));
    expect(issues.map((i) => i.path)).toEqual(["host.gpus[0].model", "host.gpus[1].model"]);
    expect(issues[0]!.message).toContain("runs only on the open kernel modules: set host.nvidiaDriver.kernelModules to open");
  });
});
