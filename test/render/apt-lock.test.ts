/**
 * Every apt-get Phoenix renders waits for apt's locks (providers/ssh/apt.ts): the stacks'
 * rendered scripts (node, containers, VM user data) and the scripts providers render at apply
 * time are scanned for an apt-get without DPkg::Lock::Timeout, an `apt-get update` outside the
 * retry, or the `apt` command. The update retry itself is run against stand-ins and real apt.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { APT_GET, aptGetUpdate, aptMarkHold } from "../../providers/ssh/apt";
import { renderNvidiaInstall } from "../../providers/host/nvidia.scripts";
import { renderLayer, renderSeal } from "../../providers/template/layers";
import { renderNvidiaInstall as renderComposeHostNvidia, type GpuStack } from "../../components/compose-host/user-data";
import { renderTailscaleJoin } from "../../components/tailscale/tailscale.render";
import { SECRET_PLACEHOLDER } from "../../stacks/engine";
import { registrationsOf } from "../machine/registrations";
import { shellcheck } from "../support";

/** The rendered `apt-get update` line inside aptGetUpdate's retry. */
const UPDATE_IN_RETRY = /out="\$\(LC_ALL=C apt-get -o DPkg::Lock::Timeout=\d+ update\b/;

/** Each apt-get or apt invocation in `text` that does not wait for apt's locks, with its line. */
export function aptViolations(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    // Comments only mention apt-get; `${#x[@]}` is no comment.
    const line = raw.replace(/(^|\s)#.*$/, "");
    for (const m of line.matchAll(/\bapt-get\b(?!-)/g)) {
      const rest = line.slice(m.index);
      if (!rest.startsWith(`${APT_GET} `)) out.push(`apt-get without the lock wait: ${raw.trim()}`);
      else if (/^\S+ -o \S+ update\b/.test(rest) && !UPDATE_IN_RETRY.test(line)) out.push(`apt-get update outside the lists-lock retry: ${raw.trim()}`);
    }
    if (/(^|[\s;&|(`"'])apt\s+(install|update|upgrade|full-upgrade|dist-upgrade|remove|purge|autoremove|reinstall)\b/.test(line)) out.push(`apt instead of apt-get: ${raw.trim()}`);
  }
  return out;
}

/** Every string anywhere in `value` (resource inputs, secrets unwrapped by walking into them). */
function strings(value: unknown, found: string[] = []): string[] {
  if (typeof value === "string") found.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, found);
  else if (value && typeof value === "object") for (const v of Object.values(value)) strings(v, found);
  return found;
}

describe("the apt lock check", () => {
  it("refuses apt-get and apt without the wait, and an update outside the retry", () => {
    expect(aptViolations("apt-get install -y htop")).toHaveLength(1);
    expect(aptViolations("x && DEBIAN_FRONTEND=noninteractive apt-get install -y htop")).toHaveLength(1);
    expect(aptViolations("  - - apt-get\n    - install")).toHaveLength(1);
    expect(aptViolations(`${APT_GET} update -q`)).toHaveLength(1);
    expect(aptViolations("apt update && apt install -y htop")).toHaveLength(1);
    expect(aptViolations(`${APT_GET} install -y htop\n# apt-get update in a comment\n[ "\${#missing[@]}" -gt 0 ]; apt-mark hold x`)).toEqual([]);
    expect(aptViolations(aptGetUpdate("-qq"))).toEqual([]);
  });
});

describe("aptGetUpdate", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-apt-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const script = (body: string) => `#!/bin/bash\nset -euo pipefail\n${body}\n`;

  it("passes shellcheck as a statement, in an && list and nested in a block", () => {
    expect(() => shellcheck("apt update", script(`${aptGetUpdate("-qq")}\nif true; then\n  ${aptGetUpdate("", "  ")}\nfi\n${aptGetUpdate("-q")} && ${APT_GET} install -y htop`))).not.toThrow();
  });

  it("refuses options that are not short flags", () => {
    expect(() => aptGetUpdate("-q; rm -rf /")).toThrow(/only short flags/);
  });

  /** Runs the retry with apt-get and sleep stood in for: apt-get answers `answers` in turn (exit code, output). */
  function withStandIns(answers: [number, string][]) {
    const bin = fs.mkdtempSync(path.join(dir, "bin-"));
    const log = path.join(bin, "log");
    const lines = answers.map(([code, text], i) => `  ${i + 1}) echo ${JSON.stringify(text)} >&2; exit ${code} ;;`).join("\n");
    fs.writeFileSync(path.join(bin, "apt-get"), `#!/bin/bash\necho "apt-get $*" >>${log}\nn=$(grep -c '^apt-get' ${log})\ncase $n in\n${lines}\nesac\nexit 0\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "sleep"), `#!/bin/bash\necho "sleep $*" >>${log}\n`, { mode: 0o755 });
    const r = spawnSync("bash", ["-c", script(`${aptGetUpdate("-qq")} && echo updated`)], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    return { ...r, log: fs.readFileSync(log, "utf8").trim().split("\n") };
  }

  it("retries while another apt holds the lists lock, then succeeds", () => {
    const lock = "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/";
    const r = withStandIns([[100, lock], [100, lock]]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("updated");
    expect(r.log).toEqual([`${APT_GET} update -qq`, "sleep 5", `${APT_GET} update -qq`, "sleep 5", `${APT_GET} update -qq`]);
  });

  it("fails at once, with apt-get's message, on any other failure", () => {
    const r = withStandIns([[100, "E: The repository 'https://example.org stable Release' does not have a Release file."]]);
    expect(r.status).toBe(100);
    expect(r.stdout).not.toContain("updated");
    expect(r.stderr).toContain("does not have a Release file");
    expect(r.log).toEqual([`${APT_GET} update -qq`]);
  });

  const realApt = spawnSync("apt-get", ["--version"]).status === 0 && spawnSync("python3", ["--version"]).status === 0;
  it.skipIf(!realApt)("waits for real apt's lists lock held by another process (apt-get update alone would fail)", async () => {
    // apt in a scratch root (APT_CONFIG), its lists lock held with fcntl as apt holds it, released when the retry first sleeps.
    const root = fs.mkdtempSync(path.join(dir, "root-"));
    for (const d of ["lists/partial", "cache/archives/partial", "dpkg", "etc/sources.list.d", "etc/preferences.d", "bin"]) fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.writeFileSync(path.join(root, "dpkg/status"), "");
    fs.writeFileSync(path.join(root, "etc/sources.list"), "");
    const conf = path.join(root, "apt.conf");
    fs.writeFileSync(conf, [`Dir::State::Lists "${root}/lists/";`, `Dir::State::status "${root}/dpkg/status";`, `Dir::Cache "${root}/cache/";`, `Dir::Etc::sourcelist "${root}/etc/sources.list";`, `Dir::Etc::sourceparts "${root}/etc/sources.list.d/";`, `Dir::Etc::preferencesparts "${root}/etc/preferences.d/";`, ""].join("\n"));
    fs.writeFileSync(path.join(root, "bin/sleep"), `#!/bin/bash\necho sleep >>${root}/slept\ntouch ${root}/release\n/bin/sleep 0.5\n`, { mode: 0o755 });
    const holder = spawn("python3", ["-c", `import fcntl, os, time\nf = open(${JSON.stringify(`${root}/lists/lock`)}, "w")\nfcntl.lockf(f, fcntl.LOCK_EX)\nopen(${JSON.stringify(`${root}/held`)}, "w").close()\nwhile not os.path.exists(${JSON.stringify(`${root}/release`)}): time.sleep(0.05)\n`]);
    try {
      while (!fs.existsSync(path.join(root, "held"))) await new Promise((r) => setTimeout(r, 50));
      const env = { ...process.env, APT_CONFIG: conf, PATH: `${root}/bin:${process.env.PATH}` };
      expect(spawnSync("apt-get", ["update"], { env, encoding: "utf8" }).stderr).toContain("Unable to lock directory");
      const r = spawnSync("bash", ["-c", script(aptGetUpdate("-qq"))], { env, encoding: "utf8" });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(fs.readFileSync(path.join(root, "slept"), "utf8")).toBe("sleep\n");
    } finally {
      holder.kill();
    }
  });
});

describe("aptMarkHold", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phoenix-apt-mark-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("refuses what is not a package name", () => {
    expect(() => aptMarkHold(["docker-ce", "x; reboot"])).toThrow(/not package names: "x; reboot"/);
    expect(() => aptMarkHold([])).toThrow(/no packages/);
  });

  const realApt = spawnSync("apt-mark", ["--version"]).status === 0 && spawnSync("dpkg", ["--version"]).status === 0 && spawnSync("python3", ["--version"]).status === 0;
  it.skipIf(!realApt)("waits while another process holds dpkg's frontend lock, where apt-mark alone fails at once", async () => {
    // apt and dpkg in a scratch root: apt's cache from a dpkg status with one installed package, dpkg pointed at it.
    const root = fs.mkdtempSync(path.join(dir, "root-"));
    for (const d of ["dpkg/updates", "dpkg/info", "lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d", "bin"]) fs.mkdirSync(path.join(root, d), { recursive: true });
    for (const f of ["dpkg/available", "etc/sources.list"]) fs.writeFileSync(path.join(root, f), "");
    fs.writeFileSync(path.join(root, "dpkg/status"), "Package: hello\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: X <x@example.org>\nArchitecture: amd64\nVersion: 1.0\nDescription: test\n\n");
    const conf = path.join(root, "apt.conf");
    fs.writeFileSync(conf, [`Dir::State::Lists "${root}/lists/";`, `Dir::State::status "${root}/dpkg/status";`, `Dir::Cache "${root}/cache/";`, `Dir::Etc::sourcelist "${root}/etc/sources.list";`, `Dir::Etc::sourceparts "${root}/etc/sources.list.d/";`, `Dir::Etc::preferencesparts "${root}/etc/preferences.d/";`, `DPkg::Options { "--admindir=${root}/dpkg"; };`, ""].join("\n"));
    fs.writeFileSync(path.join(root, "bin/sleep"), `#!/bin/sh\necho sleep >>${root}/slept\ntouch ${root}/release\n/bin/sleep 0.5\n`, { mode: 0o755 });
    // The lock held with fcntl as apt and dpkg hold it, released when the retry first sleeps.
    const holder = spawn("python3", ["-c", `import fcntl, os, time\nf = open(${JSON.stringify(`${root}/dpkg/lock-frontend`)}, "w")\nfcntl.lockf(f, fcntl.LOCK_EX)\nopen(${JSON.stringify(`${root}/held`)}, "w").close()\nwhile not os.path.exists(${JSON.stringify(`${root}/release`)}): time.sleep(0.05)\n`]);
    try {
      while (!fs.existsSync(path.join(root, "held"))) await new Promise((r) => setTimeout(r, 50));
      const env = { ...process.env, APT_CONFIG: conf, PATH: `${root}/bin:${process.env.PATH}` };
      const bare = spawnSync("apt-mark", ["hold", "hello"], { env: { ...env, LC_ALL: "C" }, encoding: "utf8" });
      expect(bare.status).toBe(100);
      expect(bare.stderr).toContain("dpkg frontend lock was locked by another process");
      const r = spawnSync("sh", ["-c", `set -e\n${aptMarkHold(["hello"])}\n`], { env, encoding: "utf8" });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      expect(r.stdout).toBe("hello set on hold.\n");
      expect(fs.readFileSync(path.join(root, "slept"), "utf8")).toBe("sleep\n");
      expect(spawnSync("dpkg", [`--admindir=${root}/dpkg`, "--get-selections", "hello"], { encoding: "utf8" }).stdout).toMatch(/^hello\s+hold$/m);
    } finally {
      holder.kill();
    }
  });
});

describe("every apt-get Phoenix renders waits for apt's locks", () => {
  const scanned: string[] = [];
  it.each(["prod", "dev", "vrooli", "cluster"] as const)("the %s stack's scripts, files and user data", async (stack) => {
    const texts = (await registrationsOf(stack)).flatMap((r) => strings(r.inputs));
    const withApt = texts.filter((t) => t.includes("apt-get"));
    expect(withApt.length).toBeGreaterThan(0);
    expect(withApt.flatMap(aptViolations)).toEqual([]);
    scanned.push(...withApt);
  });

  it("the scan saw the apt-get of each renderer the stacks use", () => {
    const seen = scanned.join("\n");
    const renderers = {
      packages: `${APT_GET} install -y -qq --no-install-recommends "\${missing[@]}"`,
      sanoid: `${APT_GET} install -y sanoid`,
      nfs: `${APT_GET} install -y nfs-kernel-server`,
      grafana: `${APT_GET} install -y -qq --no-install-recommends --allow-downgrades`,
      tailscale: `${APT_GET} install -y -q --allow-change-held-packages tailscale=`,
      composeHostNvidia: `${APT_GET} install -y -q nvidia-driver-`,
    };
    expect(Object.entries(renderers).filter(([, line]) => !seen.includes(line)).map(([name]) => name)).toEqual([]);
  });

  it("the scripts providers render at apply: host NVIDIA driver, template layers, seal", () => {
    const scripts = {
      nvidia: renderNvidiaInstall({ version: "580.95.05", runfileUrl: "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.95.05/NVIDIA-Linux-x86_64-580.95.05.run", kernelModuleType: "open" }),
      base: renderLayer({ layer: "base", timezone: "UTC", locale: "en_US.UTF-8", packages: ["htop"] }),
      cuda: renderLayer({ layer: "cuda", driverVersion: "580.95.05", runfileUrl: "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.95.05/NVIDIA-Linux-x86_64-580.95.05.run", cuda: "12.8" }),
      seal: renderSeal(),
    };
    for (const [name, text] of Object.entries(scripts)) {
      expect(text, name).toContain(APT_GET);
      expect(aptViolations(text), name).toEqual([]);
    }
  });

  it("the Tailscale join and a compose host's NVIDIA script stay shellcheck-clean with the retry inside their && lists and blocks", () => {
    const tailscale = renderTailscaleJoin({ version: "1.90.6", distro: "ubuntu", codename: "noble", hostname: "hq", tags: ["phoenix"], userspace: false, waitForCloudInit: true }, SECRET_PLACEHOLDER);
    const nvidia = renderComposeHostNvidia({ branch: "580", driver: "580.95.05-0ubuntu1", cuda: "12.8", containerToolkit: "1.17.8-1" } as GpuStack);
    for (const [name, text] of Object.entries({ tailscale, nvidia })) {
      expect(aptViolations(text), name).toEqual([]);
      expect(() => shellcheck(name, text)).not.toThrow();
    }
  });
});
