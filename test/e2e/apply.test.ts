/**
 * The dev stack applied end to end: index.ts under the e2e engine; dynamic providers
 * deserialized from their state text and run against the sshd rig (whose pct shares /etc/pve
 * with the simulator); bridged resources translated into API calls the simulator validates;
 * Portainer, the gateway's health path and the image publisher answered by the lab network's
 * stand-ins. The scenarios run in order on one world, each starting from the state the one
 * before left.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEV_FILE } from "../stacks/fixtures";
import type { ApplyResult } from "./engine";
import { imageDigest } from "./lab-network";
import type { RawStack } from "../../stacks/load";
import { changed, edited, exported, expectNoOrphans, failuresOf, guestDestroys, loadProgram, stagedContents, withoutGuest } from "./support";
import { startWorld, type World } from "./world";
import { userDataSnippet } from "../../components/docker/docker-tier";
import { vmAgentScripts } from "../../components/observability/vm-agents.render";
import { implementation as vmInstall, vmScriptPath, vmScriptRecord, type VmInstallOutputs } from "../../providers/guest/vm-install";
import type { VmGuest as VmGuestConfig } from "../../stacks/schema";
import { plain } from "./engine";
import { configOf } from "../models/helpers";

const conf = (w: World, vmid: number) => w.rig.sandbox.read(`etc/pve/lxc/${vmid}.conf`);

/** The VM runs node_exporter and Alloy from the scripts VmInstall ran in it through its guest agent, and its user data holds neither. */
function expectVmAgents(w: World, vmid: number): void {
  const sb = w.rig.sandbox;
  const config = configOf(w.raw);
  const g = config.guests.find((x): x is VmGuestConfig => x.kind === "vm" && x.vmid === vmid)!;
  for (const s of vmAgentScripts(config, g)) {
    expect(statSync(join(sb.root, "vm", String(vmid), vmScriptPath(s.name))).mode & 0o777, `VM ${vmid} ${s.name}`).toBe(0o700);
    expect(sb.read(`vm/${vmid}${vmScriptRecord(s.name)}`), `VM ${vmid} ${s.name}`).toBe(`${createHash("sha256").update(s.script).digest("hex")}\n`);
  }
  for (const bin of ["usr/local/bin/node_exporter", "usr/local/bin/alloy"]) expect(sb.exists(`vm/${vmid}/${bin}`), `VM ${vmid} ${bin}`).toBe(true);
  expect(sb.read(`vm/${vmid}/etc/alloy/config.alloy`)).toContain(`guest = "${vmid}",`);
  expect(sb.state().vms?.[String(vmid)]?.systemdEnabled, `VM ${vmid}`).toEqual(expect.arrayContaining(["node-exporter.service", "alloy.service"]));
  expect(sb.read(userDataSnippet(config, vmid)!.path.slice(1)), `VM ${vmid}`).not.toMatch(/phoenix-(exporters|alloy)|node-exporter\.service/);
  expect(w.sim.state.guestFirewall.get(vmid)?.rules.at(-1), `VM ${vmid}`).toEqual(expect.objectContaining({ action: "ACCEPT", dport: "9100", source: "10.10.0.14" }));
}

/** Files below `root` (relative paths) whose content holds `text`. */
function filesHolding(root: string, text: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && readFileSync(join(e.parentPath, e.name), "utf8").includes(text))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

describe("dev stack, applied against the simulator, the sshd rig and the lab network", () => {
  let w: World;
  let first: ApplyResult;
  /** The stack as the last scenario left it: each change builds on the ones before. */
  let current: RawStack;
  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000 });
    current = w.raw;
    first = await w.apply();
  }, 120_000);
  afterAll(async () => w?.stop());

  it("fresh apply: every resource is created, none fails or is skipped", () => {
    expect(failuresOf(first)).toEqual([]);
    expect(first.skipped).toEqual([]);
    expect(first.operations.filter((o) => o.kind !== "create")).toEqual([]);
    const created = first.operations.map((o) => o.key);
    expect(created.length).toBe(new Set(created).size);
    expect([...first.registered].filter((k) => !k.startsWith("pulumi:providers:") && !created.includes(k))).toEqual([]);
  });

  it("fresh apply: pool, datasets, ARC and storages are in the declared shape", () => {
    const sb = w.rig.sandbox.state();
    expect(sb.pools.tank).toMatchObject({ vdevType: "single", disks: ["/dev/disk/by-id/nvme-SIM_NVME_0001"] });
    // The guests' own volumes (subvol-/basevol-, which PVE makes under tank/guests) aside.
    expect(Object.keys(sb.datasets).filter((d) => d.startsWith("tank/") && !/\/(sub|base)vol-/.test(d)).sort()).toEqual(["tank/guests", "tank/iso", "tank/models", "tank/observability", "tank/step-ca"]);
    expect(sb.datasets["tank/models"]).toMatchObject({ recordsize: "1M" });
    expect(w.rig.sandbox.read("etc/modprobe.d/zfs.conf")).toContain(`zfs_arc_max=${4 * 1024 ** 3}`);
    expect(w.sim.state.storages.get("tank-guests")?.config).toMatchObject({ pool: "tank/guests", content: "images,rootdir", nodes: w.node });
    expect(w.sim.state.storages.get("tank-iso")?.config).toMatchObject({ path: "/tank/iso", content: "iso,vztmpl,import,snippets" });
    // A dir storage on a dataset is a mount point (pve-storage DirPlugin.pm is_mountpoint); a zfspool storage has no such option.
    expect(w.sim.state.storages.get("tank-iso")?.config.is_mountpoint).toBe("yes");
    expect(w.sim.state.storages.get("tank-guests")?.config.is_mountpoint).toBeUndefined();
  });

  it("fresh apply: the firewall is in the declared shape, admin rules ahead of the node's own, every guest's enabled", () => {
    expect(w.sim.state.groups.get("web")?.rules).toEqual([{ type: "in", action: "ACCEPT", proto: "tcp", source: "10.10.0.0/24", dport: "80,443", enable: "1" }]);
    // The node's list inserts the admin group ahead of the node's own group (components/firewall.ts), in that order, with the
    // ops guest's scrape of the host's node_exporter and GPU exporter between them (stacks/firewall-rules.ts scrapeRules).
    const nodeRules = w.sim.state.nodes.get(w.node)?.firewall.rules ?? [];
    expect(nodeRules.map((r) => `${r.type} ${r.action}${r.dport ? ` ${r.dport} ${r.source}` : ""}`)).toEqual(["group phoenix-admin", "in ACCEPT 9100 10.10.0.14", "in ACCEPT 9835 10.10.0.14", "group phoenix-node"]);
    expect(w.sim.state.groups.get("phoenix-admin")?.rules.map((r) => `${r.action} ${r.dport} ${r.source}`)).toEqual(["ACCEPT 22 10.10.0.0/24", "ACCEPT 8006 10.10.0.0/24"]);
    // ipfilter: each VM's own address in its ipfilter-net0 set, filtering on (pve-firewall Firewall.pm ipfilter).
    for (const [vmid, ip] of [
      [1001, "10.10.0.111"],
      [1002, "10.10.0.102"],
    ] as const) {
      expect(w.sim.state.guestFw(vmid).ipsets.get("ipfilter-net0")?.entries.has(ip), `VM ${vmid}`).toBe(true);
      expect(w.sim.state.guestFirewall.get(vmid)?.options, `VM ${vmid}`).toMatchObject({ ipfilter: "1" });
    }
    expect(w.sim.state.firewall.options).toMatchObject({ enable: "1", policy_in: "DROP", policy_out: "ACCEPT" });
    for (const vmid of [101, 102, 103, 914, 1001, 1002]) expect(w.sim.state.guestFirewall.get(vmid)?.options, `guest ${vmid}`).toMatchObject({ enable: "1", policy_in: "DROP" });
    // Each scraped container's own rules come first, then the ACCEPTs for the ops guest's scrape (node_exporter, the gateway's exporter).
    expect(w.sim.state.guestFirewall.get(101)?.rules).toEqual([
      expect.objectContaining({ type: "group", action: "web" }),
      expect.objectContaining({ action: "ACCEPT", dport: "9100", source: "10.10.0.14" }),
      expect.objectContaining({ action: "ACCEPT", dport: "9113", source: "10.10.0.14" }),
    ]);
    // Ollama serves no /metrics: the ops guest probes its /api/version through blackbox_exporter (stacks/scrape.ts), on the API port.
    expect(w.sim.state.guestFirewall.get(914)?.rules).toEqual([
      expect.objectContaining({ action: "ACCEPT", dport: "11434", source: "10.10.0.12" }),
      expect.objectContaining({ action: "ACCEPT", dport: "9100", source: "10.10.0.14" }),
      expect.objectContaining({ action: "ACCEPT", dport: "11434", source: "10.10.0.14" }),
    ]);
    // The ops guest's own rules, then Loki's ACCEPT for the journal of every machine that runs Alloy, the host first (stacks/firewall-rules.ts lokiPushRules).
    expect(w.sim.state.guestFirewall.get(104)?.rules.map((r) => `${r.action} ${r.dport} ${r.source}`)).toEqual([
      "ACCEPT 3000,9090,9093,9100 10.10.0.0/24",
      "ACCEPT 3000 10.10.0.12",
      ...["10.10.0.2", "10.10.0.10", "10.10.0.12", "10.10.0.153", "10.10.0.155", "10.10.0.111", "10.10.0.102"].map((ip) => `ACCEPT 3100 ${ip}`),
    ]);
  });

  it("fresh apply: the templates are built and sealed, the VM template's disk imported from the checksummed image", () => {
    for (const vmid of [900, 901]) expect(w.sim.state.guests.get(vmid)?.config, `template ${vmid}`).toMatchObject({ template: "1" });
    const cuda = w.rig.sandbox.state().containers["901"];
    expect(cuda?.nvidiaUserspace).toBe("580.95.05");
    const vm = w.sim.state.guests.get(9000)!;
    expect(vm.config).toMatchObject({ template: "1", boot: "order=scsi0", scsihw: "virtio-scsi-pci" });
    expect(vm.config.scsi0).toMatch(/^tank-guests:base-9000-disk-0,/);
    const image = "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img";
    const download = w.sim.log.find("POST", "/nodes/{node}/storage/{storage}/download-url");
    expect(download.map((d) => [d.params.url, d.params.checksum, d.params["checksum-algorithm"]])).toEqual([[image, imageDigest(image), "sha256"]]);
  });

  it("fresh apply: every guest is a running linked clone in the declared shape", () => {
    const declared: Array<[number, number, number, string]> = [
      [103, 900, 512, "10.10.0.10/24"],
      [102, 900, 512, "10.10.0.12/24"],
      [101, 900, 512, "10.10.0.153/24"],
      [914, 901, 4096, "10.10.0.155/24"],
      [1001, 9000, 2048, "10.10.0.111/24"],
      [1002, 9000, 4096, "10.10.0.102/24"],
    ];
    for (const [vmid, template, memory, ip] of declared) {
      const g = w.sim.state.guests.get(vmid)!;
      expect(g.status, `guest ${vmid}`).toBe("running");
      expect(g.config.memory).toBe(String(memory));
      expect(g.kind === "lxc" ? g.config.net0 : g.config.ipconfig0).toContain(`ip=${ip}`);
      const disk = g.kind === "lxc" ? g.config.rootfs! : g.config.scsi0!;
      expect(disk, `guest ${vmid}`).toMatch(new RegExp(`base(vol)?-${template}-disk-0/`));
    }
    // Not bpg's default qemu64: the template and its clones see an x86-64-v2 CPU with AES.
    for (const vmid of [9000, 1001, 1002]) expect(w.sim.state.guests.get(vmid)?.config.cpu, `VM ${vmid}`).toBe("x86-64-v2-AES");
  });

  it("fresh apply: root-only settings are on the node, and the GPU container sees its GPU on the host's driver", () => {
    expect(conf(w, 914)).toMatch(/^dev0: \/dev\/nvidia0,/m);
    expect(conf(w, 914)).toMatch(/^mp0: \/tank\/models,mp=\/models$/m);
    expect(conf(w, 103)).toMatch(/^mp0: \/tank\/step-ca,mp=\/etc\/step-ca$/m);
    expect(w.rig.sandbox.calls("nvidia-smi").length).toBeGreaterThan(0);
  });

  it("fresh apply: installs ran in their running containers, CA first, then Traefik, then the gateway", async () => {
    // The ops guest's install (104) waits only for its own guest, so it runs anywhere among the core's.
    // Commands on the node itself (sanoid's install) have no vmid.
    // The exporters' installs (components/observability/exporters.ts) wait only for their own guest too: one in every other container.
    const exporters = w.commands.filter((c) => c.stdin.includes('manifest="$state_dir/phoenix-exporters.files"'));
    expect(exporters.map((c) => c.vmid).sort()).toEqual((w.raw.values.guests as Array<{ kind: string; vmid: number }>).filter((g) => g.kind === "lxc" && g.vmid !== 104).map((g) => g.vmid).sort());
    expect(w.commands.filter((c) => c.vmid === 104 && c.stdin.includes('manifest="$state_dir/phoenix-pve-exporter.files"'))).toHaveLength(1);
    // Alloy's log shipping likewise runs once in every guest, in any order.
    const anyOrder = (c: (typeof w.commands)[number]) => exporters.includes(c) || ["phoenix-pve-exporter", "alloy"].some((n) => c.stdin.includes(`manifest="$state_dir/${n}.files"`));
    const inGuests = w.commands.filter((c) => c.vmid !== undefined && !anyOrder(c));
    expect(inGuests.map((c) => c.vmid).filter((vmid) => vmid !== 104)).toEqual([103, 102, 101, 914, 914]);
    expect(inGuests.filter((c) => c.vmid === 104)).toHaveLength(1);
    expect(inGuests.every((c) => c.command === `pct exec ${c.vmid} -- bash -s`)).toBe(true);
    // The CA's root reached the outputs through the install's stdout.
    expect(await exported(first.exports, "caRootPem")).toBe(w.lab.caPem);
  });

  it("fresh apply: Portainer has its admin, the agent's environment and the qdrant stack with its secret", () => {
    const p = w.lab.portainer!.state;
    expect(p.users.map((u) => u.Username)).toEqual(["admin"]);
    expect(p.endpoints.map((e) => [e.Name, e.URL])).toEqual([["drphoenix", "tcp://10.10.0.102:9001"]]);
    expect(p.stacks.map((s) => [s.Name, s.EndpointId, s.Env])).toEqual([["qdrant", p.endpoints[0]!.Id, [{ name: "QDRANT__SERVICE__API_KEY", value: "e2e-qdrantApiKey" }]]]);
  });

  it("fresh apply: the agent secret is in the server's and the agent's root-only env file and containers, in no snippet, command or log", () => {
    const secret = String(w.raw.values.portainerAgentSecret);
    const vms = w.rig.sandbox.state().vms ?? {};
    for (const [vmid, dir] of [["1001", "portainer"], ["1002", "portainer-agent"]] as const) {
      expect(w.rig.sandbox.read(`vm/${vmid}/etc/phoenix/portainer.env`), `VM ${vmid}`).toBe(`AGENT_SECRET=${secret}\n`);
      expect(statSync(join(w.rig.sandbox.root, "vm", vmid, "etc/phoenix/portainer.env")).mode & 0o777).toBe(0o600);
      expect(vms[vmid]?.compose[`/opt/phoenix/${dir}/compose.yaml`], `VM ${vmid}`).toEqual({ starts: 1, env: { AGENT_SECRET: secret } });
    }
    // Everything else on the node (the user-data snippets included), every tool call, command and API request.
    expect(filesHolding(w.rig.sandbox.root, secret).filter((f) => !/^vm\/\d+\/etc\/phoenix\/portainer\.env$/.test(f))).toEqual([]);
    expect(JSON.stringify(w.commands)).not.toContain(secret);
    expect(JSON.stringify(w.sim.log.entries)).not.toContain(secret);
    // Registered after both ran with it: the agent accepted the server's signature.
    expect(w.lab.portainer!.state.endpoints.map((e) => e.Status)).toEqual([1]);
  });

  it("fresh apply: the backup job is in /cluster/backup; sanoid is installed, its timer enabled, its config written", async () => {
    const job = await w.api.client.get<Record<string, unknown>>("/cluster/backup/dev-nightly");
    expect(job).toMatchObject({ schedule: "03:00", storage: "local", node: w.node, all: 1, exclude: "102", mode: "snapshot", compress: "zstd", "prune-backups": { "keep-daily": 3, "keep-last": 2 } });
    const sb = w.rig.sandbox.state();
    expect(sb.aptInstalled).toContain("sanoid");
    expect(sb.systemdEnabled).toContain("sanoid.timer");
    expect(w.rig.sandbox.read("etc/sanoid/sanoid.conf")).toContain("[tank/step-ca]\n\tuse_template = phoenix_dev");
  });

  it("fresh apply: the host's exporters are installed on the node from their checked releases, their units and timer enabled", () => {
    const sb = w.rig.sandbox;
    for (const bin of ["usr/local/bin/node_exporter", "usr/local/bin/nvidia_gpu_exporter", "usr/local/lib/phoenix/textfile-metrics"]) expect(sb.exists(bin), bin).toBe(true);
    expect(sb.state().systemdEnabled).toEqual(expect.arrayContaining(["node-exporter.service", "gpu-exporter.service", "phoenix-textfile.timer"]));
    expect(sb.read("etc/systemd/system/node-exporter.service")).toContain("--collector.textfile.directory=/var/lib/phoenix/textfile");
    // Alloy ships the node's own journal, labelled as the host, from the release zip checked against its SHA256SUMS.
    expect(sb.exists("usr/local/bin/alloy")).toBe(true);
    expect(sb.state().systemdEnabled).toContain("alloy.service");
    expect(sb.read("etc/alloy/config.alloy")).toContain('guest = "host",');
  });

  it("fresh apply: each Portainer VM got node_exporter and Alloy through its guest agent, not its user data, and its firewall lets the ops guest scrape node_exporter", () => {
    for (const vmid of [1001, 1002]) expectVmAgents(w, vmid);
  });

  it("state: no orphans either way", async () => {
    await expectNoOrphans(w, expect);
  });

  it("second apply: zero mutating calls anywhere, zero provider updates, no command runs", async () => {
    w.sim.log.clear();
    w.rig.sandbox.clearCalls();
    const portainerBefore = w.lab.portainer!.mutating().length;
    const commandsBefore = w.commands.length;
    const second = await w.apply();
    expect(failuresOf(second)).toEqual([]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
    expect(changed(second)).toEqual([]);
    expect(w.rig.sandbox.calls().filter((c) => ["create", "set", "destroy", "start", "stop"].includes(c[1] ?? ""))).toEqual([]);
    expect(w.lab.portainer!.mutating().length).toBe(portainerBefore);
    expect(w.commands.length).toBe(commandsBefore);
  }, 60_000);

  it("a VM made before its agents existed gets them on the next apply, the VM untouched; the apply after that changes nothing", async () => {
    // What an older Phoenix left: no VmInstall in the state, and in the VM nothing the scripts install.
    const key = [...w.state.resources.keys()].find((k) => k.endsWith("::vm-agents-1002"))!;
    expect(key).toBeDefined();
    w.state.resources.delete(key);
    for (const d of ["usr/local/bin", "usr/local/sbin", "etc/systemd", "etc/alloy", "etc/passwd", "var/lib/phoenix", "var/lib/alloy"]) rmSync(join(w.rig.sandbox.root, "vm/1002", d), { recursive: true, force: true });
    w.rig.sandbox.write("vm/1002/usr/local/bin/.keep", "");
    w.rig.sandbox.update((s) => Object.assign(s.vms!["1002"]!, { aptInstalled: [], systemdEnabled: [] }));
    expect(w.rig.sandbox.exists("vm/1002/usr/local/bin/node_exporter")).toBe(false);
    w.sim.log.clear();
    const r = await w.apply();
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["create vm-agents-1002"]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([]);
    expectVmAgents(w, 1002);
    const again = await w.apply();
    expect(failuresOf(again)).toEqual([]);
    expect(changed(again)).toEqual([]);
  }, 60_000);

  it("refresh finds a VM's agent gone (its record removed) and the next apply runs its scripts again", async () => {
    const key = [...w.state.resources.keys()].find((k) => k.endsWith("::vm-agents-1001"))!;
    const entry = w.state.resources.get(key)!;
    const props = plain(entry.outputs) as VmInstallOutputs;
    expect((await vmInstall.read!(entry.id, props)).props).toMatchObject({ inSync: true });
    rmSync(join(w.rig.sandbox.root, "vm/1001", vmScriptRecord("alloy")));
    // `pulumi refresh`: the provider's read, stored as the resource's outputs.
    const read = await vmInstall.read!(entry.id, props);
    expect(read.props).toMatchObject({ inSync: false });
    entry.outputs = { ...entry.outputs, inSync: false };
    const r = await w.apply();
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update vm-agents-1001"]);
    // The next scenario's apply changes exactly its dataset: this one left nothing to do.
    expectVmAgents(w, 1001);
  }, 60_000);

  it("one change (a dataset quota): exactly that dataset is updated", async () => {
    w.sim.log.clear();
    current = edited(current, (v) => {
      const models = v.host.zfs.datasets.find((d) => d.name === "models")!;
      models.properties = { ...(models.properties as object), quota: "200G" };
    });
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update host-dataset-tank-models"]);
    expect(w.rig.sandbox.state().datasets["tank/models"]).toMatchObject({ recordsize: "1M", quota: "200G" });
    expect(w.sim.log.mutating()).toEqual([]);
  }, 60_000);

  it("one change (a guest's memory): exactly that guest is updated, in place", async () => {
    w.sim.log.clear();
    current = edited(current, (v) => {
      v.guests.find((g) => g.vmid === 101)!.memoryMiB = 1024;
    });
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r)).toEqual(["update ct-101"]);
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path}`)).toEqual([`PUT /api2/json/nodes/${w.node}/lxc/101/config`]);
    expect(w.sim.state.guests.get(101)?.config.memory).toBe("1024");
    expect(w.sim.state.guests.get(101)?.status).toBe("running");
  }, 60_000);

  it("one change (a container's nesting): LxcRootConfig sets it as root@pam, the token-side container sends no features", async () => {
    w.sim.log.clear();
    current = edited(current, (v) => {
      v.guests.find((g) => g.vmid === 102)!.features = { nesting: true };
    });
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    // Traefik's units may follow nesting (components/render/systemd-sandbox.ts): only the guest's own resources are asserted.
    // A change of root settings comes after a snapshot of the guest (changeSnapshots).
    expect(changed(r).filter((c) => c.includes("ct-102"))).toEqual(["update ct-102-root", "update ct-102-root-snapshot"]);
    expect(w.sim.log.mutating().filter((m) => m.params.features !== undefined)).toEqual([]);
    expect(conf(w, 102)).toMatch(/^features: nesting=1$/m);
  }, 60_000);

  it("one change (a new gateway route): the gateway re-installs, nothing else changes", async () => {
    w.sim.log.clear();
    const commandsBefore = w.commands.length;
    current = edited(current, (v) => {
      v.routes.push({ path: "/ollama/", service: "ollama", stripPrefix: true });
    });
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    // Traefik already routes the service by its host name; the path is the gateway's alone.
    // The re-run comes after a snapshot of the gateway (changeSnapshots; test/e2e/change-snapshots.test.ts).
    expect(changed(r)).toEqual(["replace gateway-install-run", "update gateway-install-snapshot"]);
    expect([...w.sim.state.guests.get(101)!.snapshots.keys()]).toEqual([expect.stringMatching(/^phoenix-install-[0-9a-f]{8}$/)]);
    const ran = w.commands.slice(commandsBefore);
    expect(ran.map((c) => c.vmid)).toEqual([101]);
    expect(stagedContents(ran[0]!.stdin).some((f) => f.includes("/ollama/"))).toBe(true);
    // The one call to PVE is that snapshot.
    expect(w.sim.log.mutating().map((m) => `${m.method} ${m.template}`)).toEqual(["POST /nodes/{node}/lxc/{vmid}/snapshot"]);
  }, 60_000);

  it("one change (the agent secret rotated): re-delivered into the server and the agent, both containers recreated with it, the environment still up", async () => {
    const rotated = "e2e-rotated-agent-secret-fedcba9876543210";
    current = { ...current, values: { ...current.values, portainerAgentSecret: rotated } };
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r).sort()).toEqual(["update vm-1001-portainer-secret", "update vm-1002-portainer-secret"]);
    const vms = w.rig.sandbox.state().vms ?? {};
    expect(vms["1001"]?.compose["/opt/phoenix/portainer/compose.yaml"]).toEqual({ starts: 2, env: { AGENT_SECRET: rotated } });
    expect(vms["1002"]?.compose["/opt/phoenix/portainer-agent/compose.yaml"]).toEqual({ starts: 2, env: { AGENT_SECRET: rotated } });
    expect(filesHolding(w.rig.sandbox.root, rotated).sort()).toEqual(["vm/1001/etc/phoenix/portainer.env", "vm/1002/etc/phoenix/portainer.env"]);
    // The old secret no longer opens the agent.
    const p = w.lab.portainer!;
    expect(p.state.endpoints.map((e) => p.signedRequestFrom(e.URL, { key: "intruder", secret: String(w.raw.values.portainerAgentSecret) }))).toEqual([false]);
    const again = await w.apply(current);
    expect(changed(again)).toEqual([]);
  }, 90_000);

  it("removal of a guest: refused while it is protected; once allowDestroy is applied it is deleted, its data volume (a dataset the stack no longer declares) is kept", async () => {
    w.sim.log.clear();
    const refused = await w.apply(edited(current, (v) => withoutGuest(v, 914)));
    expect(failuresOf(refused).join("\n")).toContain("CT 914 ollama was applied before and would be destroyed with its disk");
    expect(w.sim.state.guests.has(914)).toBe(true);
    expect(guestDestroys(w)).toEqual([]);
    current = edited(current, (v) => {
      v.guests.find((g) => g.vmid === 914)!.allowDestroy = true;
    });
    const lift = await w.apply(current);
    expect(failuresOf(lift)).toEqual([]);
    expect(w.sim.log.mutating()).toEqual([]);
    current = edited(current, (v) => {
      withoutGuest(v, 914);
      v.host.zfs.datasets = v.host.zfs.datasets.filter((d) => d.name !== "models");
    });
    const r = await w.apply(current);
    expect(failuresOf(r)).toEqual([]);
    expect(w.sim.state.guests.has(914)).toBe(false);
    expect(w.rig.sandbox.exists("etc/pve/lxc/914.conf")).toBe(false);
    expect(changed(r)).toEqual(expect.arrayContaining(["delete ct-914", "delete ct-914-disk", "delete ct-914-root", "delete ct-914-firewall", "delete ct-914-firewall-rules"]));
    // Forgotten, not destroyed: the dataset and the files on it stay on the host.
    expect(changed(r)).not.toContain("delete host-dataset-tank-models");
    expect(w.rig.sandbox.state().datasets["tank/models"]).toBeDefined();
    expect(w.rig.sandbox.calls("zfs").filter((c) => c[1] === "destroy")).toEqual([]);
    expect([...w.state.resources.keys()].some((k) => k.endsWith("host-dataset-tank-models"))).toBe(false);
    await expectNoOrphans(w, expect);
  }, 60_000);
});
