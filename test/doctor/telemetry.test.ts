/**
 * The doctor reads the ops guest's Prometheus and Loki for a failing backend:
 * its guest's last scrapes and its unit's recent journal, against stand-ins
 * answering as Prometheus v3.5 and Loki v3.6 do (telemetry-standins.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runDoctor } from "../../scripts/doctor";
import { renderTable, type Report } from "../../scripts/doctor/report";
import { backendTelemetry, renderTelemetry, telemetrySource } from "../../scripts/doctor/telemetry";
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

const ns = (msAgo: number) => BigInt(Date.now() - msAgo) * 1_000_000n;

describe("doctor telemetry", () => {
  it("shows a failing backend's last scrapes and its unit's recent journal, oldest first and made printable", async () => {
    await world.stopService("vllm-chat");
    const now = Date.now() / 1000;
    world.telemetry.targets.push(
      { guest: "802", job: "model-servers", instance: "10.0.0.142:8000", up: 0, samples: 0, at: Math.floor(now - 30) },
      { guest: "802", job: "node", instance: "10.0.0.142:9100", up: 1, samples: 812, at: Math.floor(now - 20) },
      { guest: "801", job: "node", instance: "10.0.0.141:9100", up: 1, samples: 800, at: Math.floor(now - 20) },
    );
    world.telemetry.lines.push(
      { labels: { guest: "802", unit: "vllm.service" }, ns: ns(60_000), line: "INFO engine started" },
      { labels: { guest: "802", unit: "vllm.service" }, ns: ns(30_000), line: "\u001b[31mCUDA out of memory\u001b[0m" },
      { labels: { guest: "802", unit: "vllm.service" }, ns: ns(2 * 3_600_000), line: "two hours ago: outside the window" },
      { labels: { guest: "802", unit: "sshd.service" }, ns: ns(10_000), line: "another unit" },
    );
    const { code, text } = await runDoctor(["prod", "--json", "--outputs", world.outputsFile], world.deps);
    expect(code).toBe(1);
    const d = (JSON.parse(text) as Report).diagnoses.find((x) => x.service === "vllm-chat")!;
    expect(d.telemetry!.errors).toEqual([]);
    expect(d.telemetry!.scrapes.map((s) => [s.job, s.instance, s.up, s.samples])).toEqual([
      ["model-servers", "10.0.0.142:8000", false, 0],
      ["node", "10.0.0.142:9100", true, 812],
    ]);
    expect(d.telemetry!.scrapes[0]!.lastScrape).toBe(new Date(Math.floor(now - 30) * 1000).toISOString());
    expect(d.telemetry!.unit).toBe("vllm.service");
    expect(d.telemetry!.logs.map((l) => l.replace(/^\S+ /, ""))).toEqual(["INFO engine started", "\uFFFD[31mCUDA out of memory\uFFFD[0m"]);
    expect(world.telemetry.queries).toEqual(expect.arrayContaining(['prometheus up{guest="802"}', 'prometheus timestamp(up{guest="802"})', 'loki {guest="802", unit="vllm.service"}']));

    // Only the failing service's guest is asked about.
    expect(world.telemetry.queries.every((q) => q.includes('guest="802"'))).toBe(true);
    const table = renderTable(JSON.parse(text) as Report);
    expect(table).toContain("  last scrapes (Prometheus):\n    model-servers 10.0.0.142:8000: DOWN, 0 samples, at ");
    expect(table).toContain("  recent journal of vllm.service (Loki):");
    expect(table).not.toContain("\u001b");
  });

  it("reports what it could not read and still diagnoses", async () => {
    const ctx = { service: world.config.services[0]!, guest: { vmid: 104, kind: "lxc" as const, name: "ops", ip: "10.0.0.14", node: "pve" }, gateway: { vmid: 101, kind: "lxc" as const, name: "g", ip: "10.0.0.153", node: "pve" }, traefik: { vmid: 102, kind: "lxc" as const, name: "t", ip: "10.0.0.12", node: "pve" }, node: "pve" };
    const t = await backendTelemetry(ctx, telemetrySource(world.config)!, { resolve: () => ({ host: "127.0.0.1", port: 1 }), now: new Date(), timeoutMs: 2000 });
    expect(t.scrapes).toEqual([]);
    expect(t.logs).toEqual([]);
    expect(t.errors.map((e) => e.replace(/: .*$/, "")).sort()).toEqual(["Loki at 10.0.0.14:3100", "Prometheus at 10.0.0.14:9090"]);
    expect(renderTelemetry(t).filter((l) => l.startsWith("  (not read: "))).toHaveLength(2);
  });
});
