/**
 * The doctor against the prod stack's shape served by real local servers, a real
 * sshd as the node and stand-in guests: healthy, then one layer broken at a time,
 * each diagnosed at the layer that broke with the hint that fixes it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runDoctor } from "../../scripts/doctor";
import type { Report } from "../../scripts/doctor/report";
import { startWorld, type World } from "./world";

let world: World;

beforeAll(async () => {
  world = await startWorld();
});
afterAll(async () => {
  await world?.stop();
});
afterEach(async () => {
  await world.reset();
});

async function doctor(): Promise<{ code: number; report: Report }> {
  const { code, text } = await runDoctor(["prod", "--json", "--outputs", world.outputsFile], world.deps);
  return { code, report: JSON.parse(text) as Report };
}

/** The same run as people see it: the table, then the diagnoses. */
const table = async () => runDoctor(["prod", "--outputs", world.outputsFile], world.deps);

const failingServices = (report: Report) => report.diagnoses.map((d) => d.service);
const diagnosisOf = (report: Report, service: string) => report.diagnoses.find((d) => d.service === service);

describe("doctor", () => {
  it("finds every layer of every service healthy: exit 0", async () => {
    const { code, report } = await doctor();
    expect(report.findings.filter((f) => f.status !== "ok")).toEqual([]);
    expect(report.diagnoses).toEqual([]);
    expect(code).toBe(0);
    // Every service is checked at every layer it has: model servers and routed services through the gateway too.
    const layers = (service: string) => [...new Set(report.findings.filter((f) => f.service === service).map((f) => f.layer))];
    expect(layers("vllm-chat")).toEqual(["guest", "firewall", "host", "traefik", "gateway"]);
    expect(layers("qdrant")).toEqual(["guest", "firewall", "host", "traefik", "gateway"]);
    expect(layers("step-ca")).toEqual(["guest", "firewall", "host", "traefik"]);
    expect(layers("grafana")).toEqual(["guest", "firewall", "host", "traefik", "gateway"]);
    expect(report.findings.find((f) => f.service === "vllm-chat" && f.check === "gpu")?.detail).toBe("driver 580.95.05");
    expect(report.findings.find((f) => f.service === "qdrant" && f.layer === "gateway" && f.check === "certificate")?.detail).toContain("Phoenix Doctor Test Root");
    const shown = await table();
    expect(shown.code).toBe(0);
    expect(shown.text).toMatch(/^SERVICE\s+LAYER\s+RESULT\s+DETAIL$/m);
    expect(shown.text).toContain("All 10 services healthy.");
  });

  it("unit failed: diagnosed in the guest, with the unit's journal and a restart", async () => {
    world.setGuest(802, (s) => (s.units["vllm.service"]!.active = "failed"));
    const { code, report } = await doctor();
    expect(code).toBe(1);
    expect(failingServices(report)).toEqual(["vllm-chat"]);
    expect(diagnosisOf(report, "vllm-chat")).toMatchObject({ layer: "guest", check: "unit", failure: "unit-inactive", detail: "vllm.service is failed" });
    expect(diagnosisOf(report, "vllm-chat")!.hints).toEqual(["pct exec 802 -- journalctl -u vllm.service -n 50 --no-pager", "pct exec 802 -- systemctl restart vllm.service"]);
    expect((await table()).text).toContain("vllm-chat: fails at guest (unit): vllm.service is failed\n  → pct exec 802 -- journalctl -u vllm.service -n 50 --no-pager");
  });

  it("service down: nothing listens in the guest, so the outer layers' failures are not the diagnosis", async () => {
    await world.stopService("ollama");
    world.setGuest(914, (s) => (s.listening = []));
    const { report } = await doctor();
    expect(failingServices(report)).toEqual(["ollama"]);
    const outer = report.findings.filter((f) => f.service === "ollama" && f.status === "fail").map((f) => `${f.layer}/${f.check}:${f.failure}`);
    expect(outer).toEqual(["guest/listening:not-listening", "host/tcp:refused", "host/health:refused", "traefik/route:backend-down", "gateway/route:backend-down"]);
    expect(diagnosisOf(report, "ollama")).toMatchObject({ layer: "guest", check: "listening", failure: "not-listening", detail: "nothing listens on tcp/11434" });
    expect(diagnosisOf(report, "ollama")!.hints.join("\n")).toContain("pct exec 914 -- journalctl -u ollama.service -f");
  });

  it("port closed: the guest listens but the node is refused, diagnosed at the host layer", async () => {
    await world.stopService("portainer");
    const { report } = await doctor();
    expect(failingServices(report)).toEqual(["portainer"]);
    expect(diagnosisOf(report, "portainer")).toMatchObject({ layer: "host", check: "tcp", failure: "refused" });
    const hint = diagnosisOf(report, "portainer")!.hints.join("\n");
    expect(hint).toContain("bind address and port (ssh phoenix@10.0.0.111 sudo ss -ltnp)");
    expect(hint).toContain("firewall rule for tcp/9443 (pvesh get /nodes/phoenix/qemu/1001/firewall/rules");
  });

  it("a service bound to loopback only is told to bind 0.0.0.0", async () => {
    world.setGuest(917, (s) => (s.listening = ["127.0.0.1:8080"]));
    const { report } = await doctor();
    expect(diagnosisOf(report, "llamacpp")).toMatchObject({ layer: "guest", check: "listening", failure: "loopback-only" });
    expect(diagnosisOf(report, "llamacpp")!.hints[0]).toContain("bind 0.0.0.0:8080");
  });

  it("driver mismatch in a GPU container", async () => {
    world.setGuest(801, (s) => (s.driver = "575.64.03"));
    const { report } = await doctor();
    expect(failingServices(report)).toEqual(["vllm-embed"]);
    expect(diagnosisOf(report, "vllm-embed")).toMatchObject({ layer: "guest", check: "gpu", failure: "driver-mismatch", detail: "driver 575.64.03 in the guest, 580.95.05 on the host" });
  });

  it("route missing at Traefik: diagnosed at the traefik layer, fixed by re-rendering its dynamic config", async () => {
    world.dropTraefikRoute("qdrant");
    const { report } = await doctor();
    expect(failingServices(report)).toEqual(["qdrant"]);
    expect(diagnosisOf(report, "qdrant")).toMatchObject({ layer: "traefik", check: "route", failure: "route-missing" });
    expect(diagnosisOf(report, "qdrant")!.detail).toContain("https://qdrant.svc.internal.thinkheads.ai/healthz via 10.0.0.12:443 → 404 from Traefik");
    expect(diagnosisOf(report, "qdrant")!.hints[0]).toMatch(/^Traefik has no router for this host: pulumi up re-renders \/etc\/traefik\/dynamic\/phoenix.yml/);
  });

  it("wrong certificate on the gateway: every routed service fails at the gateway's certificate, unrouted ones stay healthy", async () => {
    world.useGatewayCert("other-ca");
    const { report } = await doctor();
    const routed = [...new Set(report.findings.filter((f) => f.layer === "gateway").map((f) => f.service))];
    expect(failingServices(report).sort()).toEqual(routed.sort());
    expect(routed).not.toContain("step-ca");
    for (const service of routed) expect(diagnosisOf(report, service)).toMatchObject({ layer: "gateway", check: "certificate", failure: "cert-untrusted" });
    expect(diagnosisOf(report, "webapp")!.detail).toBe("internal.thinkheads.ai chains to Some Other Root, not to Phoenix Doctor Test Root");
    expect(diagnosisOf(report, "webapp")!.hints[0]).toContain("pct exec 101 -- systemctl start phoenix-gateway-cert.service");
  });

  it("expired certificate on the gateway: diagnosed as expiry, renewed by the renew unit", async () => {
    world.useGatewayCert("expired");
    const { report } = await doctor();
    expect(diagnosisOf(report, "portainer")).toMatchObject({ layer: "gateway", check: "expiry", failure: "cert-expired" });
    expect(diagnosisOf(report, "portainer")!.detail).toMatch(/^internal\.thinkheads\.ai expired Feb {1,2}1 00:00:00 2024 GMT$/);
    expect(diagnosisOf(report, "portainer")!.hints[0]).toMatch(/^renew the gateway's certificate: pct exec 101 -- systemctl start phoenix-gateway-cert.service/);
    // The chain itself is still the stack's: only the dates are wrong.
    expect(report.findings.find((f) => f.service === "portainer" && f.check === "certificate")?.status).toBe("ok");
  });

  it("without outputs or --ca, certificates are shown, not judged, and the run says so", async () => {
    const { code, text } = await runDoctor(["prod", "--json"], { ...world.deps, stackOutputs: async () => undefined });
    const report = JSON.parse(text) as Report;
    expect(report.notes).toEqual([
      "no stack outputs for prod: addresses come from the stack file",
      "no CA root (caRootPem output or --ca): certificate chains are shown, not verified",
      // The stand-in gateway routes every path to its services: no status page, so every layer is probed.
      "status page https://internal.thinkheads.ai/_phoenix/status not read (not a status page: the answer is not JSON): every layer of every service probed",
      "node nvidia-dkms: DKMS has no nvidia 580.95.05 module yet; pulumi up installs the driver",
    ]);
    expect(report.findings.find((f) => f.service === "qdrant" && f.check === "certificate")).toMatchObject({ status: "skip", detail: expect.stringContaining("issued by Phoenix Doctor Test Root") });
    expect(code).toBe(0);
  });

  it("kernel-upgrade preflight: an installed kernel without the pinned driver's DKMS module fails the run before anyone reboots", async () => {
    world.node.update((s) => {
      s.nvidia.dkms = ["nvidia/580.95.05"];
      s.nvidia.unbuildable = ["6.17.2-1-pve"];
    });
    world.node.write("boot/vmlinuz-6.17.2-1-pve", "");
    try {
      const { code, report } = await doctor();
      expect(code).toBe(1);
      expect(report.diagnoses[0]).toMatchObject({ service: "node", check: "nvidia-dkms", failure: "kernel-module-missing", detail: expect.stringContaining("not built for installed kernel(s) 6.17.2-1-pve") });
    } finally {
      world.node.update((s) => {
        s.nvidia.dkms = [];
        s.nvidia.unbuildable = [];
      });
    }
  });

  it("a stopped container is reported as unreachable, not as a failed unit", async () => {
    world.setGuest(103, (s) => (s.running = false));
    const { report } = await doctor();
    expect(diagnosisOf(report, "step-ca")).toMatchObject({ layer: "guest", check: "exec", failure: "guest-unreachable", detail: "cannot run commands in guest 103: CT 103 not running" });
    expect(diagnosisOf(report, "step-ca")!.hints[0]).toContain("pct start 103");
  });
});
