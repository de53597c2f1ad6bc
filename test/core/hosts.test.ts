import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { internalHosts } from "../../components/core/routing";
import { renderHostsBlock } from "../../components/render/hosts";
import { loadStack, shellcheck, tempDir } from "../support";

/** Runs the block against a copy of /etc/hosts in a temp dir. */
function apply(hostsFile: string, snippet: string): void {
  execFileSync("bash", ["-euo", "pipefail", "-c", snippet.replaceAll("/etc/hosts", hostsFile)]);
}

describe("internal names", () => {
  const config = loadStack("Pulumi.prod.yaml");

  it("point the CA at Traefik for every service host, and Traefik and the gateway at the CA", () => {
    const ca = internalHosts(config, "step-ca");
    expect(ca.map((e) => e.ip)).toEqual(["10.0.0.12", "10.0.0.111"]);
    expect(ca[0]!.names).toContain("vllm-chat.internal.thinkheads.ai");
    // Portainer's server answers its own ACME challenge, for its own name; its service host stays Traefik's
    expect(ca[1]!.names).toEqual(["vm-1001.internal.thinkheads.ai"]);
    expect(ca[0]!.names).toContain("portainer.internal.thinkheads.ai");
    expect(internalHosts(config, "traefik")).toEqual([{ ip: "10.0.0.10", names: ["ca.internal.thinkheads.ai"] }]);
    expect(internalHosts(config, "nginx-gateway")).toEqual([{ ip: "10.0.0.10", names: ["ca.internal.thinkheads.ai"] }]);
  });

  it("are written in a block of their own, keeping PVE's and the user's lines, and a re-run changes nothing", () => {
    const dir = tempDir("hosts");
    const file = path.join(dir, "hosts");
    const pve = "127.0.0.1 localhost\n# --- BEGIN PVE ---\n10.0.0.12 traefik.internal.thinkheads.ai traefik\n# --- END PVE ---\n10.9.9.9 mine\n";
    fs.writeFileSync(file, pve);
    const snippet = renderHostsBlock(internalHosts(config, "traefik"));
    shellcheck("hosts block", `#!/bin/bash\n${snippet}\n`);
    apply(file, snippet);
    const once = fs.readFileSync(file, "utf8");
    expect(once).toBe(`${pve}# BEGIN phoenix internal names\n10.0.0.10 ca.internal.thinkheads.ai\n# END phoenix internal names\n`);
    const mtime = fs.statSync(file).mtimeMs;
    apply(file, snippet);
    expect(fs.readFileSync(file, "utf8")).toBe(once);
    expect(fs.statSync(file).mtimeMs).toBe(mtime);
    apply(file, renderHostsBlock([{ ip: "10.0.0.11", names: ["ca.internal.thinkheads.ai"] }]));
    expect(fs.readFileSync(file, "utf8")).toBe(`${pve}# BEGIN phoenix internal names\n10.0.0.11 ca.internal.thinkheads.ai\n# END phoenix internal names\n`);
    fs.rmSync(dir, { recursive: true });
  });
});
