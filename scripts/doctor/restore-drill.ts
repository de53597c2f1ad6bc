/**
 * The restore drill (`npm run doctor -- <stack> --restore-drill <guest>`): restores the guest's newest
 * backup into a scratch vmid with no network to the LAN, starts it, runs the doctor's own checks
 * inside it (unit, process, listening port of each of the guest's services), reports, and removes
 * the scratch guest whatever happened.
 *
 * PVE (API schema pve9.json; sources as cited in test/pve-sim/snapshots.ts):
 * - backups: GET /nodes/{node}/storage/{storage}/content?content=backup&vmid=, on every storage with
 *   `backup` content; the newest by ctime.
 * - scratch vmid: GET /cluster/nextid.
 * - restore: POST /nodes/{node}/lxc with restore=1, ostemplate=<volid> (pve-container@6.0.18
 *   API2/LXC.pm create_vm); POST /nodes/{node}/qemu with archive=<volid> (qemu-server@9.1.2
 *   API2/Qemu.pm create_vm). Keys given in the call override the backup's (LXC/Create.pm
 *   sanitize_and_merge_config keeps the backup's value only where none is given; qemu-server passes
 *   them as override_conf). So net0 is given without an address and with link_down=1 (the NIC is
 *   down, nothing reaches the LAN and no production IP appears twice), `unique` gives new MACs,
 *   onboot=0 keeps it from starting with the node, and the hostname says what it is. A container's
 *   `rootfs` is named so the restore is not in "storage only mode", which would also restore the
 *   backup's bind mounts onto the host's data (and is refused to a token); QEMU drives cannot be
 *   given beside `archive` and come from the backup on `storage`. Any other interface the backup had
 *   is deleted before the start.
 * - start, then stop and DELETE …?purge=1&destroy-unreferenced-disks=1 in a finally.
 */
import type { GuestKind, PveApi } from "../../providers/pve";
import type { Guest, StackConfig } from "../../stacks/schema";
import { findGuest } from "../stack-guest";
import type { GuestExec } from "./channels";
import type { Diagnosis, Finding } from "./diagnose";
import type { Check, GuestRef, PlannedCheck } from "./plan";
import { guestResults, guestScript } from "./probes";

export interface DrillOptions {
  /** The doctor's planned guest checks, to run inside the scratch copy of `guest`. */
  checks: Array<Extract<Check, { layer: "guest" }>>;
  /** Where commands run inside a guest (the doctor's own channel, through the node). */
  exec: GuestExec;
  log?: (line: string) => void;
}

export interface DrillResult {
  findings: Finding[];
  scratchVmid?: number;
  backup?: string;
}

/** The interface a restored guest gets: down, no address, on the guest's own bridge. */
export function isolatedNet(kind: GuestKind, bridge: string): string {
  return kind === "lxc" ? `name=eth0,bridge=${bridge},link_down=1` : `virtio,bridge=${bridge},link_down=1`;
}

export async function restoreDrill(config: StackConfig, guest: Guest, api: PveApi, opts: DrillOptions): Promise<DrillResult> {
  const log = opts.log ?? (() => undefined);
  const service = `restore drill ${guest.name}`;
  const kind: GuestKind = guest.kind === "vm" ? "qemu" : "lxc";
  const node = guest.node ?? config.host.node ?? config.proxmox.nodes[0]!.name;
  const findings: Finding[] = [];
  const add = (check: string, status: Finding["status"], detail: string) => findings.push({ service, layer: "guest", check, status, detail, ...(status === "fail" ? { failure: "probe-error" as const } : {}) });

  const storages = await api.nodeStorages(node, "backup");
  const backups = (await Promise.all(storages.map((s) => api.client.get<Array<{ volid: string; ctime: number; vmid?: number }>>(`/nodes/${encodeURIComponent(node)}/storage/${encodeURIComponent(s.storage)}/content`, { content: "backup", vmid: guest.vmid })))).flat();
  const newest = backups.filter((b) => b.vmid === guest.vmid).sort((a, b) => b.ctime - a.ctime)[0];
  if (!newest) {
    add("backup", "fail", `no backup of ${guest.vmid} on ${storages.map((s) => s.storage).join(", ") || "any storage with backup content"}`);
    return { findings };
  }
  add("backup", "ok", `newest: ${newest.volid} (${new Date(newest.ctime * 1000).toISOString()})`);
  const scratch = await api.nextId();
  const path = `/nodes/${encodeURIComponent(node)}/${kind}`;
  const bridge = guest.network.bridge ?? config.host.managementBridge;
  const params = {
    vmid: scratch,
    unique: true,
    onboot: false,
    net0: isolatedNet(kind, bridge),
    storage: guest.storage,
    ...(kind === "lxc" ? { restore: true, ostemplate: newest.volid, rootfs: `${guest.storage}:${guest.diskGiB}`, hostname: `drill-${guest.name}`.slice(0, 63) } : { archive: newest.volid, name: `drill-${guest.name}`.slice(0, 63) }),
  };
  let created = false;
  try {
    log(`restoring ${newest.volid} into ${kind === "lxc" ? "CT" : "VM"} ${scratch}`);
    created = true;
    await api.runTask("POST", path, params);
    const restored = (await api.guestConfig(node, kind, scratch)) as Record<string, unknown>;
    const others = Object.keys(restored).filter((k) => /^net\d+$/.test(k) && k !== "net0");
    if (others.length > 0) await api.updateGuestConfig(node, kind, scratch, { delete: others.join(",") });
    add("restore", "ok", `${newest.volid} → ${kind === "lxc" ? "CT" : "VM"} ${scratch}, net0 down on ${bridge}${others.length > 0 ? `, ${others.join(", ")} removed` : ""}`);
    await api.setGuestState(node, kind, scratch, "start");
    const status = (await api.guestStatus(node, kind, scratch)).status;
    if (status !== "running") {
      add("start", "fail", `CT/VM ${scratch} is ${status} after start`);
      return { findings, scratchVmid: scratch, backup: newest.volid };
    }
    add("start", "ok", "running");
    const ref: GuestRef = { vmid: scratch, kind: guest.kind === "vm" ? "vm" : "lxc", name: `drill-${guest.name}`, ip: "(isolated)", node };
    if (opts.checks.length === 0) {
      const res = await opts.exec.run(ref, "true");
      add("exec", res.code === 0 ? "ok" : "fail", res.code === 0 ? "runs commands (no service declared to check)" : `cannot run commands: ${res.stderr.trim()}`);
    }
    for (const c of opts.checks) {
      const check = { ...c, guest: ref };
      for (const r of guestResults(check, await opts.exec.run(ref, guestScript(check)))) add(r.check, r.status, r.detail);
    }
    return { findings, scratchVmid: scratch, backup: newest.volid };
  } catch (e) {
    add("restore", "fail", e instanceof Error ? e.message : String(e));
    return { findings, scratchVmid: scratch, backup: newest.volid };
  } finally {
    if (created) findings.push(await removeScratch(api, node, kind, scratch, service));
  }
}

/** Stops and destroys the scratch guest; its own finding says whether it is gone. */
async function removeScratch(api: PveApi, node: string, kind: GuestKind, vmid: number, service: string): Promise<Finding> {
  const done = (status: Finding["status"], detail: string): Finding => ({ service, layer: "guest", check: "cleanup", status, detail, ...(status === "fail" ? { failure: "probe-error" as const } : {}) });
  try {
    const exists = (await api.listGuests(node, kind)).some((g) => Number(g.vmid) === vmid);
    if (!exists) return done("ok", `${vmid} was not created`);
    await api.waitForUnlock(node, kind, vmid);
    if ((await api.guestStatus(node, kind, vmid)).status === "running") await api.setGuestState(node, kind, vmid, "stop");
    await api.deleteGuest(node, kind, vmid, { purge: true, "destroy-unreferenced-disks": true });
    return done("ok", `${vmid} removed`);
  } catch (e) {
    return done("fail", `${vmid} could not be removed, remove it by hand (${kind === "lxc" ? "pct" : "qm"} destroy ${vmid} --purge): ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * The drill as the doctor runs it: `which` names a guest of the stack, the checks are the doctor's
 * planned guest-layer checks of that guest; each failing step becomes a diagnosis. Closes `api`.
 */
export async function drillFindings(config: StackConfig, which: string, planned: readonly PlannedCheck[], channels: { guest: GuestExec }, api: PveApi): Promise<{ findings: Finding[]; diagnoses: Diagnosis[] }> {
  try {
    const { guest } = findGuest(config, which);
    const checks = planned.map((p) => p.check).filter((c): c is Extract<Check, { layer: "guest" }> => c.layer === "guest" && c.guest.vmid === guest.vmid);
    const { findings, scratchVmid } = await restoreDrill(config, guest, api, { checks, exec: channels.guest });
    const diagnoses = findings
      .filter((f) => f.status === "fail")
      .map((f): Diagnosis => ({
        service: f.service,
        layer: f.layer,
        check: f.check,
        detail: f.detail,
        failure: "probe-error",
        hints: f.check === "backup" ? [`back ${guest.name} up: vzdump ${guest.vmid} --storage <a storage with backup content>`] : [`the backup of ${guest.name} does not give a working guest${scratchVmid === undefined ? "" : ` (it was restored as ${scratchVmid})`}: see the task log, \`pvesh get /nodes/<node>/tasks\``],
      }));
    return { findings, diagnoses };
  } finally {
    api.close();
  }
}
