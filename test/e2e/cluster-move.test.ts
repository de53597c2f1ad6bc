/**
 * A guest moving between the nodes of a simulated cluster, and a node going offline during an
 * apply, on the dev stack with a second node and a shared (RBD) storage for its VMs.
 *
 * How to get a multi-node world (world.ts): every node the stack file lists in `proxmox.nodes`
 * (host.node first) is a node of the simulator, and `startWorld({ ..., nodes: ["n2"] })` adds
 * more; all are reached through the one sshd rig, whose sandbox is every node's shell and
 * /etc/pve (node-files.ts, vm-boot.ts), so a guest that migrates keeps its files. Extra nodes
 * are bare (no PCI devices, disks or pools); `w.nodes` lists them all, `w.node` is host.node.
 * A shared storage the stack declares in host.existingStorages is the user's, not Phoenix's:
 * add it to the simulator before the first apply (`w.sim.state.addStorage`).
 *
 * A container's node change is refused in preview (stacks/replacement.ts nodeMove): bpg v0.111.1
 * cannot move one; `npm run move` (scripts/move.ts) moves it with PVE's migrate API and rewrites
 * the state through the `pulumi` CLI, here a stand-in on PATH (pulumi-state.ts). A VM's is bpg's
 * migration (`migrate: true`, translations.ts migrateVm).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliDeps, runMove } from "../../scripts/move";
import { validateStack, type RawStack } from "../../stacks/load";
import { INSTALLER_LOCAL_CONTENT } from "../../stacks/schema";
import { DEV_FILE } from "../stacks/fixtures";
import { changed, edited, failuresOf, guestDestroys, loadProgram } from "./support";
import { fromDeployment, startPulumiStandIn, toDeployment, type Ciphertexts, type StandIn } from "./pulumi-state";
import { startWorld, type World } from "./world";

type G = Record<string, unknown>;
type Values = { guests: G[]; templates: G[]; host: { existingStorages?: G[] } };
const guestOf = (v: { guests: G[] }, vmid: number) => v.guests.find((g) => g.vmid === vmid)!;
const SHARED = "ceph-vm";
const SECOND = "pve-dev2";
const VM = 1002;
/** Traefik: a container on the shared storage, so only the destroy guard stands in its way. */
const CT = 102;

describe("dev stack on two nodes: migration, not replacement; an offline node", () => {
  let w: World;
  let current: RawStack;
  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 30_000, nodes: [SECOND] });
    // pveceph's RBD storage, on every node (pve-storage Plugin.pm: rbd is shared).
    w.sim.state.addStorage(SHARED, "rbd", { pool: "vm", content: "images,rootdir" }, 2000);
    current = edited(w.raw, (raw) => {
      const v = raw as unknown as Values;
      // Declaring storages replaces the default list (the installer's `local`, stacks/schema.ts): keep it.
      v.host.existingStorages = [...(v.host.existingStorages ?? [{ id: "local", content: [...INSTALLER_LOCAL_CONTENT], type: "dir" }]), { id: SHARED, content: ["images", "rootdir"], type: "rbd" }];
      // Every template and guest on it: linked clones that can migrate (validation keeps a clone on its template's storage).
      for (const t of v.templates) t.storage = SHARED;
      for (const g of v.guests) g.storage = SHARED;
    });
    const first = await w.apply(current);
    expect(failuresOf(first)).toEqual([]);
  }, 180_000);
  afterAll(async () => w?.stop());

  /** Applies `edit` on top of the current stack; keeps it as current only when `keep`. */
  const attempt = async (edit: (v: Values) => void, keep = true) => {
    w.sim.log.clear();
    w.rig.sandbox.clearCalls();
    const next = edited(current, edit as never);
    if (keep) current = next;
    return w.apply(next);
  };
  const vm = () => w.sim.state.guests.get(VM)!;
  /** What cloud-init wrote into the VM at its first boot (vm-boot.ts), with contents. */
  const vmFiles = () => {
    const root = path.join(w.rig.sandbox.root, "vm", String(VM));
    return fs.readdirSync(root, { recursive: true, encoding: "utf8" }).sort().map((f) => [f, fs.statSync(path.join(root, f)).isFile() ? fs.readFileSync(path.join(root, f), "utf8") : ""]);
  };

  it("moving a VM to the other node migrates it: one migration task, same disk and files, no create or destroy", async () => {
    expect(w.nodes).toEqual(["pve-dev", SECOND]);
    const disk = vm().config.scsi0;
    expect(disk).toMatch(new RegExp(`^${SHARED}:`));
    const files = vmFiles();
    expect(files.length).toBeGreaterThan(0);
    const r = await attempt((v) => void (guestOf(v, VM).node = SECOND));
    expect(failuresOf(r)).toEqual([]);
    const migrations = w.sim.log.mutating().filter((m) => /\/migrate$/.test(m.path));
    expect(migrations.map((m) => `${m.method} ${m.path} ${String(m.params.target)} online=${String(m.params.online)} with-local-disks=${String(m.params["with-local-disks"])}`)).toEqual([
      `POST /api2/json/nodes/pve-dev/qemu/${VM}/migrate ${SECOND} online=1 with-local-disks=1`,
    ]);
    expect([...w.sim.tasks.tasks.values()].filter((t) => /migrate/.test(t.type)).map((t) => `${t.type}:${t.id}:${t.exitstatus}`)).toEqual([`qmigrate:${VM}:OK`]);
    expect(vm().node).toBe(SECOND);
    expect(vm().status).toBe("running");
    expect(vm().config.scsi0).toBe(disk);
    expect(vmFiles()).toEqual(files);
    expect(changed(r)).toContain(`update vm-${VM}`);
    expect(changed(r).filter((c) => new RegExp(`^(replace|create|delete) vm-${VM}$`).test(c))).toEqual([]);
    expect(w.sim.log.mutating().filter((m) => /\/(clone|qemu)$/.test(m.path))).toEqual([]);
    expect(guestDestroys(w)).toEqual([]);
  }, 90_000);

  it("the next apply reads the VM on its new node and changes nothing of it", async () => {
    const r = await attempt(() => undefined);
    expect(failuresOf(r)).toEqual([]);
    expect(changed(r).filter((c) => c.includes(`vm-${VM}`))).toEqual([]);
    expect(w.sim.log.mutating()).toEqual([]);
  }, 90_000);

  it("a container's node change is refused before any call, with the procedure", async () => {
    const r = await attempt((v) => void (guestOf(v, CT).node = SECOND), false).catch((e: Error) => e);
    const text = r instanceof Error ? r.message : failuresOf(r).join("\n");
    expect(text).toMatch(new RegExp(`CT ${CT} .*cannot move a container.*Run \`npm run move -- <stack> ${CT} ${SECOND}\``));
    expect(w.sim.log.mutating()).toEqual([]);
    expect(w.sim.state.guests.get(CT)?.node).toBe("pve-dev");
  }, 90_000);

  it("a node offline during an apply: guests on the other node converge, the report names the unreachable node", async () => {
    w.sim.state.offline.add(SECOND);
    try {
      const r = await attempt((v) => {
        guestOf(v, CT).memoryMiB = 768;
        guestOf(v, VM).memoryMiB = 6144;
      });
      expect(w.sim.state.guests.get(CT)?.config.memory).toBe("768");
      expect(vm().config.memory).not.toBe("6144");
      const failures = failuresOf(r);
      expect(failures.length).toBeGreaterThan(0);
      expect(failures.every((f) => f.includes(`/nodes/${SECOND}/`) && f.includes("595"))).toBe(true);
      expect(failures.some((f) => f.includes(`vm-${VM}`))).toBe(true);
    } finally {
      w.sim.state.offline.delete(SECOND);
    }
  }, 120_000);
  describe("npm run move: the container by PVE's migration, then the state through `pulumi stack export`/`import`", () => {
    let pulumi: StandIn;
    let ciphertexts: Ciphertexts;
    /** Every secret value of the stack: none may reach the script's output. */
    const secrets = () => [...current.secretKeys].map((k) => String(current.values[k]));
    const configOf = (raw: RawStack) => {
      const r = validateStack(raw, { requireSecrets: false });
      if (r.ok !== true) throw new Error("the e2e stack does not validate");
      return r.config;
    };
    const move = async (...args: string[]) => {
      const out: string[] = [];
      const code = await runMove(args, { ...cliDeps(pulumi.dir), load: () => configOf(current), workDir: () => fs.mkdtempSync(path.join(pulumi.dir, "move-")), out: (l) => out.push(l) });
      return { code, out: out.join("\n") };
    };
    type Res = { urn: string; type: string; inputs: Record<string, unknown>; outputs: Record<string, unknown> };
    const served = () => JSON.parse(fs.readFileSync(pulumi.stateFile("dev"), "utf8")) as { deployment: { resources: Res[] } };
    const ctFiles = () => {
      const root = path.join(w.rig.sandbox.root, "ct", String(CT));
      return fs.readdirSync(root, { recursive: true, encoding: "utf8" }).sort().map((f) => [f, fs.statSync(path.join(root, f)).isFile() ? fs.readFileSync(path.join(root, f), "utf8") : ""]);
    };
    /** The `pulumi stack …` commands run since `since` calls. */
    const stackCalls = (since = 0) => pulumi.calls().slice(since).filter((c) => c[0] === "stack").map((c) => c.slice(0, 2).join(" "));
    beforeAll(() => {
      pulumi = startPulumiStandIn();
      const exported = toDeployment(w.state, "dev", secrets());
      ciphertexts = exported.ciphertexts;
      fs.writeFileSync(pulumi.stateFile("dev"), JSON.stringify(exported.deployment));
      fs.writeFileSync(path.join(pulumi.dir, "dev.config.json"), JSON.stringify({ "phoenix:proxmoxTokenSecret": w.sim.token.secret }));
    });
    afterAll(() => pulumi?.restore());

    it("refuses an unknown node, an offline target and a local linked clone with their config paths, before any change", async () => {
      w.sim.log.clear();
      const unknown = await move("dev", String(CT), "pve-nowhere");
      expect(unknown.code).toBe(1);
      expect(unknown.out).toContain(`refused: phoenix:proxmox.nodes: no node "pve-nowhere" in the stack; it has pve-dev, ${SECOND}`);
      expect(w.sim.log.entries).toEqual([]);
      expect(pulumi.calls()).toEqual([]);

      w.sim.state.offline.add(SECOND);
      try {
        const offline = await move("dev", "traefik", SECOND);
        expect(offline.code).toBe(1);
        expect(offline.out).toContain(`refused: phoenix:proxmox.nodes: node ${SECOND} is offline (GET /cluster/status)`);
      } finally {
        w.sim.state.offline.delete(SECOND);
      }

      // The gateway's root disk as a linked clone on the node's own local-zfs (the installer's zfspool).
      // Owned by another vmid, so that the rig's files (node-files.ts) do not take it for a new clone of 101.
      const gw = w.sim.state.guests.get(101)!;
      const rootfs = gw.config.rootfs!;
      const base = w.sim.state.convertToBase(w.sim.state.allocDisk("local-zfs", 9001, 1, "rootdir").volid);
      const clone = w.sim.state.linkClone(base, 9002);
      gw.config.rootfs = `${clone.volid},size=1G`;
      try {
        const local = await move("dev", "101", SECOND);
        expect(local.code).toBe(1);
        const at = configOf(current).guests.findIndex((g) => g.vmid === 101);
        expect(local.out).toContain(`refused: phoenix:guests[${at}].storage: CT 101 (nginx-gateway): its disk is on local-zfs, local to pve-dev, as a linked clone, which PVE refuses to migrate: back it up (vzdump 101) and restore it on ${SECOND} (pct restore 101 <archive> --storage <a storage of ${SECOND}>)`);
        expect(local.out).toContain(`(rootfs ${clone.volid} is a clone of basevol-9001-disk-0)`);
      } finally {
        gw.config.rootfs = rootfs;
        w.sim.state.freeVolume(clone.volid);
        w.sim.state.freeVolume(base);
      }
      expect(w.sim.log.mutating()).toEqual([]);
      expect(stackCalls()).toEqual([]);
      expect(w.sim.state.guests.get(CT)?.node).toBe("pve-dev");
    }, 30_000);

    it("without --yes shows the migration and the state's changes, and changes nothing", async () => {
      w.sim.log.clear();
      const calls = pulumi.calls().length;
      const shown = await move("dev", "traefik", SECOND);
      expect(shown.code, shown.out).toBe(0);
      expect(shown.out).toContain(`1. POST /nodes/pve-dev/lxc/${CT}/migrate target=${SECOND} restart=1 (restart mode`);
      expect(shown.out).toMatch(new RegExp(`ct-${CT} inputs.nodeName: pve-dev → ${SECOND}`));
      expect(shown.out).toMatch(new RegExp(`inputs.guests\\[\\d+\\].node: pve-dev → ${SECOND}`));
      expect(shown.out).toContain("Nothing done: run again with --yes");
      expect(w.sim.log.mutating()).toEqual([]);
      expect(stackCalls(calls)).toEqual(["stack export"]);
    }, 30_000);

    it("with --yes: one migration task in restart mode, the disk and files intact, no create or destroy; the state's nodeName is the new node", async () => {
      const ct = () => w.sim.state.guests.get(CT)!;
      const rootfs = ct().config.rootfs;
      const files = ctFiles();
      expect(files.length).toBeGreaterThan(0);
      const before = served();
      w.sim.log.clear();
      const calls = pulumi.calls().length;
      const moved = await move("dev", String(CT), SECOND, "--yes");
      expect(moved.code, moved.out).toBe(0);
      expect(w.sim.log.mutating().map((m) => `${m.method} ${m.path} ${String(m.params.target)} restart=${String(m.params.restart)}`)).toEqual([`POST /api2/json/nodes/pve-dev/lxc/${CT}/migrate ${SECOND} restart=1`]);
      expect([...w.sim.tasks.tasks.values()].filter((t) => t.type === "vzmigrate").map((t) => `${t.id}:${t.exitstatus}`)).toEqual([`${CT}:OK`]);
      expect([ct().node, ct().status, ct().config.rootfs]).toEqual([SECOND, "running", rootfs]);
      expect(ctFiles()).toEqual(files);
      // The second export: the state is imported only if nothing changed it during the migration (scripts/move.ts).
      expect(stackCalls(calls)).toEqual(["stack export", "stack export", "stack import"]);

      // The state: the container, its disk and firewall, and the guard's record now say SECOND; nothing else changed.
      const after = served();
      const node = (r: Res | undefined, side: "inputs" | "outputs") => r?.[side].nodeName ?? r?.[side].node;
      const ctState = after.deployment.resources.find((r) => r.urn.endsWith(`::ct-${CT}`));
      expect([node(ctState, "inputs"), node(ctState, "outputs")]).toEqual([SECOND, SECOND]);
      const ofCt = after.deployment.resources.filter((r) => [r.inputs.vmId, r.inputs.containerId, r.inputs.vmid].includes(CT) && node(r, "inputs") !== undefined);
      // The bridged container and firewall, and Phoenix's disk, root settings and pre-change snapshots (components/guest, components/firewall.ts).
      expect(ofCt.map((r) => r.urn.split("::").pop()).sort()).toEqual([`ct-${CT}`, `ct-${CT}-disk`, `ct-${CT}-firewall`, `ct-${CT}-firewall-rules`, `ct-${CT}-root`, `ct-${CT}-root-snapshot`, "traefik-install-snapshot"].sort());
      expect(ofCt.filter((r) => node(r, "inputs") !== SECOND || ![SECOND, undefined].includes(node(r, "outputs") as string | undefined)).map((r) => r.urn)).toEqual([]);
      const guard = after.deployment.resources.find((r) => r.type.endsWith(":DestroyGuard"))!;
      expect((guard.outputs.guests as Array<{ vmid: number; node: string }>).find((g) => g.vmid === CT)?.node).toBe(SECOND);
      const others = (d: typeof before) => JSON.stringify(d.deployment.resources.filter((r) => !ofCt.some((o) => o.urn === r.urn) && r !== guard && !r.type.endsWith(":DestroyGuard")));
      expect(others(after)).toBe(others(before));
      // Ciphertext went back as it came, and nothing secret or sealed was printed.
      for (const c of ciphertexts.keys()) expect(moved.out).not.toContain(c);
      for (const s of secrets()) expect(moved.out).not.toContain(s);
      expect(JSON.stringify(after).split("ciphertext").length).toBe(JSON.stringify(before).split("ciphertext").length);
    }, 60_000);

    it("once the stack declares the new node, the next apply changes nothing of the container", async () => {
      fromDeployment(w.state, served(), ciphertexts);
      const r = await attempt((v) => void (guestOf(v, CT).node = SECOND));
      expect(failuresOf(r)).toEqual([]);
      expect(changed(r).filter((c) => c.includes(`ct-${CT}`))).toEqual([]);
      expect(w.sim.log.mutating().filter((m) => m.path.includes(`/${CT}`))).toEqual([]);
      expect(guestDestroys(w)).toEqual([]);
      expect(w.sim.state.guests.get(CT)?.node).toBe(SECOND);
    }, 90_000);
  });
});
