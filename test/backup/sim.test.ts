/**
 * The simulator's backup jobs (test/pve-sim/backup.ts) answer the calls bpg makes the way
 * pve-manager@9.1.3 PVE/API2/Backup.pm does, and the e2e translation's calls pass the official schema.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { form, rawCall } from "../pve-sim/http";
import { startSimulator, type Simulator } from "../pve-sim/server";
import { backupJobBody } from "../e2e/backup-translation";

let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({ timing: { taskDurationMs: 1 } });
});

afterAll(async () => {
  await sim.stop();
});

async function call(method: string, path: string, params: Record<string, string | number> = {}): Promise<{ status: number; data?: unknown; message?: string; errors?: unknown }> {
  const res = await rawCall(sim, method, path, { form: form(params), auth: "token" });
  return { status: res.status, data: res.body.data, message: res.status === 200 ? undefined : String(res.body.message ?? res.reason), errors: res.body.errors };
}

const defined = (o: Record<string, string | undefined>) => Object.fromEntries(Object.entries(o).filter((x): x is [string, string] => x[1] !== undefined));

describe("/cluster/backup", () => {
  it("creates a job from bpg's body, reads it back with prune-backups as an object, and lists it", async () => {
    const body = defined(backupJobBody({ enabled: true, node: "pve", all: true, excludes: ["914"], mode: "snapshot", compress: "zstd", mailnotification: "failure", pruneBackups: { "keep-last": "2", "keep-daily": "3" } }));
    expect(body["prune-backups"]).toBe("keep-daily=3,keep-last=2");
    expect(await call("POST", "/cluster/backup", { id: "nightly", schedule: "03:00", storage: "local", ...body })).toMatchObject({ status: 200 });
    const job = (await call("GET", "/cluster/backup/nightly")).data as Record<string, unknown>;
    expect(job).toMatchObject({ id: "nightly", type: "vzdump", schedule: "03:00", storage: "local", all: 1, exclude: "914", enabled: 1, "prune-backups": { "keep-daily": 3, "keep-last": 2 } });
    expect(((await call("GET", "/cluster/backup")).data as Array<{ id: string }>).map((j) => j.id)).toContain("nightly");
  });

  it("refuses what Backup.pm and verify_vzdump_parameters refuse", async () => {
    expect(await call("POST", "/cluster/backup", { id: "nightly", schedule: "03:00", storage: "local", all: 1 })).toMatchObject({ status: 500, message: "Job 'nightly' already exists\n" });
    expect(await call("POST", "/cluster/backup", { id: "both", schedule: "03:00", storage: "local", all: 1, vmid: "100" })).toMatchObject({ status: 400, errors: { all: "option conflicts with option 'vmid'" } });
    expect(await call("POST", "/cluster/backup", { id: "none", schedule: "03:00", storage: "local" })).toMatchObject({ status: 400, errors: { vmid: "property is missing" } });
    expect(await call("POST", "/cluster/backup", { id: "nosched", storage: "local", all: 1 })).toMatchObject({ status: 400, errors: { schedule: "neither 'starttime' nor 'schedule' were set" } });
    expect(await call("POST", "/cluster/backup", { id: "pool", schedule: "03:00", storage: "local", pool: "prod" })).toMatchObject({ status: 403 });
    expect(await call("POST", "/cluster/backup", { id: "1bad", schedule: "03:00", storage: "local", all: 1 })).toMatchObject({ status: 400 });
    expect(await call("GET", "/cluster/backup/missing")).toMatchObject({ status: 400, errors: { id: "No such job 'missing'" } });
  });

  it("updates: a vmid list replaces all and exclude, delete drops a key, and the job is gone after DELETE", async () => {
    expect(await call("PUT", "/cluster/backup/nightly", { vmid: "101,102", delete: "mailnotification" })).toMatchObject({ status: 200 });
    const job = (await call("GET", "/cluster/backup/nightly")).data as Record<string, unknown>;
    expect(job.vmid).toBe("101,102");
    expect(job).not.toHaveProperty("all");
    expect(job).not.toHaveProperty("exclude");
    expect(job).not.toHaveProperty("mailnotification");
    expect(await call("PUT", "/cluster/backup/nightly", { delete: "bogus" })).toMatchObject({ status: 400 });
    expect(await call("DELETE", "/cluster/backup/nightly")).toMatchObject({ status: 200 });
    expect(await call("DELETE", "/cluster/backup/nightly")).toMatchObject({ status: 400 });
  });
});
