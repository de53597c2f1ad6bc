/**
 * The model-server renderers against the prod stack's four servers: golden
 * files, the pinned engines' option lists, systemd's own parser and
 * verifier, and shellcheck.
 */
import * as fs from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { assertListed, flagsOf } from "../../components/models/args";
import { healthChecks, renderHealthScript } from "../../components/models/health.render";
import { renderModelInstallScript, renderModelServerFiles } from "../../components/models/install.render";
import { LLAMACPP_OPTION_LISTS } from "../../stacks/options/llamacpp";
import { llamaServerArgv } from "../../components/models/llamacpp.render";
import { OLLAMA_ENV_LISTS } from "../../stacks/options/ollama";
import { ollamaBin, ollamaEnvironment, ollamaTagged } from "../../components/models/ollama.render";
import { modelServerSpec, modelServerSpecs, type ModelServerSpec, type VllmSpec } from "../../components/models/server";
import { execLine, renderServiceUnit, systemdQuote } from "../../components/models/systemd";
import { VLLM_OPTION_LISTS } from "../../stacks/options/vllm";
import { renderVllmFiles, vllmArgv, vllmEnvironment } from "../../components/models/vllm.render";
import { gpuEnvironment } from "../../components/models/gpu";
import { shQuote } from "../../components/render/files";
import { renderLayer } from "../../providers/template/layers";
import { validateStack, type RawStack } from "../../stacks/load";
import { gpuAllocation } from "../../stacks/plan";
import { expectGolden, prodConfig, prodRaw, prodSpec, shellcheck, systemdVerify, tempDir } from "./helpers";

const config = prodConfig();
const specs = modelServerSpecs(config);
const API_KEY = "phoenix-test-key-0123456789abcdef";

const temps: string[] = [];
const scratch = (prefix: string) => {
  const dir = tempDir(prefix);
  temps.push(dir);
  return dir;
};
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function asEngine<E extends ModelServerSpec["engine"]>(spec: ModelServerSpec, engine: E): Extract<ModelServerSpec, { engine: E }> {
  if (spec.engine !== engine) throw new Error(`guest ${spec.vmid} runs ${spec.engine}, not ${engine}`);
  return spec as Extract<ModelServerSpec, { engine: E }>;
}
const vllm = (vmid: number) => asEngine(prodSpec(vmid), "vllm");
const ollama = (vmid: number) => asEngine(prodSpec(vmid), "ollama");
const llamacpp = (vmid: number) => asEngine(prodSpec(vmid), "llamacpp");

/** A prod spec with other server settings: ones prod does not use, or ones the schema would refuse, as a caller bypassing it could hand over. */
function withServer<S extends ModelServerSpec>(spec: S, extra: Record<string, unknown>): S {
  return { ...spec, server: { ...spec.server, ...extra } } as S;
}

function rawWith(change: (guests: Record<string, unknown>[]) => void): RawStack {
  const raw = prodRaw();
  const values = structuredClone(raw.values) as Record<string, unknown>;
  change(values.guests as Record<string, unknown>[]);
  return { ...raw, values };
}

const serverOf = (guests: Record<string, unknown>[], vmid: number) => ((guests.find((g) => g.vmid === vmid)!.role as Record<string, unknown>).server as Record<string, unknown>);

describe("model server specs", () => {
  it("resolves the prod stack's four servers, their engine versions and service users", () => {
    expect(specs.map((s) => [s.vmid, s.engine, s.version, s.unit, s.user])).toEqual([
      [801, "vllm", "0.11.0", "vllm.service", { name: "vllm", home: "/var/lib/vllm", uid: 1000, gid: 1000 }],
      [802, "vllm", "0.11.0", "vllm.service", { name: "vllm", home: "/var/lib/vllm", uid: 1000, gid: 1000 }],
      [914, "ollama", "0.12.6", "ollama.service", { name: "ollama", home: "/var/lib/ollama", uid: 1000, gid: 1000 }],
      [917, "llamacpp", "b6500", "llama-server.service", { name: "llama", home: "/var/lib/llama", uid: 1000, gid: 1000 }],
    ]);
  });

  it("takes a server's own vLLM version over the template's", () => {
    // Validation refuses versions without an option list; precedence is the spec's own concern.
    const c = structuredClone(config);
    const chat = c.guests.find((g) => g.vmid === 802)!;
    if (chat.role?.type === "model-server" && chat.role.server.engine === "vllm") chat.role.server.version = "0.10.2";
    expect(modelServerSpec(c, 802).version).toBe("0.10.2");
  });

  it("refuses a vLLM server whose template chain pins no vLLM, naming the fix", () => {
    const c = structuredClone(config);
    for (const t of c.templates) if (t.kind === "lxc") delete t.versions.vllm;
    expect(() => modelServerSpec(c, 801)).toThrow("guest 801 (vllm-embed): no vllm version: set role.server.version or clone it from a template whose versions pin vllm");
  });

  it("builds llama.cpp against the CUDA version its template chain installs, and refuses a guest without one", () => {
    expect(llamacpp(917).cuda).toBe("12.8");
    const c = structuredClone(config);
    for (const t of c.templates) if (t.kind === "lxc") delete t.versions.cuda;
    expect(() => modelServerSpec(c, 917)).toThrow("guest 917 (llamacpp): llama.cpp is built with CUDA: clone it from a template whose versions pin cuda (layer cuda)");
  });

  it("runs a server without a declared volume owner as a system user", () => {
    const c = structuredClone(config);
    const guest = c.guests.find((g) => g.vmid === 914)!;
    if (guest.kind === "lxc") guest.mounts = [];
    expect(modelServerSpec(c, 914).user).toEqual({ name: "ollama", home: "/var/lib/ollama" });
    expect(renderModelInstallScript(modelServerSpec(c, 914))).toContain("groupadd --system ollama");
  });

  it("refuses a guest that is not a model server", () => {
    expect(() => modelServerSpec(config, 103)).toThrow("guest 103 is not a container with role model-server");
  });
});

describe("stack validation holds what the renderers rely on", () => {
  it("counts Ollama's declared VRAM per model, and llama.cpp's, against the GPU they share", () => {
    const gpu1 = gpuAllocation(config).find((a) => a.gpu === 1)!;
    expect(gpu1.users.map((u) => [u.guest, u.engine, u.memoryGiB])).toEqual([
      ["914 ollama", "ollama", 7],
      ["917 llamacpp", "llamacpp", 6],
    ]);
    expect(gpu1.totalGiB).toBe(13);
  });


  const issues = (raw: RawStack) => {
    const r = validateStack(raw, { requireSecrets: false });
    return r.ok === false ? r.issues : [];
  };

  it("rejects a tensorParallelSize other than the number of assigned GPUs", () => {
    expect(issues(rawWith((g) => (serverOf(g, 802).tensorParallelSize = 2)))).toContainEqual({
      path: "guests[4].role.server.tensorParallelSize",
      message: "CT 802 vllm-chat: tensorParallelSize 2 must equal the number of GPUs assigned (1)",
    });
  });

  it("rejects a model name served twice", () => {
    expect(issues(rawWith((g) => (serverOf(g, 917).servedModelName = "Qwen3-4B-FP8")))).toContainEqual({
      path: "guests[6].role.server",
      message: "CT 917 llamacpp: model 'Qwen3-4B-FP8' is already served by CT 802 vllm-chat: model names route requests, so each must be unique",
    });
  });
});

describe("golden files for the prod servers", () => {
  it("renders prod's vLLM template layer (920) as committed: compiler, Python headers, hash-locked wheels", () => {
    const t = config.templates.find((x) => x.vmid === 920)!;
    if (t.kind !== "lxc" || t.layer !== "vllm") throw new Error("prod's template 920 is no longer the vllm layer");
    // The repository ships no real lock (vllm-locks/generate.sh needs PyPI): the layer is shown with the test fixture's.
    const requirements = fs.readFileSync(`${__dirname}/../template/fixtures/vllm-0.11.0.lock.txt`, "utf8");
    expectGolden("920/vllm-layer.sh", renderLayer({ layer: "vllm", vllm: t.versions.vllm!, requirements }));
  });

  for (const vmid of [801, 802, 914, 917]) {
    it(`renders ${vmid}'s unit, install script and health script as committed`, () => {
      const spec = prodSpec(vmid);
      const files = renderModelServerFiles(spec);
      expect(files.map((f) => f.path)).toEqual([`/etc/systemd/system/${spec.unit}`]);
      expectGolden(`${vmid}/${spec.unit}`, files[0]!.content);
      expectGolden(`${vmid}/install.sh`, renderModelInstallScript(spec));
      expectGolden(`${vmid}/health.sh`, renderHealthScript(spec));
    });
  }
});

describe("command lines use only options the pinned engine accepts", () => {
  it("renders each vLLM setting as its vllm serve option, and the task as runner and convert", () => {
    expect(vllmArgv(vllm(801))).toEqual([
      "/opt/vllm/bin/vllm", "serve", "ibm-granite/granite-embedding-english-r2", "--host", "0.0.0.0",
      "--served-model-name", "granite-embedding-english-r2", "--max-model-len", "8192", "--dtype", "auto",
      "--gpu-memory-utilization", "0.2", "--tensor-parallel-size", "1", "--download-dir", "/models/hf", "--port", "8000",
      "--runner", "pooling", "--convert", "embed",
    ]);
    expect(vllmArgv(vllm(802)).slice(-2)).toEqual(["--runner", "generate"]);
  });

  it("splits 802's reasoning trace with deepseek_r1, a parser the pinned vLLM has, and refuses an unknown one", () => {
    expect(vllmArgv(vllm(802)).join(" ")).toContain("--reasoning-parser deepseek_r1");
    expect(vllmArgv(vllm(801))).not.toContain("--reasoning-parser");
    expect(() => vllmArgv(withServer(vllm(802), { reasoningParser: "qwen4" }))).toThrow("vLLM 0.11.0 does not accept qwen4 (see https://github.com/vllm-project/vllm/tree/v0.11.0/vllm/reasoning)");
  });

  it("turns FlashInfer's sampler off and pins each server to its own GPU in the unit", () => {
    expect(vllmEnvironment(vllm(802))).toEqual({ CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: "0", VLLM_USE_FLASHINFER_SAMPLER: "0" });
    expect(gpuEnvironment(llamacpp(917))).toEqual({ CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: "0" });
    expect(gpuEnvironment({ gpus: [{ pci: "0000:01:00.0" }, { pci: "0000:02:00.0" }] })).toEqual({ CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: "0,1" });
    expect(llamacpp(917).gpus).toEqual([{ pci: "0000:02:00.0", arch: "120" }]);
  });

  it("passes quantization and trust-remote-code when set, and leaves false flags out", () => {
    const argv = vllmArgv(withServer(vllm(802), { quantization: "fp8", trustRemoteCode: true }));
    expect(argv).toContain("--trust-remote-code");
    expect(argv.join(" ")).toContain("--quantization fp8");
    expect(vllmArgv(vllm(802))).not.toContain("--trust-remote-code");
  });

  it("renders llama.cpp's settings as llama-server options, --embedding only for embedding models", () => {
    expect(llamaServerArgv(llamacpp(917))).toEqual([
      "/opt/llama.cpp/b6500/bin/llama-server", "--model", "/models/gguf/gemma-3-4b-it-Q4_K_M.gguf", "--alias", "gemma-3-4b-it",
      "--ctx-size", "16384", "--n-gpu-layers", "999", "--port", "8080", "--host", "0.0.0.0",
    ]);
    expect(llamaServerArgv(withServer(llamacpp(917), { kind: "embedding", gpuLayers: -1 }))).toEqual(expect.arrayContaining(["--embedding", "-1"]));
  });

  for (const vmid of [801, 802, 917]) {
    it(`every option on ${vmid}'s command line is in the pinned version's list`, () => {
      const spec = prodSpec(vmid);
      const argv = spec.engine === "llamacpp" ? llamaServerArgv(spec) : vllmArgv(spec as VllmSpec);
      const list = (spec.engine === "llamacpp" ? LLAMACPP_OPTION_LISTS : VLLM_OPTION_LISTS).find((l) => l.version === spec.version)!;
      // Spelled out here rather than through flagsOf, so a bug there cannot hide a flag from this test.
      const flags = argv.filter((a) => a.startsWith("-") && !/^-\d/.test(a));
      expect(flags.length).toBeGreaterThan(4);
      for (const f of flags) expect(list.options.has(f), `${f} is not in ${list.engine} ${list.version}'s list`).toBe(true);
    });
  }

  it("sets only variables the pinned Ollama reads", () => {
    const env = ollamaEnvironment(ollama(914));
    expect(env).toEqual({
      OLLAMA_HOST: "0.0.0.0:11434", OLLAMA_MODELS: "/models/ollama", OLLAMA_KEEP_ALIVE: "-1", OLLAMA_MAX_LOADED_MODELS: "2",
      CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: "0",
    });
    const list = OLLAMA_ENV_LISTS.find((l) => l.version === "0.12.6")!;
    // CUDA_DEVICE_ORDER is the CUDA runtime's own variable; every other one is Ollama's.
    for (const name of Object.keys(env).filter((n) => n !== "CUDA_DEVICE_ORDER")) expect(list.options.has(name), name).toBe(true);
  });

  it("catches a typo'd vLLM setting forced past the schema", () => {
    expect(() => vllmArgv(withServer(vllm(802), { maxModelLenght: 4096 }))).toThrow(
      "vLLM 0.11.0 does not accept --max-model-lenght (see https://docs.vllm.ai/en/v0.11.0/configuration/engine_args.html); check the setting it comes from for a typo",
    );
  });

  it("catches a typo'd llama.cpp setting", () => {
    expect(() => llamaServerArgv(withServer(llamacpp(917), { contextSise: 4096 }))).toThrow("llama.cpp b6500 does not accept --context-sise");
  });

  it("catches a typo'd Ollama setting", () => {
    expect(() => ollamaEnvironment(withServer(ollama(914), { modelDir: "/srv" }))).toThrow("Ollama 0.12.6 does not accept OLLAMA_MODEL_DIR");
  });

  it("refuses an engine version it has no option list for", () => {
    expect(() => vllmArgv({ ...vllm(802), version: "0.12.0" })).toThrow(
      "vLLM 0.12.0: Phoenix has no list of the options this version accepts (it knows 0.11.0); pin one of those, or add the version's list beside the renderer",
    );
    expect(() => llamaServerArgv({ ...llamacpp(917), version: "b7000" })).toThrow("llama.cpp b7000: Phoenix has no list");
  });

  it("cites, for each list, a source at that very version", () => {
    for (const list of [...VLLM_OPTION_LISTS, ...LLAMACPP_OPTION_LISTS, ...OLLAMA_ENV_LISTS]) {
      expect(list.source, `${list.engine} ${list.version}`).toMatch(new RegExp(`[/v]${list.version.replace(/\./g, "\\.")}/`));
    }
  });

  it("reads options the way argv spells them", () => {
    expect(flagsOf(["/bin/x", "--a", "1", "-b=2", "-1", "pos"])).toEqual(["--a", "-b"]);
    expect(() => assertListed(["--a", "--c"], { engine: "X", version: "1", source: "s", options: new Set(["--a"]) })).toThrow("X 1 does not accept --c");
  });
});

describe("API key environment file", () => {
  const keyed = withServer(vllm(802), { requireApiKey: true });

  it("holds the key in a root-only file the unit reads, never on the command line", () => {
    const [unit, env] = renderVllmFiles(keyed, API_KEY);
    expect(env).toEqual({ path: "/etc/phoenix/vllm.env", content: `VLLM_API_KEY=${API_KEY}\n`, mode: "0600", owner: "root:root" });
    expect(unit!.content).toContain("EnvironmentFile=/etc/phoenix/vllm.env\n");
    expect(unit!.content).not.toContain(API_KEY);
    expect(renderModelInstallScript(keyed, { apiKey: API_KEY })).toContain(Buffer.from(env!.content).toString("base64"));
  });

  it("refuses to render a keyed server without its key, and a key systemd would mangle", () => {
    expect(() => renderVllmFiles(keyed)).toThrow("guest 802 (vllm-chat) requires an API key: pass phoenix:modelApiKey to the renderer");
    expect(() => renderVllmFiles(keyed, "short")).toThrow("phoenix:modelApiKey must be 16–512 characters");
    expect(() => renderVllmFiles(keyed, `${API_KEY} "x"`)).toThrow("phoenix:modelApiKey must be 16–512 characters");
  });

  it("leaves the env file out when no key is required", () => {
    expect(renderVllmFiles(vllm(802), API_KEY).map((f) => f.path)).toEqual(["/etc/systemd/system/vllm.service"]);
  });
});

describe("systemd units", () => {
  const units = (): [string, string][] => [
    ...specs.map((s): [string, string] => [`${s.vmid}`, renderModelServerFiles(s)[0]!.content]),
    ["802 with key", renderVllmFiles(withServer(vllm(802), { requireApiKey: true }), API_KEY)[0]!.content],
  ];

  it("pass systemd-analyze verify without a warning", () => {
    for (const [label, content] of units()) {
      const name = /^ExecStart=\S*\/([^/\s]+)/m.exec(content)![1]!;
      const verdict = systemdVerify(`${name}.service`, content, scratch("unit"));
      expect(verdict.warnings, `${label}: systemd-analyze verify said`).toBe("");
      expect(verdict.ok, label).toBe(true);
    }
  });

  it("parse back, through systemd itself, into exactly the argv and environment rendered", () => {
    for (const spec of specs) {
      const argv = spec.engine === "vllm" ? vllmArgv(spec) : spec.engine === "llamacpp" ? llamaServerArgv(spec) : [ollamaBin(spec.version), "serve"];
      const verdict = systemdVerify(spec.unit, renderModelServerFiles(spec)[0]!.content, scratch("parse"));
      expect(verdict.argv, `${spec.vmid}`).toEqual(argv);
      const env = spec.engine === "ollama" ? ollamaEnvironment(spec) : spec.engine === "vllm" ? vllmEnvironment(spec) : gpuEnvironment(spec);
      expect(verdict.environment, `${spec.vmid}`).toEqual(Object.entries(env).map(([k, v]) => `${k}=${v}`));
    }
  });

  it("quote arguments by systemd's rules: spaces, quotes, backslashes, % specifiers and $ variables survive", () => {
    const awkward = ["/opt/engine/bin/serve", "plain-arg_1.0:x/y", "two words", 'say "hi"', "back\\slash", "100%", "$HOME", "${X}", "it's", "a;b"];
    expect(systemdQuote("100%")).toBe('"100%%"');
    expect(systemdQuote("$HOME")).toBe('"$$HOME"');
    const unit = renderServiceUnit({ description: "quoting", user: "svc", group: "svc", argv: awkward, environment: { A: "b c", D: "50%" } });
    const verdict = systemdVerify("serve.service", unit, scratch("quote"));
    expect(verdict.warnings).toBe("");
    expect(verdict.argv).toEqual(awkward);
    expect(verdict.environment).toEqual(["A=b c", "D=50%"]);
  });

  it("refuse a relative binary and an invalid variable name", () => {
    expect(() => execLine(["vllm", "serve"])).toThrow("ExecStart needs an absolute binary path, got vllm");
    expect(() => renderServiceUnit({ description: "d", user: "u", group: "u", argv: ["/x"], environment: { "A-B": "1" } })).toThrow("environment variable name 'A-B' is not valid");
  });

  it("run as the dedicated user, restart on failure and start after the network", () => {
    for (const s of specs) {
      const unit = renderModelServerFiles(s)[0]!.content;
      for (const line of ["Type=simple", "Restart=on-failure", `User=${s.user.name}`, "After=network-online.target", "WantedBy=multi-user.target"]) {
        expect(unit, `${s.vmid}`).toContain(`${line}\n`);
      }
    }
  });
});

describe("health checks", () => {
  it("check each engine's endpoints for the served names", () => {
    expect(healthChecks(vllm(802))).toEqual([
      { path: "/health", lists: [] },
      { path: "/v1/models", lists: [{ field: "id", value: "Qwen3-4B-FP8" }] },
    ]);
    expect(healthChecks(ollama(914))).toEqual([
      { path: "/api/tags", lists: [{ field: "name", value: "llama3.1:8b" }, { field: "name", value: "nomic-embed-text:latest" }] },
    ]);
    expect(healthChecks(llamacpp(917))[0]).toEqual({ path: "/health", lists: [] });
  });

  it("name Ollama models the way /api/tags lists them", () => {
    expect(ollamaTagged("nomic-embed-text")).toBe("nomic-embed-text:latest");
    expect(ollamaTagged("llama3.1:8b")).toBe("llama3.1:8b");
    expect(ollamaTagged("registry.local:5000/team/model")).toBe("registry.local:5000/team/model:latest");
  });
});

describe("install scripts", () => {
  it("verify Ollama's archive against the SHA-256 pinned in the stack, never a checksum file", () => {
    const script = renderModelInstallScript(ollama(914));
    expect(script).toContain("expected=de82adce2ab79235115d511ff22fcb099ac53b67127870f12b80198c033ec0a1\n");
    expect(script).toContain('if ! echo "$expected  $dl/archive" | sha256sum -c --quiet -; then');
    expect(script).not.toContain("sha256sum.txt");
    expect(() => renderModelInstallScript(withServer(ollama(914), { sha256: "ABC" }))).toThrow("Ollama 0.12.6: the archive's sha256 must be 64 lower-case hex characters");
  });

  it("refuse a stack whose Ollama or llama.cpp server pins no archive hash or commit", () => {
    const r = validateStack(
      rawWith((g) => {
        delete serverOf(g, 914).sha256;
        delete serverOf(g, 917).commit;
      }),
      { requireSecrets: false },
    );
    const paths = r.ok === false ? r.issues.map((i) => i.path) : [];
    expect(paths).toEqual(expect.arrayContaining(["guests[5].role.server.sha256", "guests[6].role.server.commit"]));
  });

  it("pull only the declared Ollama models that are missing, and never remove any", () => {
    const script = renderModelInstallScript(ollama(914));
    expect(script).toContain(`for model in ${shQuote("llama3.1:8b")} ${shQuote("nomic-embed-text")}; do`);
    expect(script).toContain('show "$model" >/dev/null 2>&1; then /opt/ollama/0.12.6/bin/ollama pull "$model"; fi');
    expect(script).not.toMatch(/ollama (rm|delete)/);
  });

  it("build llama.cpp with CUDA and CUB from the pinned tag, check the commit after checkout, for the GPU's architecture", () => {
    const script = renderModelInstallScript(llamacpp(917));
    expect(script).toContain("git clone --quiet --depth 1 --branch b6500 https://github.com/ggml-org/llama.cpp.git");
    expect(script).toContain("-DGGML_CUDA=ON");
    expect(script).toContain("-DCMAKE_CUDA_COMPILER=/usr/local/cuda-12.8/bin/nvcc");
    const packages = ["git", "cmake", "build-essential", "cuda-nvcc-12-8", "cuda-cudart-dev-12-8", "libcublas-dev-12-8", "cuda-driver-dev-12-8", "cuda-cccl-12-8"];
    expect(script).toContain(`for p in ${packages.map(shQuote).join(" ")}; do`);
    // The RTX 5060 Ti is sm_120; never `native`, which depends on the GPUs visible while building.
    expect(script).toContain(`-DCMAKE_CUDA_ARCHITECTURES=${shQuote("120")}`);
    expect(script).not.toContain("native");
    const clone = script.indexOf("git clone");
    const pin = script.indexOf('if [ "$(git -C "$src" rev-parse HEAD)" != a7a98e0fffed794396b3fbad4dcdbbc184963645 ]; then');
    expect(pin).toBeGreaterThan(clone);
    expect(pin).toBeLessThan(script.indexOf("cmake -S"));
    expect(renderModelInstallScript(withServer(llamacpp(917), { cudaArchitectures: "86;120" }))).toContain(`-DCMAKE_CUDA_ARCHITECTURES=${shQuote("86;120")}`);
    expect(() => renderModelInstallScript(withServer(llamacpp(917), { commit: "abc" }))).toThrow("the commit must be a full 40-character hex id");
    expect(() => renderModelInstallScript(withServer(llamacpp(917), { cudaArchitectures: "$(reboot)" }))).toThrow("CUDA architectures '$(reboot)'");
    expect(() => renderModelInstallScript({ ...llamacpp(917), gpus: [{ pci: "0000:02:00.0" }] })).toThrow(
      "guest 917 (llamacpp): llama.cpp is built for its GPUs' architectures: declare host.gpus[].computeCapability or role.server.cudaArchitectures",
    );
  });

  it("check inside the guest, before anything is built, that nvidia-smi sees exactly the server's GPUs", () => {
    const script = renderModelInstallScript(llamacpp(917));
    expect(script).toContain(`if [ "$gpus_seen" != ${shQuote("0:02:00.0")} ]; then`);
    expect(script.indexOf("gpus_seen=")).toBeLessThan(script.indexOf("git clone"));
    expect(renderModelInstallScript(vllm(802))).toContain(`if [ "$gpus_seen" != ${shQuote("0:01:00.0")} ]; then`);
  });

  it("check the template's vLLM version instead of installing one", () => {
    const script = renderModelInstallScript(vllm(801));
    expect(script).toContain(`if [ "$have" != ${shQuote("0.11.0")} ]; then`);
    expect(script).not.toContain("pip install");
    // The only packages: curl, for the health script.
    expect(script.match(/^for p in .*; do$/gm)).toEqual([`for p in ${["curl", "ca-certificates"].map(shQuote).join(" ")}; do`]);
  });

  it("pass shellcheck, with the health scripts, for every server and variant", () => {
    const keyed = withServer(vllm(802), { requireApiKey: true });
    const scripts: [string, string][] = [
      ...specs.flatMap((s): [string, string][] => [
        [`${s.vmid} install`, renderModelInstallScript(s)],
        [`${s.vmid} health`, renderHealthScript(s)],
      ]),
      ["802 keyed install", renderModelInstallScript(keyed, { apiKey: API_KEY })],
      ["802 keyed health", renderHealthScript(keyed)],
      ["917 two archs install", renderModelInstallScript(withServer(llamacpp(917), { cudaArchitectures: "86;120" }))],
    ];
    for (const [name, script] of scripts) shellcheck(name, script);
  });
});
