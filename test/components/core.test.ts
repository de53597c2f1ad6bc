import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import { MOCK_CA, runProgram, type Program } from "../mock-program";
import { prodWithSecrets } from "../stacks/fixtures";

const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const isSecret = (v: unknown) => v !== null && typeof v === "object" && SECRET_SIG in v;
const valueOf = (o: unknown) => new Promise((resolve) => (pulumi.output(o) as pulumi.Output<unknown>).apply(resolve));

let program: Program;
beforeAll(async () => {
  program = await runProgram(prodWithSecrets());
});

describe("the core tier of the prod stack", () => {
  it("orders CA → Traefik → gateway through the data they pass on", () => {
    expect(program.dependenciesOf("traefik-install-run")).toContain("step-ca-install-run");
    const gateway = program.dependenciesOf("gateway-install-run");
    expect(gateway).toContain("traefik-install-run");
    expect(gateway).toContain("step-ca-install-run");
    expect(program.dependenciesOf("step-ca-install-run")).not.toContain("traefik-install-run");
  });

  it("installs into each role's own container, after the container is configured", () => {
    expect(program.byName("step-ca-install-run").inputs.create).toBe("pct exec 103 -- bash -s");
    expect(program.byName("traefik-install-run").inputs.create).toBe("pct exec 102 -- bash -s");
    expect(program.byName("gateway-install-run").inputs.create).toBe("pct exec 101 -- bash -s");
    expect(program.dependenciesOf("step-ca-install-run")).toContain("ct-103-root");
  });

  it("gives Traefik and the gateway the CA's root, and exports its fingerprint", async () => {
    // Secret as a whole: it holds the dashboard's password hash, which Pulumi keeps encrypted in the state.
    const filesInput = program.byName("traefik-install").inputs.files;
    expect(isSecret(filesInput)).toBe(true);
    const traefikFiles = (filesInput as { value: { path: string; content: string }[] }).value;
    expect(traefikFiles.find((f) => f.path === "/etc/traefik/step-ca-root.pem")?.content).toBe(MOCK_CA.rootPem);
    expect(await valueOf(program.exports.caFingerprint)).toBe(MOCK_CA.fingerprint);
    expect(program.exports.gatewayUrl).toBe("https://internal.thinkheads.ai");
  });

  it("keeps the CA password secret: only the CA's install script carries it, as a secret", () => {
    const stdin = program.byName("step-ca-install-run").inputs.stdin;
    expect(isSecret(stdin)).toBe(true);
    expect((stdin as { value: string }).value).toContain("value-of-stepCaPassword");
    for (const r of program.resources) {
      if (r.name === "step-ca-install-run") continue;
      expect(JSON.stringify(r.inputs), r.name).not.toContain("value-of-stepCaPassword");
    }
    expect(JSON.stringify(program.exports)).not.toContain("value-of-stepCaPassword");
  });

  it("ships the dashboard's users file (a bcrypt hash of phoenix:traefikDashboardPassword) only in Traefik's secret install script", () => {
    const stdin = program.byName("traefik-install-run").inputs.stdin;
    expect(isSecret(stdin)).toBe(true);
    // The users file is staged base64-encoded: decode every staged block and look for the admin line.
    const staged = [...(stdin as { value: string }).value.matchAll(/<<'PHOENIX_FILE'\n([\s\S]*?)\nPHOENIX_FILE/g)].map((m) => Buffer.from(m[1]!.replace(/\n/g, ""), "base64").toString());
    expect(staged.some((f) => /^admin:\$2b\$10\$[./A-Za-z0-9]{53}\n$/.test(f))).toBe(true);
    for (const r of program.resources) expect(JSON.stringify(r.inputs), r.name).not.toContain("value-of-traefikDashboardPassword");
    expect(JSON.stringify(program.exports)).not.toContain("value-of-traefikDashboardPassword");
  });
});
