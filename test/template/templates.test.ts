import * as proxmox from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { Templates } from "../../components/templates";
import { templateVersionIssues } from "../../stacks/validate";
import { NvidiaDriver } from "../../providers/host/nvidia-driver";
import { imageSha256, importFileName, pickSha256 } from "../../providers/template/image";
import { lxcTemplateProvider } from "../../providers/template/lxc-template";
import type { StackConfig, Template } from "../../stacks/schema";
import { prodWithSecrets, validate } from "../stacks/fixtures";

const LXC = "pulumi-nodejs:dynamic/phoenix/template:LxcTemplate";
const VM = "proxmoxve:index/vmLegacy:VmLegacy";
const FILE = "proxmoxve:download/file:File";
/** What the mocked host driver reports: deliberately not the config's pin, to show where the CUDA layer's version comes from. */
const REPORTED_DRIVER = "580.105.08";
const IMAGE_SHA = "b".repeat(64);

function prodConfig(): StackConfig {
  const loaded = validate(prodWithSecrets());
  if (loaded.ok !== true) throw new Error("the prod stack must validate");
  return loaded.config;
}

interface Seen {
  type: string;
  inputs: Record<string, unknown>;
  dependsOn: string[];
}
const seen = new Map<string, Seen>();
let templates: Templates;
let nvidia: NvidiaDriver;

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        const outputs = args.type.endsWith(":NvidiaDriver") ? { installedVersion: REPORTED_DRIVER } : args.type === LXC ? { buildHash: `hash-of-${args.name}` } : {};
        seen.set(args.name, { ...(seen.get(args.name) ?? { dependsOn: [] }), type: args.type, inputs: args.inputs as Record<string, unknown> });
        return { id: `${args.name}-id`, state: { ...args.inputs, ...outputs } };
      },
      call: (args) => args.inputs,
    },
    "phoenix",
    "test",
    false,
  );
  const config = prodConfig();
  // A pinned digest keeps this test off the network; the SHA256SUMS path is tested below.
  const vm = config.templates.find((t) => t.kind === "vm")!;
  if (vm.kind === "vm") vm.source = { url: vm.source.url, sha256: IMAGE_SHA, storage: vm.source.storage };
  const provider = new proxmox.Provider("pve", { endpoint: "https://10.0.0.13:8006", apiToken: "phoenix@pve!pulumi=secret" });
  const connection = { host: "10.0.0.13", username: "root", privateKey: "key", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFJFUExBQ0UtV0lUSC1USEUtTk9ERS1IT1NULUtFWQ" };
  nvidia = new NvidiaDriver("host-nvidia", { node: "pve", connection, version: config.host.nvidiaDriver!.version });
  const names = new WeakMap<pulumi.Resource, string>([[nvidia, "host-nvidia"]]);
  templates = new Templates(
    "templates",
    {
      templates: config.templates,
      host: config.host,
      node: "phoenix",
      api: { endpoint: "https://10.0.0.13:8006", tokenId: "phoenix@pve!pulumi", tokenSecret: "secret" },
      connections: { phoenix: connection },
      provider,
      nvidia,
      frozen: [900],
    },
    {
      transformations: [
        (args) => {
          names.set(args.resource, args.name);
          const deps = ([] as unknown[]).concat(args.opts.dependsOn ?? []) as pulumi.Resource[];
          // Names resolve after registration: the dependencies were built first.
          seen.set(args.name, { type: args.type, inputs: {}, dependsOn: deps.map((d) => names.get(d) ?? "?") });
          return undefined;
        },
      ],
    },
  );
  await new Promise<void>((r) => pulumi.all(Object.values(templates.byVmid).map((res) => (res as pulumi.CustomResource).id)).apply(() => r()));
  await new Promise((r) => setTimeout(r, 50));
});

const inputs = (name: string) => seen.get(name)!.inputs;

describe("Templates component", () => {
  it("builds every declared template and exposes each by vmid", () => {
    expect(Object.keys(templates.byVmid).map(Number)).toEqual([900, 901, 920, 9000]);
    expect(seen.get("ct-900-tpl-ubuntu-base")?.type).toBe(LXC);
    expect(seen.get("vm-9000-tpl-ubuntu-cloud")?.type).toBe(VM);
    expect(seen.get("vm-9000-tpl-ubuntu-cloud-image")?.type).toBe(FILE);
  });

  it("serializes the LxcTemplate provider without capturing modules or state", async () => {
    const { text } = await pulumi.runtime.serializeFunction(() => lxcTemplateProvider, { allowSecrets: true });
    expect(text).toContain('"template/lxc-template"');
    expect(text).not.toMatch(/runScriptChecked|renderLayer|createPveClient/);
    expect(text.length).toBeLessThan(5000);
    expect(String(inputs("ct-900-tpl-ubuntu-base").__provider)).toContain("loadImplementation");
  });

  it("orders base → cuda → vllm through the graph: each clone takes its source's build hash", () => {
    expect(seen.get("ct-901-tpl-ubuntu-cuda")?.dependsOn).toEqual(["ct-900-tpl-ubuntu-base"]);
    expect(seen.get("ct-920-tpl-vllm")?.dependsOn).toEqual(["ct-901-tpl-ubuntu-cuda"]);
    expect(inputs("ct-901-tpl-ubuntu-cuda").source).toEqual({ clone: 900, build: "hash-of-ct-900-tpl-ubuntu-base" });
    expect(inputs("ct-920-tpl-vllm").source).toEqual({ clone: 901, build: "hash-of-ct-901-tpl-ubuntu-cuda" });
    expect(inputs("ct-900-tpl-ubuntu-base").source).toEqual({ catalogue: "ubuntu-24.04-standard_24.04-2_amd64.tar.zst", storage: "fastData-iso" });
  });

  it("gives the CUDA layer the host driver's reported version as its user-space version", () => {
    expect(inputs("ct-901-tpl-ubuntu-cuda").layer).toEqual({
      layer: "cuda",
      driverVersion: REPORTED_DRIVER,
      runfileUrl: `https://us.download.nvidia.com/XFree86/Linux-x86_64/${REPORTED_DRIVER}/NVIDIA-Linux-x86_64-${REPORTED_DRIVER}.run`,
      cuda: "12.8",
    });
    expect(inputs("ct-920-tpl-vllm").layer).toEqual({ layer: "vllm", vllm: "0.11.0" });
    expect(inputs("ct-900-tpl-ubuntu-base").layer).toEqual({ layer: "base", timezone: "America/New_York", locale: "en_US.UTF-8", packages: [] });
  });

  it("passes the frozen list to the templates it names", () => {
    expect(inputs("ct-900-tpl-ubuntu-base").frozen).toBe(true);
    expect(inputs("ct-901-tpl-ubuntu-cuda").frozen).toBe(false);
  });

  it("makes VM 9000 a template from the verified cloud image: cloud-init drive, serial console, agent, virtio-scsi", () => {
    expect(inputs("vm-9000-tpl-ubuntu-cloud-image")).toMatchObject({
      contentType: "import",
      datastoreId: "fastData-iso",
      fileName: "ubuntu-24.04-server-cloudimg-amd64.qcow2",
      checksum: IMAGE_SHA,
      checksumAlgorithm: "sha256",
      overwrite: false,
    });
    const vm = inputs("vm-9000-tpl-ubuntu-cloud");
    expect(vm).toMatchObject({
      vmId: 9000,
      template: true,
      started: false,
      agent: { enabled: true },
      scsiHardware: "virtio-scsi-pci",
      serialDevices: [{ device: "socket" }],
      vga: { type: "serial0" },
      initialization: { datastoreId: "quickOS-vm-disks", interface: "ide2" },
    });
    expect(vm.disks).toEqual([{ interface: "scsi0", datastoreId: "quickOS-vm-disks", importFrom: "vm-9000-tpl-ubuntu-cloud-image-id", size: 32, discard: "on" }]);
    expect(seen.get("vm-9000-tpl-ubuntu-cloud")?.dependsOn).toEqual(["vm-9000-tpl-ubuntu-cloud-image"]);
  });
});

describe("template version rules", () => {
  const withTemplates = (edit: (ts: Template[]) => void) => {
    const config = prodConfig();
    edit(config.templates);
    return templateVersionIssues(config);
  };
  const cudaOf = (ts: Template[]) => ts.find((t) => t.vmid === 901) as Extract<Template, { kind: "lxc" }>;

  it("accept the prod stack", () => {
    expect(templateVersionIssues(prodConfig())).toEqual([]);
  });

  it("refuse a container NVIDIA pin that differs from the host's, and accept an equal one", () => {
    expect(withTemplates((ts) => (cudaOf(ts).versions.nvidia = "580.76.05"))).toEqual([
      {
        path: "templates[1].versions.nvidia",
        message:
          "template 901: versions.nvidia 580.76.05 differs from host.nvidiaDriver.version 580.95.05; container user-space must match the host's kernel module exactly: remove versions.nvidia or make it 580.95.05",
      },
    ]);
    expect(withTemplates((ts) => (cudaOf(ts).versions.nvidia = "580.95.05"))).toEqual([]);
  });

  it("refuse missing or foreign pins and a vLLM template without CUDA below it", () => {
    expect(withTemplates((ts) => (cudaOf(ts).versions = { torch: "2.8" })).map((i) => i.path)).toEqual(["templates[1].versions.torch", "templates[1].versions.cuda"]);
    expect(withTemplates((ts) => (cudaOf(ts).versions.cuda = "12"))[0]?.message).toMatch(/versions\.cuda is the CUDA runtime's major\.minor/);
    const vllm = withTemplates((ts) => {
      const t = ts.find((x) => x.vmid === 920)!;
      if (t.kind === "lxc") t.source = { clone: 900 };
    });
    expect(vllm).toEqual([{ path: "templates[2].source.clone", message: "template 920: vLLM needs the CUDA user-space: clone it from a cuda template" }]);
  });
});

describe("cloud image checksum", () => {
  const SUMS = `${"a".repeat(64)} *ubuntu-24.04-server-cloudimg-amd64.img\n${"c".repeat(64)} *ubuntu-24.04-server-cloudimg-arm64.img\n`;
  const url = "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img";

  it("picks the URL's file from SHA256SUMS, in text or binary mode", async () => {
    expect(pickSha256(SUMS, "ubuntu-24.04-server-cloudimg-arm64.img", "SUMS")).toBe("c".repeat(64));
    expect(pickSha256(`${"D".repeat(64)}  noble.img\n`, "noble.img", "SUMS")).toBe("d".repeat(64));
    const fetched: string[] = [];
    const sha = await imageSha256({ url, sha256SumsUrl: "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS" }, async (u) => (fetched.push(u), SUMS));
    expect(sha).toBe("a".repeat(64));
    expect(fetched).toEqual(["https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS"]);
  });

  it("uses a pinned digest without fetching anything", async () => {
    expect(await imageSha256({ url, sha256: "E".repeat(64) }, () => Promise.reject(new Error("no fetch expected")))).toBe("e".repeat(64));
  });

  it("refuses an image the sums do not list, or list twice differently", () => {
    expect(() => pickSha256(SUMS, "noble.img", "https://x/SHA256SUMS")).toThrow("https://x/SHA256SUMS lists no SHA-256 for noble.img");
    expect(() => pickSha256(`${"a".repeat(64)} *x.img\n${"b".repeat(64)} *x.img\n`, "x.img", "SUMS")).toThrow(/2 different SHA-256 digests/);
  });

  it("names the file for an import storage", () => {
    expect(importFileName(url)).toBe("ubuntu-24.04-server-cloudimg-amd64.qcow2");
    expect(importFileName("https://x/images/debian-12-generic-amd64.qcow2")).toBe("debian-12-generic-amd64.qcow2");
  });
});
