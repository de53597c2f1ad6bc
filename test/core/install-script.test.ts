/**
 * The shared staged install script, run for real with bash against a temp
 * directory: idempotence, validation with rollback, the post-reload check, and
 * removal of files a previous run installed but the render no longer has.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RenderedFile } from "../../components/render/files";
import { renderInstallScript } from "../../components/render/install-script";
import { tempDir } from "./helpers";

let dir: string;
let owner: string;

beforeAll(() => {
  dir = tempDir("install");
  owner = `${os.userInfo().username}:${spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim()}`;
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const at = (name: string) => path.join(dir, "target", name);
const reloads = () => (fs.existsSync(path.join(dir, "reloads")) ? fs.readFileSync(path.join(dir, "reloads"), "utf8").split("\n").filter(Boolean).length : 0);

function run(files: RenderedFile[], opts: { verify?: boolean } = {}) {
  const script = renderInstallScript({
    name: "demo",
    description: "test of the staged install",
    files,
    // The stand-in for `nginx -t`: every installed .conf must say it is valid.
    validate: `for f in ${path.join(dir, "target")}/*.conf; do grep -q '^valid' "$f" || { echo "invalid: $f"; return 1; }; done`,
    reload: `echo reload >>${path.join(dir, "reloads")}`,
    ...(opts.verify ? { verify: `test -e ${path.join(dir, "healthy")}` } : {}),
  });
  const r = spawnSync("bash", ["-s"], { input: script, encoding: "utf8", env: { ...process.env, PHOENIX_STATE_DIR: path.join(dir, "state"), PHOENIX_VERIFY_SECONDS: "2" } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const file = (name: string, content: string, mode = "0640"): RenderedFile => ({ path: at(name), content, mode, owner });

describe("the staged install script", () => {
  it("installs files with their mode, records them, and reloads once", () => {
    const r = run([file("a.conf", "valid a\n"), file("b.conf", "valid b\n", "0600")]);
    expect(r.status, r.out).toBe(0);
    expect(fs.readFileSync(at("a.conf"), "utf8")).toBe("valid a\n");
    expect((fs.statSync(at("b.conf")).mode & 0o777).toString(8)).toBe("600");
    expect(reloads()).toBe(1);
    expect(fs.readFileSync(path.join(dir, "state/demo.files"), "utf8")).toBe(`${at("a.conf")}\n${at("b.conf")}\n`);
  });

  it("changes nothing and does not reload on a second run", () => {
    const r = run([file("a.conf", "valid a\n"), file("b.conf", "valid b\n", "0600")]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain("demo: files unchanged");
    expect(reloads()).toBe(1);
  });

  it("puts the previous files back and does not reload when validation fails", () => {
    const r = run([file("a.conf", "broken a\n"), file("b.conf", "valid b\n", "0600"), file("c.conf", "broken new file\n")]);
    expect(r.status).toBe(1);
    expect(r.out).toContain("the new files failed validation; the previous files are back and nothing was reloaded");
    expect(fs.readFileSync(at("a.conf"), "utf8")).toBe("valid a\n");
    expect(fs.existsSync(at("c.conf"))).toBe(false);
    expect(reloads()).toBe(1);
  });

  it("re-applies a changed mode", () => {
    fs.chmodSync(at("b.conf"), 0o644);
    const r = run([file("a.conf", "valid a\n"), file("b.conf", "valid b\n", "0600")]);
    expect(r.status, r.out).toBe(0);
    expect((fs.statSync(at("b.conf")).mode & 0o777).toString(8)).toBe("600");
    expect(reloads()).toBe(2);
  });

  it("removes a file an earlier run installed once it is no longer rendered, and nothing else", () => {
    fs.writeFileSync(at("foreign.conf"), "valid, not ours\n");
    const r = run([file("a.conf", "valid a2\n")]);
    expect(r.status, r.out).toBe(0);
    expect(fs.existsSync(at("b.conf"))).toBe(false);
    expect(fs.existsSync(at("foreign.conf"))).toBe(true);
    expect(fs.readFileSync(at("a.conf"), "utf8")).toBe("valid a2\n");
    expect(reloads()).toBe(3);
  });

  it("restores and reloads again when the service is not healthy after the reload", () => {
    const r = run([file("a.conf", "valid a3\n")], { verify: true });
    expect(r.status).toBe(1);
    expect(r.out).toContain("did not come back healthy");
    expect(fs.readFileSync(at("a.conf"), "utf8")).toBe("valid a2\n");
    expect(reloads()).toBe(5);
  });
});
