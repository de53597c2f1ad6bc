/**
 * Issue #20 item 17: every service Traefik routes, in every stack file, is health-checked, at a path
 * its product answers 2xx on when healthy (Traefik counts 2xx and 3xx as healthy: traefik v3.5.3
 * pkg/healthcheck/healthcheck.go checkHealthHTTP, status < 200 or >= 400 is an error). A default `/`
 * would be a guess for most of them (Grafana's / redirects to /login, Portainer's is the UI bundle).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { renderTraefikDynamic } from "../../components/core/traefik.render";
import type { Guest, Service, StackConfig } from "../../stacks/schema";
import { loadStack, ROOT } from "./helpers";

const STACKS = ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.cluster.yaml", "Pulumi.vrooli.yaml"];

/**
 * Each product's health endpoint, from its source or docs:
 *   - vLLM: GET /health (unverified: no vLLM source mirrored; vllm/entrypoints/openai/api_server.py is where it is served);
 *   - Ollama v0.12.6: GET /api/tags (ollama server/routes.go:1464, the model list; answers once the server runs);
 *   - llama.cpp server: GET /health, 200 once the model is loaded (ggml-org/llama.cpp tools/server/README.md "GET /health");
 *   - Step-CA v0.28.4: GET /health (smallstep/certificates api/api.go:329);
 *   - Portainer: GET /api/system/status, public (portainer 2.23.0 api/http/handler/system/handler.go:55-57,
 *     bouncer.PublicAccess; the pinned 2.33.2 is not mirrored: unverified there) and exempt from the
 *     admin-initialisation timeout (issue #20 item 4);
 *   - Grafana: GET /api/health, {"database":"ok"} (grafana.com/docs/grafana/latest/developers/http_api/other, "Health API");
 *   - Qdrant v1.15.5: GET /healthz, "healthz check passed" (api.qdrant.tech api-reference/service/healthz),
 *     answered without the api-key Phoenix sets (qdrant src/actix/mod.rs api_key_whitelist: exact "/healthz";
 *     read on a newer snapshot than v1.15.5);
 *   - n8n 1.114.4: GET /healthz, 200 when reachable, always on for the main process (docs.n8n.io
 *     deploy/host-n8n/keep-n8n-running/monitor-n8n).
 */
const ENGINE_HEALTH: Record<string, string> = { vllm: "/health", ollama: "/api/tags", llamacpp: "/health" };
const IMAGE_HEALTH: Record<string, string> = { "qdrant/qdrant": "/healthz", "n8nio/n8n": "/healthz" };
/** Images that are the operator's own: their health path is theirs to declare (unverified by Phoenix). */
const OWN_IMAGES = new Set(["${WEBAPP_IMAGE"]);

/** The health path a service's product answers on, from the guest's role or the compose service publishing its port. */
function expectedHealth(config: StackConfig, service: Service): string | "own" {
  const guest = config.guests.find((g) => g.vmid === service.guest)!;
  const role = guest.role;
  if (role?.type === "model-server") return ENGINE_HEALTH[role.server.engine]!;
  if (role?.type === "step-ca") return "/health";
  if (role?.type === "portainer-server") return "/api/system/status";
  if (role?.type === "observability" && service.port === 3000) return "/api/health";
  const image = composeImage(guest, service.port);
  if (image === undefined) throw new Error(`service ${service.name}: no product known for guest ${guest.vmid} port ${service.port}`);
  if (OWN_IMAGES.has(image)) return "own";
  const name = image.split(":")[0]!;
  if (!(name in IMAGE_HEALTH)) throw new Error(`service ${service.name}: image ${image} has no known health path`);
  return IMAGE_HEALTH[name]!;
}

function composeImage(guest: Guest, port: number): string | undefined {
  if (guest.kind !== "vm") return undefined;
  for (const stack of guest.dockerStacks) {
    const doc = parse(fs.readFileSync(path.join(ROOT, stack.compose), "utf8")) as { services: Record<string, { image: string; ports?: string[] }> };
    for (const s of Object.values(doc.services)) if ((s.ports ?? []).some((p) => String(p).startsWith(`${port}:`))) return s.image.split(":?")[0]!.replace(/}$/, "");
  }
  return undefined;
}

interface Dynamic {
  http: {
    routers: Record<string, { service: string }>;
    services: Record<string, { loadBalancer: { servers: { url: string }[]; healthCheck?: { path?: string; interval?: string; timeout?: string } } }>;
  };
}

describe.each(STACKS)("%s", (file) => {
  const config = loadStack(file);
  const hasTraefik = config.guests.some((g) => g.role?.type === "traefik");
  // A stack without Traefik (vrooli) declares no service for it to route.
  if (!hasTraefik) {
    it("declares no service when it has no Traefik", () => expect(config.services).toEqual([]));
    return;
  }
  const dynamic = parse(renderTraefikDynamic(config).content) as Dynamic;

  it("health-checks every service a Traefik router sends to", () => {
    const routed = Object.entries(dynamic.http.routers).filter(([, r]) => !r.service.endsWith("@internal"));
    expect(routed.map(([, r]) => r.service).sort()).toEqual(config.services.map((s) => s.name).sort());
    for (const [name, router] of routed) {
      const lb = dynamic.http.services[router.service]?.loadBalancer;
      expect(lb?.servers.length, `router ${name}`).toBeGreaterThan(0);
      // Field names of traefik v3.5.3 pkg/config/dynamic/http_config.go ServerHealthCheck.
      expect(lb?.healthCheck, `service ${router.service}`).toEqual({ path: expect.stringMatching(/^\//), interval: "10s", timeout: "3s" });
    }
  });

  it("checks each product at its own health path", () => {
    for (const service of config.services) {
      const expected = expectedHealth(config, service);
      if (expected !== "own") expect(service.healthPath, `${file} service ${service.name}`).toBe(expected);
      expect(dynamic.http.services[service.name]!.loadBalancer.healthCheck!.path).toBe(service.healthPath);
    }
  });
});
