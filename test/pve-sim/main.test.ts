/**
 * `npm run sim` from the repository alone: the simulator loads its reduced
 * schemas and appliance catalogue from test/pve-sim/schema/ and serves, so the
 * dev stack works from a fresh clone.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, ROOT, tempDir } from "../support";

function get(url: string, token: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers: { Authorization: `PVEAPIToken=${token}` } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
}

describe("npm run sim", () => {
  const children: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const c of children) c.kill("SIGTERM");
  });

  for (const version of ["9", "8"]) {
    it(`serves PVE ${version} from the repository's own schema files`, async () => {
      const cwd = tempDir("sim-main");
      const [port, sshPort] = [await freePort(), await freePort()];
      const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), [path.join(ROOT, "test", "pve-sim", "main.ts")], {
        cwd,
        env: { ...process.env, PVE_SIM_PORT: String(port), PVE_SIM_SSH_PORT: String(sshPort), PVE_SIM_VERSION: version },
      });
      children.push(child);
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out += c.toString()));
      await new Promise<void>((resolve, reject) => {
        const timer = setInterval(() => {
          if (/sandbox root:/.test(out)) {
            clearInterval(timer);
            resolve();
          }
        }, 50);
        child.once("exit", (code) => {
          clearInterval(timer);
          reject(new Error(`npm run sim exited ${code}:\n${out}`));
        });
      });
      const token = /token: +(\S+=\S+)/.exec(out)?.[1] as string;
      const ca = fs.readFileSync(path.join(cwd, ".pve-sim", "ca.pem"), "utf8");
      const version_ = await get(`https://127.0.0.1:${port}/api2/json/version`, token, ca);
      expect(version_.status).toBe(200);
      expect(JSON.parse(version_.body).data.version).toMatch(new RegExp(`^${version}\\.`));
      // The catalogue the simulator seeds comes from the reduced aplinfo.dat.
      const apl = await get(`https://127.0.0.1:${port}/api2/json/nodes/pve-dev/aplinfo`, token, ca);
      const entries = JSON.parse(apl.body).data as Array<{ template?: string; description?: string }>;
      expect(entries.some((e) => /^ubuntu-24\.04-standard_/.test(e.template ?? ""))).toBe(true);
    });
  }
});
