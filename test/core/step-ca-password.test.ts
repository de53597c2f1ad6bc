/**
 * Rotating phoenix:stepCaPassword: the install script's rotation run for real
 * with bash against a temp STEPPATH, with stand-ins for `step` (change-pass
 * opens a key only with the password it was encrypted with, and writes the new
 * one 0644 as v0.28.7 does), `runuser`, `chown` and `systemctl` that record
 * their calls.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { renderStepCaPasswordRotation, STEP_PATH } from "../../components/core/step-ca.render";
import { prodConfig, tempDir } from "./helpers";

const dir = tempDir("step-pass");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const steppath = path.join(dir, "step");
const bin = path.join(dir, "bin");
const log = path.join(dir, "calls");
const at = (p: string) => path.join(steppath, p);

fs.mkdirSync(bin, { recursive: true });
const stub = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 });
stub("runuser", `shift 3; exec "$@"`);
stub("chown", `exit 0`);
stub("systemctl", `echo "systemctl $*" >>${log}`);
stub(
  "env",
  // runuser -u step -- env STEPPATH=… step …
  `shift; exec "$@"`,
);
stub(
  "step",
  `echo "step $*" >>${log}
if [ "$1 $2" = "crypto change-pass" ]; then
  key=$3; shift 3
  while [ $# -gt 0 ]; do case $1 in --password-file) old=$2;; --new-password-file) new=$2;; --out) out=$2;; esac; shift 2; done
  [ "$(cat "$key")" = "encrypted with $(cat "$old")" ] || { echo "x509: decryption password incorrect" >&2; exit 1; }
  echo "encrypted with $(cat "$new")" >"$out"; chmod 0644 "$out"
fi`,
);

const script = renderStepCaPasswordRotation(prodConfig()).replaceAll(STEP_PATH, steppath);

function setUp(opts: { marker?: boolean; stored: string; next: string; rootKey?: string; intermediateKey?: string }) {
  fs.rmSync(steppath, { recursive: true, force: true });
  fs.mkdirSync(at("secrets"), { recursive: true });
  fs.mkdirSync(at("config"), { recursive: true });
  if (opts.marker ?? true) fs.writeFileSync(at(".phoenix-initialised"), "");
  fs.writeFileSync(at("secrets/password"), opts.stored);
  fs.writeFileSync(at("secrets/password.new"), opts.next);
  fs.writeFileSync(at("secrets/root_ca_key"), `encrypted with ${opts.rootKey ?? opts.stored}`);
  fs.writeFileSync(at("secrets/intermediate_ca_key"), `encrypted with ${opts.intermediateKey ?? opts.stored}`);
}

function run() {
  const r = spawnSync("bash", ["-c", `set -euo pipefail\n${script}`], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}
const read = (p: string) => fs.readFileSync(at(p), "utf8").trimEnd();
const calls = () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n") : []);

beforeEach(() => fs.rmSync(log, { force: true }));

describe("rotating phoenix:stepCaPassword", () => {
  it("changes nothing when the password is the one the keys have", () => {
    setUp({ stored: "old", next: "old" });
    expect(run().status).toBe(0);
    expect(fs.existsSync(at("secrets/password.new"))).toBe(false);
    expect(read("secrets/intermediate_ca_key")).toBe("encrypted with old");
    expect(calls()).toEqual([]);
  });

  it("re-encrypts both keys with the new password (0600), renews the admin provisioner's key, then replaces the password file and restarts step-ca", () => {
    setUp({ stored: "old", next: "new" });
    const r = run();
    expect(r.status, r.out).toBe(0);
    expect(read("secrets/root_ca_key")).toBe("encrypted with new");
    expect(read("secrets/intermediate_ca_key")).toBe("encrypted with new");
    expect((fs.statSync(at("secrets/intermediate_ca_key")).mode & 0o777).toString(8)).toBe("600");
    expect(read("secrets/password")).toBe("new");
    expect(fs.existsSync(at("secrets/password.new"))).toBe(false);
    expect(calls()).toContain(`step ca provisioner update admin --create --password-file ${at("secrets/password.new")} --ca-config ${at("config/ca.json")}`);
    expect(calls().at(-1)).toBe("systemctl try-restart step-ca");
  });

  it("finishes a rotation an interrupted run left half done", () => {
    setUp({ stored: "old", next: "new", rootKey: "new" });
    const r = run();
    expect(r.status, r.out).toBe(0);
    expect([read("secrets/root_ca_key"), read("secrets/intermediate_ca_key"), read("secrets/password")]).toEqual(["encrypted with new", "encrypted with new", "new"]);
  });

  it("refuses with the procedure, changing nothing, when neither password opens the keys", () => {
    setUp({ stored: "typo", next: "new", rootKey: "lost", intermediateKey: "lost" });
    const r = run();
    expect(r.status).toBe(1);
    expect(r.out).toContain("Set phoenix:stepCaPassword back to the password the CA's keys are encrypted with");
    expect(r.out).not.toContain("new\n");
    expect([read("secrets/root_ca_key"), read("secrets/intermediate_ca_key"), read("secrets/password")]).toEqual(["encrypted with lost", "encrypted with lost", "typo"]);
    expect(fs.existsSync(at("secrets/password.new"))).toBe(false);
    expect(calls().some((c) => c.includes("provisioner update"))).toBe(false);
  });

  it("before the PKI exists, the password is simply put in place for step ca init", () => {
    setUp({ marker: false, stored: "", next: "first" });
    expect(run().status).toBe(0);
    expect(read("secrets/password")).toBe("first");
    expect(calls()).toEqual([]);
  });
});
