/**
 * The compatibility check refuses GPU × driver × CUDA × engine combinations
 * known not to work, through the stack's own validation, with the config path
 * and the upstream evidence in the message; the prod stack passes it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderGpuViewCheck } from "../../components/models/gpu";
import { compareVersions, compatibilityIssues, computeCapability } from "../../stacks/compat";
import { validateStack, type RawStack } from "../../stacks/load";
import { prodConfig, prodRaw, standIn, tempDir } from "./helpers";

type Values = Record<string, unknown> & { guests: Record<string, unknown>[]; host: Record<string, unknown>; templates: Record<string, unknown>[] };

function prodWith(change: (v: Values) => void): RawStack {
  const raw = prodRaw();
  const values = structuredClone(raw.values) as Values;
  change(values);
  return { ...raw, values };
}

const server = (v: Values, vmid: number) => (v.guests.find((g) => g.vmid === vmid)!.role as { server: Record<string, unknown> }).server;

function issues(raw: RawStack) {
  const r = validateStack(raw, { requireSecrets: false });
  return r.ok === false ? r.issues : [];
}

describe("compatibility check", () => {
  it("passes the prod stack: RTX 5060 Ti (sm_120), driver 580.95.05, CUDA 12.8, vLLM 0.11.0, Ollama 0.12.6, llama.cpp b6500", () => {
    expect(compatibilityIssues(prodConfig())).toEqual([]);
  });

  it("knows the RTX 50 series as sm_120 and prefers a declared compute capability", () => {
    expect(computeCapability({ model: "NVIDIA GeForce RTX 5060 Ti" })).toBe("12.0");
    expect(computeCapability({ model: "NVIDIA GeForce RTX 4090" })).toBe("8.9");
    expect(computeCapability({ model: "NVIDIA GeForce RTX 5060 Ti", computeCapability: "8.6" })).toBe("8.6");
    expect(computeCapability({ model: "Tesla T4" })).toBeUndefined();
    expect(compareVersions("580.95.05", "570.26")).toBeGreaterThan(0);
    expect(compareVersions("0.9.10", "0.10.0")).toBeLessThan(0);
  });

  it("refuses vLLM 0.10.0 on sm_120: its wheels' PyTorch has no sm_120 kernels (vllm-project/vllm#21633)", () => {
    const found = issues(prodWith((v) => (server(v, 802).version = "0.10.0")));
    expect(found).toContainEqual({
      path: "guests[4].role.server.version",
      message: "CT 802 vllm-chat: vLLM 0.10.0's wheels carry a PyTorch without sm_120 kernels, so it cannot run on GPU 0 (NVIDIA GeForce RTX 5060 Ti, sm_120) (vllm-project/vllm#21633, #18995): pin 0.11.0",
    });
  });

  it("refuses an sm_120 GPU on a CUDA older than 12.8", () => {
    const found = issues(prodWith((v) => ((v.templates.find((t) => t.vmid === 901)!.versions as Record<string, string>).cuda = "12.6")));
    expect(found).toContainEqual({
      path: "guests[6].clone",
      message: 'CT 917 llamacpp: GPU 1 (NVIDIA GeForce RTX 5060 Ti, sm_120) needs CUDA 12.8 or newer, and its template chain pins CUDA 12.6: clone it from a template with versions.cuda "12.8" or newer',
    });
  });

  it("refuses an Ollama whose CUDA runners predate sm_120 (ollama/ollama#9426, 0.5.13)", () => {
    const found = issues(prodWith((v) => (server(v, 914).version = "0.5.12")));
    expect(found.filter((i) => i.path === "guests[5].role.server.version").map((i) => i.message)).toContainEqual(
      "CT 914 ollama: Ollama 0.5.12's CUDA runners are not built for sm_120 (added in 0.5.13, ollama/ollama#9426), so it would run GPU 1 (NVIDIA GeForce RTX 5060 Ti, sm_120) on the CPU: pin 0.5.13 or newer",
    );
  });

  it("refuses a llama.cpp build that leaves out the GPU's architecture", () => {
    expect(issues(prodWith((v) => (server(v, 917).cudaArchitectures = "86;89")))).toContainEqual({
      path: "guests[6].role.server.cudaArchitectures",
      message: "CT 917 llamacpp: llama.cpp would be built for 86;89, which leaves out GPU 1 (NVIDIA GeForce RTX 5060 Ti, sm_120): add 120",
    });
    expect(issues(prodWith((v) => (server(v, 917).cudaArchitectures = "86;120a-real"))).filter((i) => i.path.endsWith("cudaArchitectures"))).toEqual([]);
  });

  it("refuses a host driver too old for the guests' CUDA and for vLLM's CUDA 12.8 wheels", () => {
    const found = issues(prodWith((v) => ((v.host.nvidiaDriver as Record<string, string>).version = "565.57.01")));
    expect(found).toContainEqual({
      path: "templates[1].versions.cuda",
      message: "template 901: CUDA 12.8 needs NVIDIA driver 570.26 or newer, and its user-space is the host's 565.57.01: upgrade host.nvidiaDriver or pin an older CUDA",
    });
    expect(found).toContainEqual({
      path: "guests[4].role.server",
      message: "CT 802 vllm-chat: vLLM 0.11.0's wheels use CUDA 12.8, which needs NVIDIA driver 570.26 or newer; the host runs 565.57.01: upgrade host.nvidiaDriver",
    });
  });

  it("uses a declared compute capability: an sm_86 card lifts the sm_120 rules", () => {
    const found = issues(
      prodWith((v) => {
        for (const g of v.host.gpus as Record<string, unknown>[]) g.computeCapability = "8.6";
        server(v, 802).version = "0.10.0";
      }),
    );
    expect(found.filter((i) => i.message.includes("sm_120"))).toEqual([]);
  });
});

describe("the in-guest GPU view check", () => {
  const dir = tempDir("gpu-view");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function runCheck(nvidiaSmiOutput: string) {
    standIn(path.join(dir, "bin"), "nvidia-smi", `printf '%b' ${JSON.stringify(nvidiaSmiOutput)}\n`);
    const script = `set -euo pipefail\n${renderGpuViewCheck({ vmid: 917, gpus: [{ pci: "0000:02:00.0", arch: "120" }] })}\necho ok\n`;
    return spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${path.join(dir, "bin")}:${process.env.PATH}` } });
  }

  it("passes when nvidia-smi lists exactly the declared GPU (its 8-digit domain, upper-case hex)", () => {
    expect(runCheck("00000000:02:00.0\n")).toMatchObject({ status: 0, stdout: "ok\n" });
    expect(renderGpuViewCheck({ vmid: 1, gpus: [] })).toBe("");
  });

  it("fails when the guest sees another GPU too, or a different one", () => {
    const both = runCheck("00000000:01:00.0\n00000000:02:00.0\n");
    expect(both.status).toBe(1);
    expect(both.stderr).toBe("guest 917: nvidia-smi sees GPUs [0:01:00.0 0:02:00.0], expected exactly [0:02:00.0]: check the container's /dev/nvidia* entries\n");
    expect(runCheck("00000000:0A:00.0\n").stderr).toContain("sees GPUs [0:0a:00.0]");
  });
});
