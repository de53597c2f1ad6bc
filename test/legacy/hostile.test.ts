/**
 * The legacy folder is input from elsewhere: secrets in it never reach any
 * output, and files that are not small regular JSON files inside it are
 * refused with one message naming the file, never its content.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_DEPTH, MAX_FILE_BYTES, runImport } from "../../scripts/import-legacy";
import { secretValueKind } from "../../stacks/secrets";

const FIXTURES = path.join(__dirname, "fixtures");
const SECRETS = path.join(FIXTURES, "secrets", "etc");
const tempDirs: string[] = [];
afterAll(() => tempDirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-hostile-"));
  tempDirs.push(dir);
  return dir;
}
const outputs = (cwd: string, stdout: string): string =>
  [stdout, ...fs.readdirSync(cwd).map((f) => fs.readFileSync(path.join(cwd, f), "utf8"))].join("\n");

describe("secrets found by their value as well as their name", () => {
  const cwd = tempDir();
  const run = runImport([SECRETS, "--stack", "apps"], cwd);
  const report = fs.readFileSync(path.join(cwd, "import-report.md"), "utf8");
  // Every secret of the fixture, and the parts a careless echo would show.
  const secrets = [
    "postgres://app:S3cr3tPw@db.int.example.net:5432/app",
    "S3cr3tPw",
    "q8Jd9xVb2LmT4pZs7NwK1rYc6HfA3gUe",
    "sk-proj-Zr7Yq2Wm9Xk4Vt1Pn6Lb3Hd8Gf5Cs0Aj",
    "hf_QxTgLmNpRsVwYzAbCdEfGhIjKlMn12",
    "ghp_8sK2mQ9xL4vN7pR1tW3yB6cF0hJ5dG2aE9uZ",
    "hunter2hunter2",
    "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "Adm1n-Portainer-Pw!",
  ];

  it("writes none of them: not in the stack, the report or the terminal", () => {
    expect(run.code).toBe(0);
    const all = outputs(cwd, run.stdout);
    for (const secret of secrets) expect(all).not.toContain(secret);
  });

  it("moves stack variables with secret values to secretEnv and gives the command for each", () => {
    const stack = fs.readFileSync(path.join(cwd, "Pulumi.apps.yaml"), "utf8");
    expect(stack).toContain("DATABASE_URL: webappDatabaseUrl");
    expect(stack).toContain("N8N_ENCRYPTION_KEY: n8nEncryptionKey");
    expect(stack).toContain("OPENAI_KEY: n8nOpenaiKey");
    expect(stack).toContain("SENTRY_DSN: webappSentryDsn");
    expect(stack).toContain("PUBLIC_URL: https://app.int.example.net");
    for (const key of ["webappDatabaseUrl", "n8nEncryptionKey", "n8nOpenaiKey", "webappSentryDsn", "portainerAdminPassword"]) {
      expect(report).toContain(`pulumi config set --secret phoenix:${key} <value>`);
    }
  });

  it("reports a token in lxc.environment by its field, without echoing the line", () => {
    for (const i of [0, 1, 2]) expect(report).toContain(`\`phoenix_lxc_configs.json: lxc_configs.300.lxc_options[${i}]\`: `);
    expect(report).toContain("a Hugging Face token in lxc_options");
    expect(report).not.toContain("HF_TOKEN=");
  });

  it("recognises credential shapes, and leaves names, paths and public keys alone", () => {
    expect(secretValueKind("redis://:pw-x1@cache:6379")).toBe("a password inside a URL");
    expect(secretValueKind("ghs_abcdefghijklmnopqrstuvwxyz0123456789")).toBe("a GitHub token");
    expect(secretValueKind("Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz012345")).toBe("an API key (sk-)");
    expect(secretValueKind("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")).toBe("a long hexadecimal key");
    for (const plain of [
      "RedHatAI/granite-3.3-8b-instruct-FP8-dynamic",
      "Qwen3-Coder-30B-A3B-Instruct-MLX-5bit",
      "/dev/disk/by-id/nvme-Samsung_SSD_990_EVO_Plus_2TB_S7U6NJ0Y123456X",
      "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRoaW5raGVhZHMtYWRtaW4ta2V5 admin@workstation",
      "lxc.apparmor.profile=unconfined",
    ]) {
      expect(secretValueKind(plain)).toBeUndefined();
    }
  });
});

describe("reading the legacy folder", () => {
  const legacyDir = (): { root: string; etc: string; cwd: string } => {
    const root = tempDir();
    const etc = path.join(root, "etc");
    fs.mkdirSync(etc);
    fs.copyFileSync(path.join(FIXTURES, "ip-collision", "phoenix_hypervisor_config.json"), path.join(etc, "phoenix_hypervisor_config.json"));
    const cwd = path.join(root, "project");
    fs.mkdirSync(cwd);
    return { root, etc, cwd };
  };
  const LXC = "phoenix_lxc_configs.json";

  it("refuses a symlink to /dev/zero at once, naming the file", () => {
    const { etc, cwd } = legacyDir();
    fs.symlinkSync("/dev/zero", path.join(etc, LXC));
    const started = Date.now();
    const run = runImport([etc, "--stack", "x"], cwd);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(run).toEqual({ code: 1, stdout: `${LXC}: a symlink that leaves the legacy folder: refused (copy the file into the folder if it is meant) (run with --debug for the stack trace)` });
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it("does not echo /etc/passwd through a symlink", () => {
    const { etc, cwd } = legacyDir();
    fs.symlinkSync("/etc/passwd", path.join(etc, LXC));
    const run = runImport([etc, "--stack", "x"], cwd);
    expect(run.code).toBe(1);
    expect(run.stdout).not.toContain("root:");
  });

  it("follows a symlink that stays inside the folder", () => {
    const { etc, cwd } = legacyDir();
    fs.copyFileSync(path.join(FIXTURES, "ip-collision", LXC), path.join(etc, "lxc.json"));
    fs.symlinkSync("lxc.json", path.join(etc, LXC));
    expect(runImport([etc, "--stack", "x"], cwd).stdout).toContain("lxc_configs.202.network_config.ip");
  });

  it("refuses a FIFO without blocking, and a device", () => {
    const { etc, cwd } = legacyDir();
    execFileSync("mkfifo", [path.join(etc, LXC)]);
    expect(runImport([etc, "--stack", "x"], cwd)).toEqual({ code: 1, stdout: `${LXC}: not a regular file: refused (run with --debug for the stack trace)` });
  });

  it("refuses a file over the size limit without reading it", () => {
    const { etc, cwd } = legacyDir();
    fs.writeFileSync(path.join(etc, LXC), "");
    fs.truncateSync(path.join(etc, LXC), MAX_FILE_BYTES + 1);
    expect(runImport([etc, "--stack", "x"], cwd).stdout).toContain(`${LXC}: ${MAX_FILE_BYTES + 1} bytes, over the ${MAX_FILE_BYTES}-byte limit for a legacy file: refused`);
  });

  it("refuses deeply nested JSON before parsing it, with no RangeError", () => {
    const { etc, cwd } = legacyDir();
    fs.writeFileSync(path.join(etc, LXC), `{"lxc_configs": ${"[".repeat(200_000)}${"]".repeat(200_000)}}`);
    const run = runImport([etc, "--stack", "x"], cwd);
    expect(run).toEqual({ code: 1, stdout: `${LXC}: nested deeper than ${MAX_DEPTH} levels at line 1, column ${16 + MAX_DEPTH}: refused (run with --debug for the stack trace)` });
  });

  it("says where JSON is broken without quoting it", () => {
    const { etc, cwd } = legacyDir();
    fs.writeFileSync(path.join(etc, LXC), '{\n  "lxc_configs": {\n    "200": { "name": "x", "password": "Tr0ub4dor&3" oops }\n  }\n}\n');
    const run = runImport([etc, "--stack", "x"], cwd);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^phoenix_lxc_configs\.json: not valid JSON at line 3, column \d+ \(run with --debug for the stack trace\)$/);
    expect(run.stdout).not.toContain("Tr0ub4dor");
  });

  it("catches any other failure at the top: one line, exit 1, the stack trace only with --debug", () => {
    const { etc, cwd } = legacyDir();
    fs.mkdirSync(path.join(cwd, "import-report.md"));
    const run = runImport([etc, "--stack", "x"], cwd);
    expect(run).toEqual({ code: 1, stdout: "import-legacy failed: Error EISDIR on import-report.md (run with --debug for the stack trace)" });
    const debug = runImport([etc, "--stack", "x", "--debug"], cwd);
    expect(debug.code).toBe(1);
    expect(debug.stdout).toMatch(/^import-legacy failed: Error EISDIR on import-report\.md\n.*EISDIR[\s\S]*\n {4}at /);
  });
});
