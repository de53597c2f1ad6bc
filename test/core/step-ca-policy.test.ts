/**
 * The CA's issuance policy: exactly the names and addresses Phoenix's guests
 * put on certificates, written into ca.json by the install script (run for
 * real with bash and jq against a temp STEPPATH).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acmeNames } from "../../stacks/routing";
import { renderStepCaPolicy, stepCaPolicy, STEP_PATH } from "../../components/core/step-ca.render";
import { prodConfig, tempDir } from "./helpers";

const config = prodConfig();
const dir = tempDir("step-policy");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("Step-CA's name policy", () => {
  const policy = stepCaPolicy(config);

  it("allows every name a guest asks for, the CA's own, and no other name of the domain", () => {
    for (const n of acmeNames(config)) expect(policy.x509.allow.dns).toContain(n.name);
    expect(policy.x509.allow.dns).toContain("ca.internal.thinkheads.ai");
    expect(policy.x509.allow.dns).toContain("internal.thinkheads.ai");
    // Exact names only: a "*." or "." entry would let anyone on the LAN order any name one label down.
    expect(policy.x509.allow.dns.filter((d) => d.startsWith("*") || d.startsWith("."))).toEqual([]);
    expect(policy.x509.allow.dns).not.toContain("evil.internal.thinkheads.ai");
  });

  it("allows only the addresses certificates carry: the CA's and the Portainer server's", () => {
    const addressOf = (type: string) => config.guests.find((g) => g.role?.type === type)!.network.ip!.split("/")[0];
    expect(policy.x509.allow.ip).toEqual([`${addressOf("step-ca")}/32`, `${addressOf("portainer-server")}/32`].sort());
  });

  it("is written into ca.json, keeping everything else, and step-ca restarted only when it changed", () => {
    const steppath = path.join(dir, "step");
    const bin = path.join(dir, "bin");
    fs.mkdirSync(path.join(steppath, "config"), { recursive: true });
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "chown"), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "systemctl"), `#!/bin/sh\necho "systemctl $*" >>${dir}/calls\n`, { mode: 0o755 });
    const caJson = path.join(steppath, "config/ca.json");
    fs.writeFileSync(caJson, JSON.stringify({ root: "certs/root_ca.crt", authority: { provisioners: [{ type: "ACME", name: "acme" }] } }));
    const run = () => spawnSync("bash", ["-c", `set -euo pipefail\n${renderStepCaPolicy(config).replaceAll(STEP_PATH, steppath)}`], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    const first = run();
    expect(first.status, first.stderr).toBe(0);
    const written = JSON.parse(fs.readFileSync(caJson, "utf8")) as { root: string; authority: { provisioners: unknown[]; policy: unknown } };
    expect(written.authority.policy).toEqual(policy);
    expect(written.authority.provisioners).toEqual([{ type: "ACME", name: "acme" }]);
    expect(written.root).toBe("certs/root_ca.crt");
    expect((fs.statSync(caJson).mode & 0o777).toString(8)).toBe("600");
    const second = run();
    expect(second.status).toBe(0);
    expect(fs.readFileSync(path.join(dir, "calls"), "utf8")).toBe("systemctl try-restart step-ca\n");
  });
});
