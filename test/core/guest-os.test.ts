/**
 * The core guests run Proxmox's Ubuntu 24.04 template: the gateway's njs comes
 * from universe, the Step-CA user's ids may be taken, and the router must run
 * on noble's njs 0.8.2 as well as on the 0.7.9 the live tests use. The shell
 * fragments run for real with bash, against a temp /etc or stand-in user tools.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { renderUbuntuUniverse } from "../../components/core/nginx.render";
import { renderStepUser } from "../../components/core/step-ca.render";
import { prodConfig, tempDir } from "./helpers";

const dir = tempDir("guest-os");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const bash = (script: string, env: Record<string, string> = {}) => {
  const r = spawnSync("bash", ["-c", `set -euo pipefail\n${script}`], { encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

describe("Ubuntu's universe for libnginx-mod-http-js", () => {
  function etc(name: string, osId: string, list: string, sources: string): string {
    const root = path.join(dir, name);
    fs.mkdirSync(path.join(root, "apt/sources.list.d"), { recursive: true });
    fs.writeFileSync(path.join(root, "os-release"), `NAME="x"\nID=${osId}\n`);
    fs.writeFileSync(path.join(root, "apt/sources.list"), list);
    fs.writeFileSync(path.join(root, "apt/sources.list.d/ubuntu.sources"), sources);
    return root;
  }
  const run = (root: string) => bash(renderUbuntuUniverse().replaceAll("/etc/", `${root}/`));
  const read = (root: string) => [fs.readFileSync(path.join(root, "apt/sources.list"), "utf8"), fs.readFileSync(path.join(root, "apt/sources.list.d/ubuntu.sources"), "utf8")];

  it("adds universe beside main on a template's own lines, keeping its mirror", () => {
    const root = etc("main-only", "ubuntu", "deb http://mirror.example/ubuntu noble main restricted\n# deb http://x noble main\n", "Types: deb\nURIs: http://mirror.example/ubuntu\nSuites: noble noble-updates\nComponents: main\n");
    const r = run(root);
    expect(r.status, r.out).toBe(0);
    expect(read(root)).toEqual(["deb http://mirror.example/ubuntu noble main universe restricted\n# deb http://x noble main\n", "Types: deb\nURIs: http://mirror.example/ubuntu\nSuites: noble noble-updates\nComponents: main universe\n"]);
    const again = run(root);
    expect(again.out).toBe("");
    expect(read(root)[1]).toBe("Types: deb\nURIs: http://mirror.example/ubuntu\nSuites: noble noble-updates\nComponents: main universe\n");
  });

  it("leaves sources that already have universe, and Debian, alone", () => {
    const has = etc("has", "ubuntu", "", "Components: main restricted universe multiverse\n");
    const debian = etc("debian", "debian", "deb http://deb.debian.org/debian bookworm main\n", "");
    expect(run(has).out).toBe("");
    expect(run(debian).out).toBe("");
    expect(read(has)[1]).toBe("Components: main restricted universe multiverse\n");
    expect(read(debian)[0]).toBe("deb http://deb.debian.org/debian bookworm main\n");
  });
});

describe("the Step-CA service user", () => {
  // getent/id/groupadd/useradd over two small files, as the template's /etc/passwd and /etc/group.
  function tools(name: string, passwd: string, group: string): Record<string, string> {
    const root = path.join(dir, name);
    const bin = path.join(root, "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(root, "passwd"), passwd);
    fs.writeFileSync(path.join(root, "group"), group);
    const stub = (n: string, body: string) => fs.writeFileSync(path.join(bin, n), `#!/bin/bash\nP=${root}/passwd; G=${root}/group\n${body}\n`, { mode: 0o755 });
    stub("getent", `db=$P; [ "$1" = group ] && db=$G\nawk -F: -v k="$2" '$1 == k || $3 == k { print; found = 1 } END { exit !found }' "$db"`);
    stub("id", `if [ "$1" = -u ]; then awk -F: -v k="$2" '$1 == k { print $3; f = 1 } END { exit !f }' "$P"; else awk -F: -v k="$1" '$1 == k { f = 1 } END { exit !f }' "$P"; fi`);
    stub("groupadd", `echo "$3:x:$2:" >>"$G"`);
    stub("useradd", `echo "\${@: -1}:x:$2:$4::/etc/step-ca:/usr/sbin/nologin" >>"$P"`);
    return { PATH: `${bin}:${process.env.PATH}` };
  }
  const script = renderStepUser(prodConfig());

  it("creates step with the ids its key mount is owned by", () => {
    const env = tools("free", "root:x:0:0::/root:/bin/bash\n", "root:x:0:\n");
    const r = bash(script, env);
    expect(r.status, r.out).toBe(0);
    expect(fs.readFileSync(path.join(dir, "free/passwd"), "utf8")).toContain("step:x:1000:1000:");
    expect(bash(script, env).status).toBe(0);
  });

  it("refuses, naming the owner, when the template already has uid/gid 1000 (Ubuntu's user ubuntu)", () => {
    const r = bash(script, tools("taken", "root:x:0:0::/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\n", "root:x:0:\nubuntu:x:1000:\n"));
    expect(r.status).toBe(1);
    expect(r.out).toContain("step-ca: gid 1000 is already group ubuntu in the guest; set the uid/gid of the guest's /etc/step-ca mount to free ones");
  });

  it("refuses a step user made earlier with other ids", () => {
    const r = bash(script, tools("other", "step:x:999:999::/x:/bin/false\n", "step:x:999:\n"));
    expect(r.status).toBe(1);
    expect(r.out).toContain("the guest's user step is not uid 1000 / gid 1000");
  });
});

describe("the OpenAI router on noble's njs", () => {
  const source = fs.readFileSync(path.join(__dirname, "../../components/core/nginx/openai-router.js"), "utf8");
  it("uses nothing njs 0.8.0 removed (nginx/njs 0.8.2 CHANGES) nor syntax the live tests' 0.7.9 lacks", () => {
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "");
    for (const gone of ["requestBody", "responseBody", "bytesFrom", "fromBytes", "fromUTF8", "toBytes", "toUTF8"]) expect(code).not.toContain(gone);
    expect(code).not.toMatch(/\?\.|\?\?/);
    expect(source).toContain("0.8.2");
  });
});
