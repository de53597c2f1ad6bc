import { beforeAll, describe, expect, it } from "vitest";
import { runProgram, type Program } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

describe("HostPrep hands the NVIDIA driver what the stack pins", () => {
  let program: Program;
  beforeAll(async () => {
    program = await runProgram(prodWithSecrets());
  }, 120_000);

  it("passes the runfile's sha256 and the kernel module flavour to the driver resource", () => {
    const inputs = program.byName("host-nvidia").inputs;
    expect(inputs.runfileSha256).toBe("849ef0ef8e842b9806b2cde9f11c1303d54f1a9a769467e4e5d961b2fe1182a7");
    expect(inputs.kernelModuleType).toBe("open");
  });
});
