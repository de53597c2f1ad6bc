import { shellcheck } from "../support";
import { describe, expect, it } from "vitest";
import { renderPortainerServerFiles } from "../../components/docker/portainer";

const spec = { version: "2.33.2", port: 9443, dnsNames: ["portainer.internal.thinkheads.ai"], address: "10.0.0.111", caUrl: "https://ca.internal.thinkheads.ai:9000" };

describe("Portainer certificate renewal", () => {
  const files = renderPortainerServerFiles(spec);
  const script = files.find((f) => f.path === "/usr/local/sbin/phoenix-portainer-cert")!;

  it("ships the compose file, the script and an hourly timer", () => {
    expect(files.map((f) => f.path)).toEqual([
      "/opt/phoenix/portainer/compose.yaml",
      "/usr/local/sbin/phoenix-portainer-cert",
      "/etc/systemd/system/phoenix-portainer-cert.service",
      "/etc/systemd/system/phoenix-portainer-cert.timer",
    ]);
    expect(script.mode).toBe("0755");
    expect(files[3]!.content).toContain("OnUnitActiveSec=1h");
  });

  it("issues through ACME for the names and the address, renews with the certificate itself", () => {
    expect(script.content).toContain('step ca certificate portainer.internal.thinkheads.ai "$cert.new" "$key.new" --san portainer.internal.thinkheads.ai --san 10.0.0.111 --provisioner acme --standalone "${ca[@]}" --force');
    expect(script.content).toContain('step ca renew --force "${ca[@]}" "$cert" "$key"');
    expect(script.content).toContain("--root /etc/phoenix/step-ca-root.pem");
    expect(script.content).not.toMatch(/password/i);
  });

  it("passes shellcheck", () => {
    expect(() => shellcheck("portainer certificate script", script.content)).not.toThrow();
  });

  it("refuses a certificate without a name", () => {
    expect(() => renderPortainerServerFiles({ ...spec, dnsNames: [] })).toThrow("at least one DNS name");
  });
});
