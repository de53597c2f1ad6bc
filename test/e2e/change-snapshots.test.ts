/**
 * A snapshot before an install re-runs, a rollback after it fails, and the restore drill, on the
 * dev stack end to end. Inside containers the world only parses install scripts (world.ts), so
 * here the gateway's install also does what an install does to the guest's root file system, in
 * the rig through `pct exec`: it writes nginx.conf, and the changed one fails half-way on purpose.
 * The simulator's snapshot, rollback, backup and restore tasks act on those files (node-files.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scriptHash } from "../../components/guest/install";
import { restoreDrill } from "../../scripts/doctor/restore-drill";
import { guestsViaNode, sshNode } from "../../scripts/doctor/channels";
import { runRollback } from "../../scripts/rollback";
import { runCommand } from "../../providers/ssh";
import { validateStack, type RawStack } from "../../stacks/load";
import type { StackConfig } from "../../stacks/schema";
import { DEV_FILE } from "../stacks/fixtures";
import { storageSecrets } from "../pve-sim/misc";
import { changed, edited, failuresOf, loadProgram } from "./support";
import { TYPES } from "./translations";
import { startWorld, type World } from "./world";

const GATEWAY = 101;
const CONF = `ct/${GATEWAY}/etc/nginx/nginx.conf`;

describe("a snapshot before an install re-runs, rollback, and the restore drill", () => {
  let w: World;
  let failInstall = false;
  const configOf = (raw: RawStack): StackConfig => {
    const r = validateStack(raw, { requireSecrets: false });
    if (r.ok !== true) throw new Error("the e2e stack does not validate");
    return r.config;
  };
  const snapshotsOf = (vmid: number) => [...(w.sim.state.guests.get(vmid)?.snapshots.keys() ?? [])];

  beforeAll(async () => {
    w = await startWorld({ stackFile: DEV_FILE, loadProgram, operationTimeoutMs: 90_000 });
    // The gateway's install, as it acts on the guest: the staged script (not its health check) writes nginx.conf.
    const base = w.translations[TYPES.command]!;
    const effect = async (i: Record<string, unknown>) => {
      const stdin = String(i.stdin ?? "");
      if (i.create !== `pct exec ${GATEWAY} -- bash -s` || !stdin.includes("PHOENIX_FILE")) return;
      const write = failInstall ? 'echo half-written > "$PHOENIX_ROOT/etc/nginx/nginx.conf"; exit 1' : `echo "installed ${scriptHash(stdin)}" > "$PHOENIX_ROOT/etc/nginx/nginx.conf"`;
      const res = await runCommand(w.rig.connection, `pct exec ${GATEWAY} -- bash -s`, { stdin: `mkdir -p "$PHOENIX_ROOT/etc/nginx"; ${write}` });
      if (res.code !== 0) throw new Error(`the gateway's install failed (exit ${String(res.code)})`);
    };
    w.translations[TYPES.command] = { ...base, create: async (i) => (await effect(i), base.create(i)), update: async (e, i) => (await effect(i), base.update(e, i)) };
    expect(failuresOf(await w.apply())).toEqual([]);
  }, 180_000);
  afterAll(async () => w?.stop());

  it("the first install takes no snapshot; a changed script is snapshotted first, fails, and rollback restores the guest's files", async () => {
    expect(snapshotsOf(GATEWAY)).toEqual([]);
    const installed = w.rig.sandbox.read(CONF);
    expect(installed).toMatch(/^installed [0-9a-f]{64}\n$/);

    failInstall = true;
    const changedStack = edited(w.raw, (v) => {
      const gw = v.guests.find((g) => g.vmid === GATEWAY)!;
      gw.role = { ...(gw.role as object), type: "nginx-gateway", maxBodyMiB: 128 };
    });
    const r = await w.apply(changedStack);
    expect(failuresOf(r)).toEqual([expect.stringMatching(/the gateway's install failed/)]);
    const [snap, ...more] = snapshotsOf(GATEWAY);
    expect(more).toEqual([]);
    expect(snap).toMatch(/^phoenix-install-[0-9a-f]{8}$/);
    // Taken before the install ran: it holds the first install's file; the guest holds the broken one.
    expect(w.rig.sandbox.read(`sim/snapshots/${GATEWAY}/${snap}/root/etc/nginx/nginx.conf`)).toBe(installed);
    expect(w.rig.sandbox.read(CONF)).toBe("half-written\n");
    // Only the gateway's snapshot was taken: no other guest's install re-ran.
    expect([...w.sim.state.guests.values()].filter((g) => g.snapshots.size > 0).map((g) => g.vmid)).toEqual([GATEWAY]);

    const out: string[] = [];
    const code = await runRollback(["dev", "nginx-gateway"], { load: () => configOf(w.raw), api: async () => w.api, out: (l) => out.push(l) }).catch((e: unknown) => {
      throw e;
    });
    expect(out.join("\n")).toMatch(new RegExp(`CT ${GATEWAY} \\(nginx-gateway\\) on \\S+ is running\\. Rolling back to ${snap}[\\s\\S]*1\\. stop CT ${GATEWAY}[\\s\\S]*3\\. start CT ${GATEWAY}`));
    expect(code, out.join("\n")).toBe(0);
    expect(w.rig.sandbox.read(CONF)).toBe(installed);
    expect(w.sim.state.guests.get(GATEWAY)).toMatchObject({ status: "running", parent: snap });
    const calls = w.sim.log.entries.filter((e) => e.method === "POST" && e.path.includes(`/lxc/${GATEWAY}/`)).map((e) => e.template).slice(-2);
    expect(calls).toEqual(["/nodes/{node}/lxc/{vmid}/status/stop", "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"]);
  }, 120_000);

  it("rollback refuses to cross a change of root settings unless --force", async () => {
    const g = w.sim.state.guests.get(GATEWAY)!;
    const snap = [...g.snapshots.values()][0]!;
    snap.config.features = "nesting=1,keyctl=1";
    const out: string[] = [];
    const deps = { load: () => configOf(w.raw), api: async () => w.api, out: (l: string) => out.push(l) };
    expect(await runRollback(["dev", String(GATEWAY)], deps)).toBe(1);
    expect(out.join("\n")).toMatch(/refused: the snapshot's root settings differ[\s\S]*features: .* → nesting=1,keyctl=1[\s\S]*--force/);
    expect(g.status).toBe("running");
    out.length = 0;
    expect(await runRollback(["dev", String(GATEWAY), snap.name, "--force"], deps)).toBe(0);
    expect(out.join("\n")).toMatch(/--force: rolling back across a change of root settings/);
    expect(g.config.features).toBe("nesting=1,keyctl=1");
  }, 60_000);

  it("the restore drill restores the newest backup into a scratch guest off the LAN, checks it inside, and removes it", async () => {
    const config = configOf(w.raw);
    const guest = config.guests.find((g) => g.vmid === GATEWAY)!;
    expect(await w.api.runTask("POST", `/nodes/${w.node}/vzdump`, { vmid: GATEWAY, storage: "local", mode: "snapshot", compress: "zstd" })).toMatchObject({ exitstatus: "OK" });
    const seen: Array<{ vmid: number; conf: string; net0?: string }> = [];
    const inner = guestsViaNode(sshNode(w.rig.connection));
    const exec = {
      run: async (ref: Parameters<typeof inner.run>[0], command: string) => {
        seen.push({ vmid: ref.vmid, conf: w.rig.sandbox.read(`ct/${ref.vmid}/etc/nginx/nginx.conf`), net0: w.sim.state.guests.get(ref.vmid)?.config.net0 });
        return inner.run(ref, command);
      },
    };
    const before = new Set(w.sim.state.guests.keys());
    const drill = await restoreDrill(config, guest, w.api, { checks: [], exec });
    expect(drill.findings.map((f) => `${f.check} ${f.status}`)).toEqual(["backup ok", "restore ok", "start ok", "exec ok", "cleanup ok"]);
    expect(seen).toEqual([{ vmid: drill.scratchVmid, conf: w.rig.sandbox.read(CONF), net0: expect.stringMatching(/^name=eth0,bridge=vmbr0,hwaddr=[0-9A-F:]{17},link_down=1,type=veth$/) }]);
    expect(seen[0]!.net0).not.toContain("ip=");
    expect(new Set(w.sim.state.guests.keys())).toEqual(before);
    expect(w.rig.sandbox.exists(`ct/${drill.scratchVmid}`)).toBe(false);
  }, 60_000);

  it("the CA bind-mounts its dataset, which PVE cannot snapshot: its changed install is snapshotted through ZFS on the node, and rollback goes back to it", async () => {
    const CA = 103;
    failInstall = false; // the gateway goes back to w.raw's role below, and installs again
    const sandboxState = () => w.rig.sandbox.state();
    const rootDs = Object.entries(sandboxState().datasets).find(([, p]) => p.mountpoint === `/ct/${CA}`)?.[0];
    expect(rootDs).toMatch(new RegExp(`^tank/guests/subvol-${CA}-disk-\\d+$`));
    w.rig.sandbox.write(`ct/${CA}/etc/marker`, "before\n");
    w.rig.sandbox.write("tank/step-ca/marker", "before\n");
    const changedStack = edited(w.raw, (v) => {
      const ca = v.guests.find((g) => g.vmid === CA)!;
      ca.role = { type: "step-ca", dnsNames: ["ca.dev.phoenix.test", "ca2.dev.phoenix.test"] };
    });
    expect(failuresOf(await w.apply(changedStack))).toEqual([]);
    // The ops guest's install names the CA too, so it re-runs after its own snapshot: only the CA's are asserted.
    const snaps = (sandboxState().snapshots ?? []).filter((x) => /@phoenix-install-[0-9a-f]{8}$/.test(x) && (x.startsWith(`${rootDs}@`) || x.startsWith("tank/step-ca@")));
    const name = snaps[0]!.split("@")[1]!;
    expect(snaps).toEqual([`${rootDs}@${name}`, `tank/step-ca@${name}`]);
    expect(w.sim.state.guests.get(CA)!.snapshots.size).toBe(0);

    w.rig.sandbox.write(`ct/${CA}/etc/marker`, "after\n");
    w.rig.sandbox.write("tank/step-ca/marker", "after\n");
    const out: string[] = [];
    const deps = { load: () => configOf(changedStack), api: async () => w.api, node: async () => (command: string) => runCommand(w.rig.connection, command), out: (l: string) => out.push(l) };
    expect(await runRollback(["dev", "step-ca"], deps), out.join("\n")).toBe(0);
    expect(out.join("\n")).toContain(`zfs rollback ${rootDs}@${name}, tank/step-ca@${name}`);
    expect(w.rig.sandbox.read(`ct/${CA}/etc/marker`)).toBe("before\n");
    expect(w.rig.sandbox.read("tank/step-ca/marker")).toBe("before\n");
    expect(w.sim.state.guests.get(CA)!.status).toBe("running");
  }, 120_000);

  it("a Proxmox Backup Server storage and a job targeting it apply as bpg makes the calls, the password is never read back, and a second apply changes nothing", async () => {
    failInstall = false;
    const password = "pbs-e2e-password-0f3a";
    const edit = edited(w.raw, (v) => {
      const backup = v.backup as { pbs?: unknown[]; jobs: unknown[] };
      backup.pbs = [{ id: "pbs-offsite", server: "10.0.0.50", datastore: "phoenix", username: "backup@pbs", fingerprint: Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, "0").slice(-2)).join(":"), passwordSecretKey: "pbsPassword", namespace: "dev" }];
      backup.jobs.push({ id: "dev-offsite", schedule: "sun 04:00", storage: "pbs-offsite", guests: { vmids: [GATEWAY] }, retention: { weekly: 4 } });
      v.pbsPassword = password;
    });
    const withPbs = { values: edit.values, secretKeys: new Set([...edit.secretKeys, "pbsPassword"]) };
    const first = await w.apply(withPbs);
    expect(failuresOf(first)).toEqual([]);
    expect(changed(first).filter((c) => /pbs|dev-offsite/.test(c))).toEqual([expect.stringMatching(/^create .*dev-offsite/), expect.stringMatching(/^create .*pbs-offsite/)]);
    const created = w.sim.log.entries.filter((e) => e.method === "POST" && e.template === "/storage");
    // bpg v0.111.1 toCreateAPIRequest: these keys, disable as 0; the PBS answers nothing here (the simulator has no PBS behind it).
    expect(Object.keys(created.at(-1)?.params ?? {}).sort()).toEqual(["content", "datastore", "disable", "fingerprint", "namespace", "nodes", "password", "server", "storage", "type", "username"]);
    const stored = await w.api.client.get<Record<string, unknown>>("/storage/pbs-offsite");
    expect(stored).toMatchObject({ type: "pbs", server: "10.0.0.50", datastore: "phoenix", username: "backup@pbs", namespace: "dev", content: "backup" });
    // PVE keeps it in /etc/pve/priv/storage/<id>.pw: not in the storage's config, not in any answer.
    expect(JSON.stringify(stored)).not.toContain(password);
    expect(JSON.stringify(await w.api.client.get("/storage"))).not.toContain(password);
    expect(storageSecrets(w.sim.state, "pbs-offsite")).toEqual({ password });
    expect(await w.api.client.get<Record<string, unknown>>("/cluster/backup/dev-offsite")).toMatchObject({ storage: "pbs-offsite", vmid: String(GATEWAY), schedule: "sun 04:00" });
    const second = await w.apply(withPbs);
    expect(failuresOf(second)).toEqual([]);
    expect(changed(second)).toEqual([]);
    // Rotating the password replaces the storage (bpg: RequiresReplace). PVE refuses a second storage
    // of the same ID, so the old definition goes first; the job keeps naming it and is not touched.
    const rotated = "pbs-e2e-password-rotated-77c1";
    w.sim.log.clear();
    const rotation = await w.apply({ ...withPbs, values: { ...withPbs.values, pbsPassword: rotated } });
    expect(failuresOf(rotation)).toEqual([]);
    expect(changed(rotation).filter((c) => /pbs|dev-offsite/.test(c))).toEqual([expect.stringMatching(/^replace .*pbs-offsite/)]);
    expect(w.sim.log.mutating().filter((m) => m.path.includes("/storage")).map((m) => `${m.method} ${m.path.replace(/^\/api2\/json/, "")}`)).toEqual(["DELETE /storage/pbs-offsite", "POST /storage"]);
    expect(storageSecrets(w.sim.state, "pbs-offsite")).toEqual({ password: rotated });
    expect(await w.api.client.get<Record<string, unknown>>("/cluster/backup/dev-offsite")).toMatchObject({ storage: "pbs-offsite" });
  }, 120_000);
});
