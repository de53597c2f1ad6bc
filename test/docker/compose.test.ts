import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { DOCKER_DATA_MOUNT } from "../../components/docker/cloud-init";
import { renderPortainerAgentCompose, renderPortainerServerCompose } from "../../components/docker/portainer";
import { requiredVariables } from "../../stacks/compose-vars";
import { readStackFile, validateStack } from "../../stacks/load";
import { ROOT } from "../support";
import { composeErrors, interpolate } from "./compose-check";

const PROD = parse(fs.readFileSync("Pulumi.prod.yaml", "utf8")) as { config: Record<string, unknown> };
type StackCfg = { name: string; compose: string; env?: Record<string, string>; secretEnv?: Record<string, string> };
const prodStacks = (PROD.config["phoenix:guests"] as { dockerStacks?: StackCfg[] }[]).flatMap((g) => g.dockerStacks ?? []);
const server = { version: "2.33.2", port: 9443, dnsNames: ["portainer.internal.thinkheads.ai"], address: "10.0.0.111", caUrl: "https://ca.internal.thinkheads.ai:9000" };

describe("compose files", () => {
  it("the structural check catches what it is there for", () => {
    expect(composeErrors("services:\n  a:\n    image: nginx:latest\n    restart: always\n")).toEqual([expect.stringContaining("/services/a/image")]);
    expect(composeErrors("services:\n  a:\n    image: nginx:1.29\n    restart: always\n    volume: [x]\n")).toEqual([expect.stringContaining("must NOT have additional properties")]);
    expect(() => interpolate("x: ${A:?needed}", {})).toThrow("required variable A is missing: needed");
    expect(interpolate("a: ${A:-d} b: $${B} c: ${C}", { C: "c" })).toBe("a: d b: ${B} c: c");
  });

  it("the Portainer server: pinned, TLS from the mounted certificate, no Docker socket, HTTP off", () => {
    const text = renderPortainerServerCompose(server);
    expect(composeErrors(text)).toEqual([]);
    const svc = (parse(text) as { services: { portainer: { image: string; command: string[]; volumes: string[]; ports: string[] } } }).services.portainer;
    expect(svc.image).toBe("portainer/portainer-ce:2.33.2");
    expect(svc.command).toEqual(["--sslcert", "/certs/portainer.crt", "--sslkey", "/certs/portainer.key", "--http-disabled"]);
    expect(svc.volumes.some((v) => v.includes("docker.sock"))).toBe(false);
    expect(svc.ports).toEqual(["9443:9443"]);
    expect(() => renderPortainerServerCompose({ ...server, version: "latest" })).toThrow("must be an exact release");
  });

  it("the agent: pinned, on the agent port, with the Docker socket", () => {
    const text = renderPortainerAgentCompose("2.33.2", 9001);
    expect(composeErrors(text)).toEqual([]);
    expect(text).toContain("image: portainer/agent:2.33.2");
    expect(text).toContain('- "9001:9001"');
    expect(text).toContain("/var/run/docker.sock:/var/run/docker.sock");
  });

  it("every prod stack points at a file in docker/ that validates with the stack's variables", () => {
    expect(prodStacks.map((s) => s.name).sort()).toEqual(["n8n", "qdrant", "webapp"]);
    for (const s of prodStacks) {
      const text = fs.readFileSync(s.compose, "utf8");
      const env = { ...s.env, ...Object.fromEntries(Object.keys(s.secretEnv ?? {}).map((k) => [k, "secret-value"])) };
      const missing = requiredVariables(text).filter((v) => !(v in env));
      expect(missing, s.name).toEqual([]);
      expect(composeErrors(text, env), s.name).toEqual([]);
    }
  });

  it("validation refuses a stack whose compose file requires a variable the stack does not set, as preview would", () => {
    const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
    const guests = raw.values.guests as Array<{ dockerStacks?: Array<{ name: string; env?: Record<string, string> }> }>;
    const webapp = guests.flatMap((g) => g.dockerStacks ?? []).find((s) => s.name === "webapp")!;
    delete webapp.env!.WEBAPP_IMAGE;
    const result = validateStack(raw, { requireSecrets: false, projectRoot: ROOT });
    expect(result.ok).toBe(false);
    expect(result.ok === false ? result.issues : []).toContainEqual({ path: "guests[8].dockerStacks[1].env", message: "docker/webapp/compose.yaml requires WEBAPP_IMAGE: set it in the stack's env (or secretEnv)" });
  });

  it("qdrant: pinned image, API key only from the secret, data on the persistent dataset", () => {
    const doc = parse(fs.readFileSync("docker/qdrant/compose.yaml", "utf8")) as { services: { qdrant: { image: string; environment: Record<string, string>; volumes: string[] } } };
    const q = doc.services.qdrant;
    expect(q.image).toMatch(/^qdrant\/qdrant:v\d+\.\d+\.\d+$/);
    expect(q.environment.QDRANT__SERVICE__API_KEY).toMatch(/^\$\{QDRANT__SERVICE__API_KEY:\?/);
    expect(q.volumes.map((v) => v.split(":")[0]).every((src) => src!.startsWith(`${DOCKER_DATA_MOUNT}/qdrant/`))).toBe(true);
    expect(q.volumes.map((v) => v.split(":")[1])).toContain("/qdrant/storage");
  });
});
