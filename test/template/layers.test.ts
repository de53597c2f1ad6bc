import { shellcheck } from "../support";
import { readdirSync, readFileSync, statSync } from "fs";
import { join } from "path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runScriptChecked } from "../../providers/ssh";
import { CA_PATH, renderInContainer, renderLayer, renderSeal, type LayerSpec } from "../../providers/template/layers";
import { startSshd, type SshRig } from "../rig/sshd";

/** A lock in generate.sh's shape with made-up hashes: the repository ships no real one (see vllm-locks/generate.sh). */
const LOCK = readFileSync(join(__dirname, "fixtures", "vllm-0.11.0.lock.txt"), "utf8");
const CA = "-----BEGIN CERTIFICATE-----\nMIIBPhoenixTestCA\n-----END CERTIFICATE-----\n";
const LAYERS: LayerSpec[] = [
  { layer: "base", timezone: "America/New_York", locale: "en_US.UTF-8", packages: ["htop"], caPem: CA },
  { layer: "cuda", driverVersion: "580.95.05", runfileUrl: "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.95.05/NVIDIA-Linux-x86_64-580.95.05.run", cuda: "12.8" },
  { layer: "vllm", vllm: "0.11.0", requirements: LOCK },
];
const VMID = 950;

let rig: SshRig;
beforeAll(async () => {
  rig = await startSshd();
  rig.sandbox.write(`etc/pve/lxc/${VMID}.conf`, "arch: amd64\nhostname: layer-test\n");
  rig.sandbox.write(`run/pct/${VMID}.status`, "running\n");
});
afterAll(async () => {
  await rig?.stop();
});

/** Every file under the container's root with its content and mode, to compare runs. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(p);
      else out[p.slice(dir.length)] = st ? `${st.mode.toString(8)} ${readFileSync(p, "utf8")}` : "(dangling link)";
    }
  };
  walk(dir);
  return out;
}

const container = () => rig.sandbox.state().containers[String(VMID)];
const run = (spec: LayerSpec) => runScriptChecked(rig.connection, `${spec.layer} layer`, renderInContainer(VMID, renderLayer(spec)));

describe("template layer scripts", () => {
  it.each(LAYERS)("$layer passes shellcheck", (spec) => {
    expect(() => shellcheck(`layer ${spec.layer}`, renderLayer(spec))).not.toThrow();
  });

  it("the seal script passes shellcheck", () => {
    expect(() => shellcheck("seal", renderSeal())).not.toThrow();
  });

  it.each(LAYERS)("$layer changes the container the first time and nothing the second", async (spec) => {
    const first = await run(spec);
    expect(first.stdout).toMatch(/^changed /m);
    const files = snapshot(join(rig.sandbox.root, "ct", String(VMID)));
    const state = container();
    const second = await run(spec);
    expect(second.stdout).toBe("");
    expect(snapshot(join(rig.sandbox.root, "ct", String(VMID)))).toEqual(files);
    expect(container()).toEqual(state);
  });

  it("left the container as each layer declares", () => {
    const ct = container()!;
    expect(ct.locales).toEqual(["en_US.utf8"]);
    expect(ct.caUpdates).toBe(1);
    expect(rig.sandbox.read(`ct/${VMID}${CA_PATH}`)).toBe(CA);
    expect(rig.sandbox.read(`ct/${VMID}/etc/ssl/certs/ca-certificates.crt`)).toBe(CA);
    expect(ct.nvidiaUserspace).toBe("580.95.05");
    // gcc and Python.h: Triton compiles its launcher on the guest the first time vLLM runs a kernel.
    expect(ct.aptInstalled).toEqual(expect.arrayContaining(["htop", "cuda-keyring", "cuda-libraries-12-8", "python3-venv", "python3-dev", "gcc"]));
    // Exactly the lock's pins, installed through pip's hash-checking mode.
    expect(ct.venvs).toEqual({ "/opt/vllm": { torch: "2.8.0", triton: "3.4.0", vllm: "0.11.0" } });
    expect(rig.sandbox.read(`ct/${VMID}/opt/vllm-requirements/0.11.0.txt`)).toBe(LOCK);
    const pipCalls = rig.sandbox.state().calls.filter((c) => c[0] === "pip" && c[2] === "install");
    expect(pipCalls.map((c) => c.slice(3).filter((a) => a.startsWith("--")))).toEqual([["--no-cache-dir", "--require-hashes", "--no-deps"]]);
    expect(rig.sandbox.read(`ct/${VMID}/etc/apt/preferences.d/phoenix-no-nvidia-driver`)).toMatch(/^Package: nvidia-\* libnvidia-\*.*\nPin: version \*\nPin-Priority: -1$/m);
    // Nothing reached the node itself.
    expect(rig.sandbox.state().aptInstalled).toEqual([]);
    expect(rig.sandbox.exists("etc/timezone")).toBe(false);
  });

  it("a changed pin converges the container to the new version", async () => {
    const out = await run({ layer: "vllm", vllm: "0.11.1", requirements: LOCK.replace("vllm==0.11.0", "vllm==0.11.1") });
    expect(out.stdout).toBe("changed /opt/vllm-requirements/0.11.1.txt\nchanged vllm 0.11.1\n");
    expect(container()!.venvs["/opt/vllm"]).toMatchObject({ vllm: "0.11.1" });
    const driver = await run({ ...(LAYERS[1] as Extract<LayerSpec, { layer: "cuda" }>), driverVersion: "580.105.08", runfileUrl: "https://x/NVIDIA-Linux-x86_64-580.105.08.run" });
    expect(driver.stdout).toBe("changed nvidia user-space 580.105.08\n");
    expect(rig.sandbox.exists(`ct/${VMID}/usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05`)).toBe(false);
  });

  it("refuses to build vLLM without a hash lock, or from a lock with an unhashed or unpinned requirement", () => {
    expect(() => renderLayer({ layer: "vllm", vllm: "0.0.1" })).toThrow(
      "vllm layer: no hash-locked requirements for vLLM 0.0.1 (providers/template/vllm-locks/0.0.1.txt): run providers/template/vllm-locks/generate.sh 0.0.1",
    );
    expect(() => renderLayer({ layer: "vllm", vllm: "0.11.0", requirements: `${LOCK}numpy==2.2.6\n` })).toThrow("the lock for 0.11.0 has a requirement without an exact pin and sha256 hashes: numpy==2.2.6");
    expect(() => renderLayer({ layer: "vllm", vllm: "0.11.0", requirements: LOCK.replace("torch==2.8.0", "torch>=2.8.0") })).toThrow("without an exact pin");
    expect(() => renderLayer({ layer: "vllm", vllm: "0.12.0", requirements: LOCK })).toThrow("the lock for 0.12.0 does not pin vllm==0.12.0");
  });

  it("refuses bad pins at render time", () => {
    expect(() => renderLayer({ layer: "cuda", driverVersion: "580.95.05", runfileUrl: "https://x/y.run", cuda: "latest" })).toThrow(/CUDA version latest must be major\.minor/);
    expect(() => renderLayer({ layer: "base", timezone: "Etc/UTC", locale: "C", packages: [] })).toThrow(/locale C must be a UTF-8 locale/);
  });

  it("a script cannot run in a stopped container", async () => {
    rig.sandbox.write(`run/pct/${VMID}.status`, "stopped\n");
    await expect(run(LAYERS[2]!)).rejects.toThrow(/CT 950 not running/);
    rig.sandbox.write(`run/pct/${VMID}.status`, "running\n");
  });
});
