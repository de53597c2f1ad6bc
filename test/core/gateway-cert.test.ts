/**
 * The gateway certificate script, run for real with bash and stand-ins for
 * `step`, `systemctl` and `nginx` that record their calls: it issues when the
 * certificate is missing, due, or for other names, and otherwise does nothing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GATEWAY_LAYOUT, renderGatewayCertFiles, type GatewayLayout } from "../../components/core/nginx.render";
import { stepCaEndpoints, stepCliRelease } from "../../components/core/step-ca.render";
import type { StackConfig } from "../../stacks/schema";
import { prodConfig, runBash, tempDir } from "./helpers";

const config = prodConfig();
let dir: string;
let layout: GatewayLayout;

const calls = () => (fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n") : []);

beforeAll(() => {
  dir = tempDir("gateway-cert");
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  const log = path.join(dir, "calls");
  // `step ca certificate <subject> <crt> <key> …` writes both files; needs-renewal answers with $DUE.
  fs.writeFileSync(
    path.join(bin, "step"),
    `#!/bin/sh\necho "step $*" >>${log}\nif [ "$1 $2" = "ca certificate" ]; then echo cert >"$4"; echo key >"$5"; fi\nif [ "$1 $2" = "certificate needs-renewal" ]; then exit "\${DUE:-1}"; fi\n`,
    { mode: 0o755 },
  );
  for (const tool of ["systemctl", "nginx"]) fs.writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >>${log}\n`, { mode: 0o755 });
  layout = { ...GATEWAY_LAYOUT, certFile: path.join(dir, "tls/gateway.crt"), keyFile: path.join(dir, "tls/gateway.key"), acmeRoot: path.join(dir, "acme") };
  fs.mkdirSync(path.join(dir, "tls"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function run(c: StackConfig, due = "1") {
  fs.rmSync(path.join(dir, "calls"), { force: true });
  const script = renderGatewayCertFiles(c, { caUrl: stepCaEndpoints(c).caUrl, stepCli: stepCliRelease(c) }, layout)[0]!.content;
  return runBash(script, { PATH: `${path.join(dir, "bin")}:${process.env.PATH}`, DUE: due });
}

describe("the gateway certificate script", () => {
  it("issues a certificate for every routed host when there is none, then reloads nginx after nginx -t", async () => {
    const r = await run(config);
    expect(r.status, r.out).toBe(0);
    const issued = calls().find((c) => c.startsWith("step ca certificate"))!;
    expect(issued).toContain(`step ca certificate internal.thinkheads.ai ${layout.certFile}.new ${layout.keyFile}.new --san portainer.internal.thinkheads.ai --san grafana.internal.thinkheads.ai --san internal.thinkheads.ai`);
    expect(issued).toContain(`--provisioner acme --webroot ${layout.acmeRoot} --ca-url https://ca.internal.thinkheads.ai:9000`);
    expect(calls().slice(-3)).toEqual(["systemctl is-active --quiet nginx", "nginx -t -q", "systemctl reload nginx"]);
    expect(fs.readFileSync(layout.certFile, "utf8")).toBe("cert\n");
    expect((fs.statSync(layout.keyFile).mode & 0o777).toString(8)).toBe("600");
  });

  it("does nothing while the certificate is not due", async () => {
    const r = await run(config, "1");
    expect(r.status, r.out).toBe(0);
    expect(calls()).toEqual([`step certificate needs-renewal ${layout.certFile} --expires-in 67%`]);
  });

  it("reissues when the certificate is due", async () => {
    await run(config, "0");
    expect(calls().some((c) => c.startsWith("step ca certificate"))).toBe(true);
  });

  it("reissues at once when the routed hosts change", async () => {
    const more = structuredClone(config);
    more.routes.push({ host: `n8n.${config.host.domain}`, path: "/", service: "n8n", byModel: false, stripPrefix: false, websocket: true });
    await run(more, "1");
    expect(calls().find((c) => c.startsWith("step ca certificate"))).toContain("--san n8n.internal.thinkheads.ai");
  });
});
