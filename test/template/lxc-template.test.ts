import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNKNOWN } from "../../providers/common";
import { createPveClient } from "../../providers/pve";
import { BASE_PACKAGES, SSHD_HARDENING, SSHD_HARDENING_PATH } from "../../providers/template/layers";
import { archiveBuild, implementation, type LxcTemplateInputs, type LxcTemplateOutputs } from "../../providers/template/lxc-template";
import { startSimulator, type Simulator } from "../pve-sim/server";
import { startSshd, type SshRig } from "../rig/sshd";
import { mirrorContainers } from "./world";

const CATALOGUE = "ubuntu-24.04-standard_24.04-2_amd64.tar.zst";
const DRIVER = "580.95.05";

let sim: Simulator;
let rig: SshRig;
const built: Record<number, LxcTemplateOutputs> = {};
/** Moved on by a test whose archives must not share a second (vzdump names them by the time). */
let clockOffset = 0;

beforeAll(async () => {
  [sim, rig] = await Promise.all([startSimulator({ timing: { taskDurationMs: 0, allocationMs: 0 }, now: () => Date.now() + clockOffset }), startSshd()]);
  mirrorContainers(sim, rig.sandbox);
});
afterAll(async () => {
  await Promise.all([sim?.stop(), rig?.stop()]);
});

const api = () => ({ endpoint: sim.endpoint, tokenId: sim.token.id, tokenSecret: sim.token.secret, caPem: sim.caPem });

function declared(vmid: number, over: Partial<LxcTemplateInputs> = {}): Record<string, unknown> {
  return {
    api: api(),
    connection: rig.connection,
    node: "pve",
    vmid,
    name: `tpl-${vmid}`,
    source: { catalogue: CATALOGUE, storage: "local" },
    storage: "local-zfs",
    cores: 2,
    memoryMiB: 2048,
    swapMiB: 512,
    diskGiB: 8,
    unprivileged: true,
    features: { nesting: false, keyctl: false, fuse: false },
    tags: ["phoenix-template"],
    bridge: "vmbr0",
    layer: { layer: "base", timezone: "America/New_York", locale: "en_US.UTF-8", packages: [] },
    ...over,
  };
}

async function checked(raw: Record<string, unknown>): Promise<LxcTemplateInputs> {
  const res = await implementation.check({}, raw);
  expect(res.failures).toEqual([]);
  return res.inputs as LxcTemplateInputs;
}

const cuda = (source: LxcTemplateOutputs, over: Partial<LxcTemplateInputs> = {}) =>
  declared(901, {
    source: { clone: source.vmid, build: source.buildHash },
    diskGiB: 12,
    layer: { layer: "cuda", driverVersion: DRIVER, runfileUrl: `https://us.download.nvidia.com/XFree86/Linux-x86_64/${DRIVER}/NVIDIA-Linux-x86_64-${DRIVER}.run`, cuda: "12.8" },
    ...over,
  });

const ct = (vmid: number) => rig.sandbox.state().containers[String(vmid)]!;
const mutating = () => sim.log.mutating().map((e) => `${e.method} ${e.template}`);

describe("LxcTemplate against the simulator and the sshd rig", () => {
  it("builds the base template from the catalogue image: download, create, start, set up, stop, convert", async () => {
    const out = (await implementation.create(await checked(declared(900)))).outs as LxcTemplateOutputs;
    built[900] = out;
    const g = sim.state.guests.get(900)!;
    expect(g.config.template).toBe("1");
    expect(g.status).toBe("stopped");
    expect(g.config.description).toContain(`phoenix-build: ${out.buildHash}`);
    expect(out.buildHash).toMatch(/^[0-9a-f]{64}$/);
    expect(out.volume).toBe("local-zfs:basevol-900-disk-0");
    expect(mutating()).toEqual([
      "POST /nodes/{node}/aplinfo",
      "POST /nodes/{node}/lxc",
      "POST /nodes/{node}/lxc/{vmid}/status/start",
      "POST /nodes/{node}/lxc/{vmid}/status/shutdown",
      "POST /nodes/{node}/lxc/{vmid}/template",
    ]);
    // The setup ran inside the container, not on the node: the layer, then the seal.
    expect(rig.sandbox.calls("pct")).toEqual([
      ["pct", "exec", "900", "--", "bash", "-s"],
      ["pct", "exec", "900", "--", "bash", "-s"],
    ]);
    expect(ct(900).aptInstalled).toEqual(BASE_PACKAGES);
    expect(ct(900).locales).toEqual(["en_US.utf8"]);
    expect(ct(900).systemdEnabled).toEqual(["unattended-upgrades"]);
    expect(rig.sandbox.read(`ct/900${SSHD_HARDENING_PATH}`)).toBe(SSHD_HARDENING);
    expect(rig.sandbox.state().aptInstalled).toEqual([]);
    expect(rig.sandbox.exists(SSHD_HARDENING_PATH.slice(1))).toBe(false);
    // Sealed: each clone gets its own machine-id at first boot, and no package cache.
    expect(rig.sandbox.read("ct/900/etc/machine-id")).toBe("");
    expect(rig.sandbox.calls("apt-get").at(-1)?.at(-1)).toBe("clean");
  });

  it("re-running changes nothing: create adopts the built template, diff sees no change", async () => {
    sim.log.clear();
    rig.sandbox.clearCalls();
    const again = await implementation.create(await checked(declared(900)));
    expect(again.outs).toEqual(built[900]);
    expect((await implementation.diff("pve/900", built[900]!, await checked(declared(900)))).changes).toBe(false);
    expect(mutating()).toEqual([]);
    expect(rig.sandbox.calls("pct")).toEqual([]);
  });

  it("never downloads an image that is already on the storage", async () => {
    sim.log.clear();
    built[905] = (await implementation.create(await checked(declared(905)))).outs as LxcTemplateOutputs;
    expect(mutating()).not.toContain("POST /nodes/{node}/aplinfo");
    expect(sim.state.guests.get(905)!.config.template).toBe("1");
  });

  it("refuses a catalogue name the node does not offer, listing the near ones", async () => {
    const bad = await checked(declared(906, { source: { catalogue: "ubuntu-24.04-standard_24.04-9_amd64.tar.zst", storage: "local" } }));
    await expect(implementation.create(bad)).rejects.toThrow(/ubuntu-24\.04-standard_24\.04-9_amd64\.tar\.zst is not in node pve's catalogue.*it has .*ubuntu-24\.04-standard_24\.04-2_amd64\.tar\.zst/);
    expect(sim.state.guests.has(906)).toBe(false);
  });

  it("builds the CUDA template as a linked clone with the host driver's user-space and the pinned runtime", async () => {
    const out = (await implementation.create(await checked(cuda(built[900]!)))).outs as LxcTemplateOutputs;
    built[901] = out;
    expect(out.volume).toBe("local-zfs:basevol-900-disk-0/basevol-901-disk-0");
    expect(ct(901).nvidiaUserspace).toBe(DRIVER);
    expect(rig.sandbox.exists(`ct/901/usr/lib/x86_64-linux-gnu/libcuda.so.${DRIVER}`)).toBe(true);
    expect(ct(901).aptInstalled).toEqual([...BASE_PACKAGES, "cuda-keyring", "cuda-libraries-12-8"]);
    const installer = rig.sandbox.calls("nvidia-installer")[0]!;
    expect(installer).toEqual(expect.arrayContaining(["--silent", "--no-kernel-module", "--no-dkms"]));
    // The host's kernel state is untouched.
    expect(rig.sandbox.state().nvidia.installed).toBeUndefined();
    expect(sim.state.guests.get(901)!.config.rootfs).toMatch(/size=12G/);
  });

  it("a clone refuses a source that is not the build it was given", async () => {
    const stale = await checked(cuda({ ...built[900]!, buildHash: "0".repeat(64) }, { vmid: 907, name: "tpl-907" }));
    await expect(implementation.create(stale)).rejects.toThrow(/template 907: its source 900 is not the expected build/);
  });

  it("a changed script replaces a template without clones, deleting it first", async () => {
    const changed = await checked(declared(905, { layer: { layer: "base", timezone: "Etc/UTC", locale: "en_US.UTF-8", packages: [] } }));
    expect(changed.buildHash).not.toBe(built[905]!.buildHash);
    expect(await implementation.diff("pve/905", built[905]!, changed)).toEqual({ changes: true, replaces: ["buildHash"], deleteBeforeReplace: true });
    await implementation.delete("pve/905", built[905]!);
    const rebuilt = (await implementation.create(changed)).outs as LxcTemplateOutputs;
    expect(rebuilt.buildHash).toBe(changed.buildHash);
    expect(rig.sandbox.read("ct/905/etc/timezone")).toBe("Etc/UTC\n");
  });

  it("a rebuild archives the old build first (PVE cannot snapshot a template), keeping the last N of Phoenix's; a failed archive destroys nothing", async () => {
    const keepBuilds = { storage: "local", keep: 2 };
    const zones = ["Etc/UTC", "Europe/Paris", "Asia/Tokyo"];
    let current = (await implementation.create(await checked(declared(906, { keepBuilds })))).outs as LxcTemplateOutputs;
    // Someone else's backup of the vmid: never pruned.
    sim.state.storages.get("local")!.volumes.set("local:backup/vzdump-lxc-906-2020_01_01-00_00_00.tar.zst", { volid: "local:backup/vzdump-lxc-906-2020_01_01-00_00_00.tar.zst", storage: "local", content: "backup", format: "tar.zst", size: 1, ctime: 1, vmid: 906, notes: "before the upgrade" });
    const notes: string[] = [];
    for (const [n, timezone] of zones.entries()) {
      const next = await checked(declared(906, { keepBuilds, layer: { layer: "base", timezone, locale: "en_US.UTF-8", packages: [] } }));
      expect(await implementation.diff("pve/906", current, next)).toEqual({ changes: true, replaces: ["buildHash"], deleteBeforeReplace: true });
      clockOffset = (n + 1) * 60_000;
      notes.push(`phoenix-template tpl-906 build ${current.buildHash.slice(0, 12)}`);
      await implementation.delete("pve/906", current);
      current = (await implementation.create(next)).outs as LxcTemplateOutputs;
    }
    const dumps = sim.log.find("POST", "/nodes/{node}/vzdump").filter((e) => e.params.vmid === "906");
    // keep-all: vzdump must not apply the storage's retention to the vmid's backups, whoever's (VZDump.pm `remove`).
    expect(dumps.map((e) => e.params)).toEqual(notes.map((n) => ({ vmid: "906", storage: "local", mode: "stop", compress: "zstd", "notes-template": n, "prune-backups": "keep-all=1" })));
    const archives = [...sim.state.storages.get("local")!.volumes.values()].filter((v) => v.content === "backup" && v.vmid === 906);
    expect(archives.map((v) => v.notes)).toEqual(["before the upgrade", ...notes.slice(1)]);
    expect(archives.slice(1).every((v) => v.backup?.config.template === "1")).toBe(true);

    // A storage without backup content: vzdump refuses, and the template stays as it is.
    await expect(implementation.delete("pve/906", { ...current, keepBuilds: { storage: "local-zfs", keep: 2 } })).rejects.toThrow(/can't use storage 'local-zfs' for backups - wrong content type/);
    expect(sim.state.guests.get(906)?.config.template).toBe("1");
  });

  it("a changed template with guests cloned from it is refused at preview, naming them; frozen keeps it", async () => {
    const admin = createPveClient({ endpoint: sim.endpoint, auth: { kind: "token", tokenId: sim.token.id, secret: sim.token.secret }, tls: { caPem: sim.caPem } });
    await admin.cloneContainer("pve", 900, 101, { hostname: "nginx-gateway", full: false });
    admin.close();
    const changed = await checked(declared(900, { cores: 4 }));
    await expect(implementation.diff("pve/900", built[900]!, changed)).rejects.toThrow(
      /template 900 \(tpl-900\) changed .* but guests 101 are linked clones of it\..*new template with its own vmid.*keep template 900 frozen/,
    );
    const frozen = await checked(declared(900, { cores: 4, frozen: true }));
    expect(await implementation.diff("pve/900", built[900]!, frozen)).toEqual({ changes: true });
    const kept = (await implementation.update("pve/900", built[900]!, frozen)).outs as LxcTemplateOutputs;
    expect(kept.buildHash).toBe(built[900]!.buildHash);
    expect(await implementation.diff("pve/900", kept, frozen)).toEqual({ changes: false });
  });

  it("a template with linked clones is never destroyed", async () => {
    await expect(implementation.delete("pve/900", built[900]!)).rejects.toThrow(/refusing to destroy template 900 \(tpl-900\): containers 101, 901 are linked clones/);
    expect(sim.state.guests.get(900)?.config.template).toBe("1");
    expect(sim.log.find("DELETE", "/nodes/{node}/lxc/{vmid}").filter((e) => e.path.endsWith("/lxc/900"))).toEqual([]);
  });

  it("read reports the build on the node, and a template that is gone", async () => {
    const { props } = await implementation.read("pve/901", built[901]!);
    expect(props).toEqual(built[901]);
    await implementation.delete("pve/905", built[905]!);
    expect(await implementation.read("pve/905", built[905]!)).toEqual({ id: "", props: {} });
  });

  it("check computes the build hash from the script, and passes unknowns through", async () => {
    const a = await checked(cuda(built[900]!));
    const b = await checked(cuda(built[900]!, { layer: { ...(a.layer as object), cuda: "12.9" } as LxcTemplateInputs["layer"] }));
    expect(a.buildHash).toBe(built[901]!.buildHash);
    expect(b.buildHash).not.toBe(a.buildHash);
    const preview = await implementation.check({}, cuda(built[900]!, { layer: { layer: "cuda", driverVersion: UNKNOWN, runfileUrl: UNKNOWN, cuda: "12.8" } }));
    expect(preview.failures).toEqual([]);
    expect((preview.inputs as LxcTemplateInputs).buildHash).toBe(UNKNOWN);
    sim.log.clear();
    expect(await implementation.diff("pve/901", built[901]!, preview.inputs as LxcTemplateInputs)).toEqual({ changes: true, replaces: ["buildHash"], deleteBeforeReplace: true });
    expect(sim.log.entries).toEqual([]);
    const bad = await implementation.check({}, cuda(built[900]!, { layer: { layer: "cuda", driverVersion: DRIVER, runfileUrl: "https://x/y.run", cuda: "12" } }));
    expect(bad.failures).toEqual([{ property: "layer", reason: "LXC template 901: cuda layer: CUDA version 12 must be major.minor, e.g. 12.8" }]);
    const noToken = await implementation.check({}, declared(900, { api: { endpoint: sim.endpoint } as LxcTemplateInputs["api"] }));
    expect(noToken.failures).toEqual([{ property: "api", reason: "LXC template 900: api must be { endpoint, tokenId, tokenSecret, caPem?, insecure? }" }]);
  });
});

describe("archiveBuild, against a storage the simulator does not model (protected backups, a vzdump that left no archive)", () => {
  type Vol = { volid: string; content: string; format: string; size: number; ctime: number; vmid: number; notes?: string; protected?: number };
  const t = { node: "pve", vmid: 906, name: "tpl-906", buildHash: "a".repeat(64) } as LxcTemplateOutputs;
  const notes = `phoenix-template tpl-906 build ${"a".repeat(12)}`;
  const vol = (n: number, extra: Partial<Vol> = {}): Vol => ({ volid: `local:backup/vzdump-lxc-906-${n}.tar.zst`, content: "backup", format: "tar.zst", size: 1, ctime: n, vmid: 906, notes: "phoenix-template tpl-906 build 0123456789ab", ...extra });
  /** Lists the volumes; vzdump adds one (unless `writes` is false); DELETE of a protected one fails as pve-storage's does. */
  function fakeApi(volumes: Vol[], writes = true) {
    const calls: string[] = [];
    const api = {
      client: { get: async () => volumes.map((v) => ({ ...v })) },
      runTask: async (method: string, path: string) => {
        calls.push(`${method} ${path}`);
        if (path.endsWith("/vzdump") && writes) volumes.push(vol(100, { notes }));
        if (method === "DELETE") {
          const v = volumes.find((x) => path.endsWith(encodeURIComponent(x.volid)))!;
          if (v.protected) throw new Error("backup is protected");
          volumes.splice(volumes.indexOf(v), 1);
        }
      },
    };
    return { api: api as unknown as Parameters<typeof archiveBuild>[0], calls };
  }

  it("a protected archive is neither pruned nor counted", async () => {
    const volumes = [vol(1, { protected: 1 }), vol(2), vol(3)];
    const { api } = fakeApi(volumes);
    expect(await archiveBuild(api, t, { storage: "local", keep: 2 })).toEqual({ archived: vol(100).volid, pruned: [vol(2).volid] });
    expect(volumes.map((v) => v.ctime)).toEqual([1, 3, 100]);
  });

  it("an older archive of the same build is no archive of this one: nothing is pruned and the caller destroys nothing", async () => {
    const { api, calls } = fakeApi([vol(1, { notes }), vol(2)], false);
    await expect(archiveBuild(api, t, { storage: "local", keep: 1 })).rejects.toThrow(/no new archive with notes phoenix-template tpl-906 build a{12} is on local; the template is left as it is/);
    expect(calls.filter((c) => c.startsWith("DELETE"))).toEqual([]);
  });
});
