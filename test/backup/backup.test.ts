/**
 * Backup jobs and snapshot policies: the section's validation (path-precise), what each job
 * sends to the bridged provider, and sanoid itself reading the rendered config.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { backupJobArgs, SANOID_INSTALL } from "../../components/backup/backup";
import { renderSanoidConf } from "../../components/backup/sanoid.render";
import { backupCoverage, backupIssues, jobGuests } from "../../stacks/backup";
import { backupSecretIssues, requiredSecrets } from "../../stacks/secrets";
import type { StackConfig } from "../../stacks/schema";
import { backupSection } from "../../scripts/synth/plan";
import { loadStack, shellcheck, tempDir } from "../support";

const prod = loadStack("Pulumi.prod.yaml");
const dev = loadStack("Pulumi.dev.yaml");
const withBackup = (config: StackConfig, edit: (b: NonNullable<StackConfig["backup"]>) => void): StackConfig => {
  const copy = structuredClone(config);
  edit(copy.backup!);
  return copy;
};

describe("the shipped stacks", () => {
  it("prod backs every guest up nightly to fastData-backups, a dir storage of a dataset with backup content", () => {
    const job = prod.backup!.jobs[0]!;
    expect(job).toMatchObject({ storage: "fastData-backups", guests: { all: true, exclude: [] } });
    expect(prod.host.zfs.datasets.find((d) => d.storage?.id === "fastData-backups")?.storage).toEqual({ id: "fastData-backups", type: "dir", content: ["backup"] });
    expect(backupCoverage(prod).every((c) => c.jobs.includes(job.id))).toBe(true);
    expect(backupIssues(prod)).toEqual([]);
    expect(backupIssues(dev)).toEqual([]);
  });

  it("every shipped schedule is a calendar event systemd accepts (PVE's grammar is a subset of it)", () => {
    for (const job of [...prod.backup!.jobs, ...dev.backup!.jobs]) {
      expect(() => execFileSync("systemd-analyze", ["calendar", job.schedule], { stdio: "pipe" }), job.schedule).not.toThrow();
    }
    expect(() => execFileSync("systemd-analyze", ["calendar", "not a time"], { stdio: "pipe" })).toThrow();
  });

  it("synth's plan lists each guest's jobs and its datasets' snapshot policies, and says when nothing is backed up", () => {
    const text = backupSection(dev).join("\n");
    expect(text).toContain("| CT 103 `step-ca` | `dev-nightly` | `tank/step-ca` (snapshots: dev) |");
    expect(text).toContain("| CT 102 `traefik` | not backed up: Phoenix writes its whole configuration again | — |");
    expect(text).toContain("| CT 914 `ollama` | `dev-nightly` | `tank/models` (**no snapshots**) |");
    const none = structuredClone(dev);
    delete none.backup;
    expect(backupSection(none).join("\n")).toContain("**Nothing is backed up**");
  });
});

describe("validation", () => {
  it("refuses a storage without backup content and one not declared, at the job's storage", () => {
    const issues = backupIssues(withBackup(dev, (b) => {
      b.jobs[0]!.storage = "tank-iso";
      b.jobs.push({ ...b.jobs[0]!, id: "other", storage: "nowhere" });
    }));
    expect(issues).toContainEqual({ path: "backup.jobs[0].storage", message: expect.stringContaining("does not hold backup content") });
    expect(issues).toContainEqual({ path: "backup.jobs[1].storage", message: expect.stringContaining("'nowhere' is not declared") });
  });

  it("names each guest with data that no job covers and the stack does not exclude", () => {
    const config = withBackup(dev, (b) => {
      b.jobs[0]!.guests = { vmids: [103] };
      b.notBackedUp = [];
    });
    const paths = backupIssues(config).map((i) => i.path);
    const index = (vmid: number) => config.guests.findIndex((g) => g.vmid === vmid);
    // 914 (models), 104 (observability) keep data on mounted datasets; 102 (traefik) keeps none.
    expect(paths).toEqual(expect.arrayContaining([`guests[${index(914)}]`, `guests[${index(104)}]`]));
    expect(paths).not.toContain(`guests[${index(102)}]`);
    expect(paths).not.toContain(`guests[${index(103)}]`);
  });

  it("refuses unknown guests, tags matching none, a contradictory exclusion and bad snapshot references", () => {
    const issues = backupIssues(withBackup(dev, (b) => {
      b.jobs[0]!.guests = { all: true, exclude: [102, 4242] };
      b.jobs.push({ ...b.jobs[0]!, id: "tagged", guests: { tags: ["nothing-has-this"] } });
      b.notBackedUp.push({ vmid: 103, reason: "x" });
      b.snapshots.datasets.push({ dataset: "tank/nope", template: "missing" }, { dataset: "tank/step-ca", template: "dev" });
    }));
    expect(issues.map((i) => i.path)).toEqual(
      expect.arrayContaining([
        "backup.jobs[0].guests.exclude[1]",
        "backup.jobs[1].guests.tags",
        "backup.notBackedUp[1].vmid",
        "backup.snapshots.datasets[2].dataset",
        "backup.snapshots.datasets[2].template",
        "backup.snapshots.datasets[3].dataset",
      ]),
    );
  });

  it("a PBS storage needs its password as a secret of its own, never one of Phoenix's keys", () => {
    const pbs = { id: "pbs-offsite", server: "pbs.example.org", datastore: "phoenix", username: "phoenix@pbs", fingerprint: Array(32).fill("ab").join(":"), passwordSecretKey: "pbsPassword" };
    const config = withBackup(dev, (b) => {
      b.pbs.push(pbs);
      b.jobs[0]!.storage = "pbs-offsite";
    });
    expect(backupIssues(config)).toEqual([]);
    expect(requiredSecrets(config)).toContainEqual(expect.objectContaining({ key: "pbsPassword", path: "backup.pbs[0].passwordSecretKey" }));
    const own = withBackup(config, (b) => (b.pbs[0]!.passwordSecretKey = "proxmoxTokenSecret"));
    expect(backupSecretIssues(own)).toEqual([{ path: "backup.pbs[0].passwordSecretKey", message: expect.stringContaining("one of Phoenix's own") }]);
  });
});

describe("what a job sends", () => {
  it("all with exclusions, retention as prune-backups keys, the failure notification", () => {
    expect(backupJobArgs(dev, dev.backup!.jobs[0]!, "pve-dev")).toEqual({
      resourceId: "dev-nightly",
      schedule: "03:00",
      storage: "local",
      node: "pve-dev",
      enabled: true,
      mode: "snapshot",
      compress: "zstd",
      pruneBackups: { "keep-last": "2", "keep-daily": "3" },
      mailnotification: "failure",
      all: true,
      excludes: ["102"],
    });
  });

  it("tags resolve to the vmids of the guests carrying them; a pool goes as a pool", () => {
    const config = structuredClone(dev);
    config.guests.find((g) => g.vmid === 104)!.tags.push("keep");
    const tagged = { ...dev.backup!.jobs[0]!, guests: { tags: ["keep"] } };
    expect(jobGuests(config, tagged)).toEqual([104]);
    expect(backupJobArgs(config, tagged, "pve-dev")).toMatchObject({ vmids: ["104"] });
    expect(backupJobArgs(config, tagged, "pve-dev")).not.toHaveProperty("all");
    expect(backupJobArgs(config, { ...tagged, guests: { pool: "prod" } }, "pve-dev")).toMatchObject({ pool: "prod" });
  });

  it("the sanoid install script is clean shell", () => {
    shellcheck("sanoid-install.sh", `#!/bin/bash\n${SANOID_INSTALL}`);
  });
});

/** Runs the installed sanoid on a config dir, with zfs and zpool stand-ins that list nothing (no pools here). */
function sanoid(conf: string, args: string[]): { status: number | null; out: string } {
  const dir = tempDir("sanoid");
  fs.writeFileSync(path.join(dir, "sanoid.conf"), conf);
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  for (const tool of ["zfs", "zpool"]) fs.writeFileSync(path.join(bin, tool), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  const res = spawnSync("sanoid", ["--configdir", dir, "--cache-dir", path.join(dir, "cache"), "--run-dir", path.join(dir, "run"), ...args], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    encoding: "utf8",
  });
  return { status: res.status, out: `${res.stdout}${res.stderr}` };
}

describe("sanoid reads the rendered config", () => {
  const conf = renderSanoidConf(prod.backup!.snapshots);

  it("accepts it and, in read-only mode, would take exactly the periods each template keeps", () => {
    const { status, out } = sanoid(conf, ["--cron", "--readonly", "--verbose"]);
    expect(status, out).toBe(0);
    const taken = (ds: string) => [...out.matchAll(new RegExp(`taking snapshot ${ds.replace("/", "\\/")}@autosnap_\\S+_(\\w+)$`, "gm"))].map((m) => m[1]).sort();
    expect(taken("fastData/step-ca")).toEqual(["daily", "frequently", "hourly", "monthly"]);
    expect(taken("fastData/shared-models")).toEqual(["daily"]);
    expect(out).not.toContain("shared-backups");
  });

  it("rejects a config with a setting it does not know, so the check above can fail", () => {
    const bad = conf.replace("\tautoprune = yes", "\tautoprune = yes\n\tkeep_forever = 1");
    const { status, out } = sanoid(bad, ["--readonly", "--verbose"]);
    expect(status).not.toBe(0);
    expect(out).toContain("I don't understand the setting keep_forever");
  });
});
