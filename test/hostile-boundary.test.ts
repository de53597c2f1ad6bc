/**
 * The stack file's editor may not be able to decrypt the stack's secrets, and
 * `pulumi preview` runs their input in CI: what they write must not reach
 * Phoenix's own secrets, files outside the project, or a crash.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runDoctor } from "../scripts/doctor";
import { admits } from "../scripts/doctor/firewall";
import { runValidate } from "../scripts/validate";
import { implementation as portainerStack } from "../providers/portainer/stack";
import { readStackFile, validateStack } from "../stacks/load";
import { readProjectFile } from "../stacks/project-files";
import { planCloneOrder } from "../stacks/plan";
import type { StackConfig } from "../stacks/schema";
import { runProgram } from "./mock-program";
import { issuesOf, PROD_FILE, prodWithSecrets, ROOT, validate } from "./stacks/fixtures";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Values = Record<string, any>;
const guest = (v: Values, vmid: number): Values => v.guests.find((g: Values) => g.vmid === vmid);
const SECRET = "AKIA-THE-SECRET-CONTENT";

const temps: string[] = [];
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A project folder with the prod stack (edited by `edit`), its compose files, and a secret file beside it, outside. */
function project(edit: (text: string) => string = (t) => t): string {
  const outer = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-hostile-"));
  temps.push(outer);
  fs.writeFileSync(path.join(outer, "credentials"), `aws_secret_access_key = ${SECRET}\n`);
  const dir = path.join(outer, "project");
  fs.mkdirSync(dir);
  fs.cpSync(path.join(ROOT, "docker"), path.join(dir, "docker"), { recursive: true });
  fs.writeFileSync(path.join(dir, "Pulumi.x.yaml"), edit(fs.readFileSync(PROD_FILE, "utf8")));
  return dir;
}

describe("secretEnv reaches only Docker stacks' own secrets", () => {
  for (const key of ["sshPrivateKey", "proxmoxTokenSecret", "portainerAdminPassword", "guests"]) {
    it(`refuses phoenix:${key}`, () => {
      const raw = prodWithSecrets();
      guest(raw.values, 1002).dockerStacks[0].secretEnv = { LEAK: key };
      for (const requireSecrets of [true, false]) {
        const issues = issuesOf(validate(raw, requireSecrets));
        expect(issues).toContainEqual({ path: "guests[8].dockerStacks[0].secretEnv.LEAK", message: expect.stringContaining(`phoenix:${key} is one of Phoenix's own`) });
      }
    });
  }

  it("never lists an infrastructure secret as a Docker stack's", () => {
    const raw = readStackFile(PROD_FILE);
    (raw.values as Values).guests.find((g: Values) => g.vmid === 1002).dockerStacks[0].secretEnv = { LEAK: "sshPrivateKey" };
    const result = validate(raw, false);
    expect(result.ok).toBe(false);
    const ok = validate(readStackFile(PROD_FILE), false);
    if (ok.ok !== true) throw new Error("prod does not validate");
    expect(ok.missingSecrets.filter((s) => s.key === "sshPrivateKey").every((s) => !s.why.includes("docker stack"))).toBe(true);
    expect(ok.missingSecrets.map((s) => s.key)).toEqual(expect.arrayContaining(["qdrantApiKey", "webappSessionSecret"]));
  });
});

describe("project files stay inside the project", () => {
  // The schema refuses such paths too (its pattern); the check behind it holds on its own (readProjectFile).
  const OUTSIDE = /is outside the project folder|must be a path relative to the project directory/;
  const cases: Array<[string, (dir: string) => string, string | RegExp]> = [
    ["a path out of the project", () => "../credentials", OUTSIDE],
    ["an absolute path", (dir) => path.join(dir, "..", "credentials"), OUTSIDE],
    ["a symlink out of the project", (dir) => (fs.symlinkSync(path.join(dir, "..", "credentials"), path.join(dir, "docker", "link.yaml")), "docker/link.yaml"), "leads outside the project folder"],
    ["a directory", () => "docker", "is not a regular file"],
    ["a missing compose file", () => "docker/nope.yaml", "does not exist"],
  ];
  for (const [what, file, message] of cases) {
    it(`validate refuses ${what}, without its content`, () => {
      const dir = project();
      const compose = file(dir);
      fs.writeFileSync(path.join(dir, "Pulumi.x.yaml"), fs.readFileSync(path.join(dir, "Pulumi.x.yaml"), "utf8").replace("compose: docker/qdrant/compose.yaml", `compose: ${JSON.stringify(compose)}`));
      const { code, text } = runValidate("x", dir);
      expect(code).toBe(1);
      expect(text).toContain("phoenix:guests[8].dockerStacks[0].compose:");
      expect(text).toMatch(message);
      expect(text).not.toContain(SECRET);
      expect(() => readProjectFile(dir, compose, "guests[8].dockerStacks[0].compose")).toThrow(typeof message === "string" ? message : /is outside the project folder/);
    });
  }

  it("the program refuses to read a file outside the project, naming the setting", async () => {
    const raw = prodWithSecrets();
    guest(raw.values, 1002).dockerStacks[0].compose = "../../../../../../../../etc/passwd";
    const failure = await runProgram(raw).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(failure?.message).toMatch(/phoenix:guests\[8\]\.dockerStacks\[0\]\.compose: (\.\.\/)+etc\/passwd is outside the project folder|phoenix:guests\[8\]\.dockerStacks\[0\]\.compose: must be a path relative/);
    expect(failure?.message).not.toContain("root:x:");
  });

  it("the node's files missing offline are listed, not errors; online they are errors", () => {
    const dir = project();
    const offline = runValidate("x", dir);
    expect(offline.code).toBe(0);
    expect(offline.text).toContain("pve-root-ca.pem   # phoenix:proxmox.tls.caFile");
    const online = validateStack(readStackFile(path.join(dir, "Pulumi.x.yaml")), { requireSecrets: true, projectRoot: dir });
    expect(issuesOf(online)).toContainEqual({ path: "proxmox.tls.caFile", message: "pve-root-ca.pem does not exist in the project folder" });
  });

  it("a compose file that is not YAML is refused without quoting it", async () => {
    const res = await portainerStack.check!({}, { name: "qdrant", endpointId: 1, env: {}, secretEnv: {}, api: { url: "https://x", apiKey: "k", caPem: "" }, compose: `services: {a: b: ${SECRET}}\n` });
    const reasons = JSON.stringify(res.failures);
    expect(reasons).toContain("the compose file is not valid YAML");
    expect(reasons).not.toContain(SECRET);
  });
});

describe("ordering", () => {
  it("a dependency against the clone order is planned around, and the program builds", async () => {
    const raw = prodWithSecrets();
    guest(raw.values, 102).dependsOn = [101];
    expect(issuesOf(validate(raw))).toEqual([]);
    const program = await runProgram(raw);
    expect(program.dependenciesOf("guest-102")).toContain("ct-101");
  });

  it("planCloneOrder clones a guest after those it waits for", () => {
    const after = planCloneOrder([
      { vmid: 101, source: 900, storage: "lxc", priority: 3 },
      { vmid: 102, source: 900, storage: "lxc", priority: 2, after: [101] },
    ]);
    expect([...after]).toEqual([[102, 101]]);
  });

  it("reports a cycle through an implied dependency with every config path", () => {
    const raw = prodWithSecrets();
    guest(raw.values, 103).dependsOn = [1001]; // the CA's guest waits for a Docker host that trusts the CA
    const issues = issuesOf(validate(raw)).filter((i) => i.message.startsWith("dependency cycle"));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe("guests[0].dependsOn[0]");
    expect(issues[0]!.message).toContain("103 waits for 1001: guests[0].dependsOn[0]");
    expect(issues[0]!.message).toContain("1001 waits for 103: guests[7].role, its user data trusts the CA");
  });
});

describe("type errors say what was expected and what was found", () => {
  it("cores: '8'", () => {
    const raw = prodWithSecrets();
    guest(raw.values, 103).cores = "8";
    guest(raw.values, 102).memoryMiB = [1];
    expect(issuesOf(validate(raw))).toEqual(
      expect.arrayContaining([
        { path: "guests[0].cores", message: "must be a number, but is a string" },
        { path: "guests[1].memoryMiB", message: "must be a number, but is a list" },
      ]),
    );
  });
});

describe("commands fail with one message naming the file", () => {
  const validateCli = (dir: string, ...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "scripts/validate.ts"), "x", ...args], { cwd: dir, encoding: "utf8" });

  it("malformed YAML, a directory, deep nesting: exit 1, no stack trace, no content", () => {
    const bad = project(() => `config:\n  phoenix:proxmox: {a: b: ${SECRET}}\n`);
    const dirStack = project();
    fs.rmSync(path.join(dirStack, "Pulumi.x.yaml"));
    fs.mkdirSync(path.join(dirStack, "Pulumi.x.yaml"));
    const deep = project(() => `config:\n  phoenix:guests: ${"[".repeat(100)}${"]".repeat(100)}\n`);
    for (const [dir, message] of [
      [bad, "validate: Pulumi.x.yaml: not valid YAML (BLOCK_IN_FLOW at line 2, column"],
      [dirStack, "validate: Pulumi.x.yaml: is not a regular file"],
      [deep, "phoenix:guests: nests deeper than 64 levels"],
    ] as const) {
      const res = validateCli(dir);
      expect(res.status).toBe(1);
      expect(res.stderr).toContain(message);
      expect(res.stderr).not.toMatch(/\n\s+at /);
      expect(res.stderr + res.stdout).not.toContain(SECRET);
    }
    expect(validateCli(bad, "--debug").stderr).toMatch(/\n\s+at readStackFile/);
  });

  it("doctor names the stack file with its problems", async () => {
    const dir = project((t) => t.replace("cores: 8", 'cores: "8"'));
    const res = await runDoctor(["x"], { cwd: dir, channels: () => Promise.reject(new Error("not reached")) });
    expect(res.code).toBe(2);
    expect(res.text).toMatch(/^Pulumi\.x\.yaml: The stack configuration has/);
    expect(res.text).toContain("must be a number, but is a string");
  });
});

describe("the doctor's firewall follows PVE's order: security groups, then the guest's own rules", () => {
  it("a group's DROP wins over the guest's own ACCEPT", () => {
    const config = validate(prodWithSecrets());
    if (config.ok !== true) throw new Error("prod does not validate");
    const base: StackConfig = config.config;
    const withGroup: StackConfig = {
      ...base,
      firewall: { ...base.firewall, groups: [...base.firewall.groups, { name: "deny-lan", rules: [{ type: "in", action: "DROP", proto: "tcp", dport: "8000", source: "10.0.0.0/24", enabled: true }] }] },
    };
    const chat = base.guests.find((g) => g.vmid === 802)!;
    const g = { ...chat, firewall: { ...chat.firewall, groups: ["deny-lan"] } };
    expect(admits(withGroup, g, 8000, "10.0.0.12")).toEqual({ verdict: "blocked", why: "group deny-lan: DROP tcp/8000 from 10.0.0.0/24" });
  });
});
