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
 * cannot move one. A VM's is bpg's migration (`migrate: true`, translations.ts migrateVm).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RawStack } from "../../stacks/load";
import { INSTALLER_LOCAL_CONTENT } from "../../stacks/schema";
import { DEV_FILE } from "../stacks/fixtures";
import { changed, edited, failuresOf, guestDestroys, loadProgram } from "./support";
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
    expect(text).toMatch(new RegExp(`CT ${CT} .*cannot move a container.*Put node pve-dev back.*pct migrate ${CT} ${SECOND} --restart`));
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
});
