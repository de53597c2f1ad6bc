/**
 * The core renderers against the prod stack: golden files, the Traefik JSON
 * schemas, `nginx -t` with Debian's nginx and njs, and shellcheck.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { GATEWAY_LAYOUT, gatewayHostNames, renderGatewayCertFiles, renderGatewayConfig, renderGatewayInstallScript, type GatewayLayout } from "../../components/core/nginx.render";
import { backends, modelRoutes } from "../../stacks/routing";
import { parseStepCaOutput, renderStepCaFiles, renderStepCaInitScript, stepCaEndpoints, stepCliRelease } from "../../components/core/step-ca.render";
import { renderTraefikDynamic, renderTraefikInstallScript, renderTraefikStatic, TRAEFIK_HTTPS_PORT, TRAEFIK_PATHS } from "../../components/core/traefik.render";
import type { StackConfig } from "../../stacks/schema";
import { readStackFile, validateStack } from "../../stacks/load";
import { ROOT, shellcheck } from "../support";
import { expectGolden, loadStack, nginxTest, prodConfig, REFERENCE_DIR, tempDir, testPki, writeFiles } from "./helpers";

// Goldens must not depend on a freshly generated key: a fixed stand-in for the CA root.
const ROOT_PEM = "-----BEGIN CERTIFICATE-----\nUGhvZW5peCBnb2xkZW4gZmlsZSBzdGFuZC1pbiBmb3IgdGhlIFN0ZXAtQ0Egcm9vdA==\n-----END CERTIFICATE-----\n";
const config = prodConfig();
const ep = stepCaEndpoints(config);
const traefikIp = "10.0.0.12";
const gatewayInputs = { traefik: { address: traefikIp, port: TRAEFIK_HTTPS_PORT }, caRootPem: ROOT_PEM, apiKeys: { webapp: "test-key-of-webapp-0123456789abcdef", n8n: "test-key-of-n8n-0123456789abcdef", dev: "test-key-of-dev-0123456789abcdef" } };
const traefikInputs = { caRootPem: ROOT_PEM, acmeDirectoryUrl: ep.acmeDirectoryUrl, dashboardPassword: "golden-dashboard-password" };
const certInputs = { caUrl: ep.caUrl, stepCli: stepCliRelease(config) };

const temps: string[] = [];
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function withService(base: StackConfig, change: (c: StackConfig) => void): StackConfig {
  const c = structuredClone(base);
  change(c);
  return c;
}

describe("step-ca renderer", () => {
  it("derives the CA URL and ACME directory from the role", () => {
    expect(ep).toEqual({
      caUrl: "https://ca.internal.thinkheads.ai:9000",
      caUrlByAddress: "https://10.0.0.10:9000",
      acmeDirectoryUrl: "https://ca.internal.thinkheads.ai:9000/acme/acme/directory",
      dnsNames: ["ca.internal.thinkheads.ai", "10.0.0.10"],
      address: "10.0.0.10",
    });
  });

  it("refuses an admin provisioner named acme, which step ca init --acme would answer by renaming the ACME one to acme-1 (pki/pki.go)", () => {
    const raw = readStackFile(path.join(ROOT, "Pulumi.prod.yaml"));
    const guests = raw.values.guests as Array<{ role?: { type: string; provisioner?: string } }>;
    const ca = guests.findIndex((g) => g.role?.type === "step-ca");
    guests[ca]!.role!.provisioner = "acme";
    const result = validateStack(raw, { requireSecrets: false });
    expect(result.ok === false ? result.issues.filter((i) => i.path === `guests[${ca}].role.provisioner`).map((i) => i.message) : []).toEqual([expect.stringMatching(/rename to acme-1/)]);
    guests[ca]!.role!.provisioner = "admin";
    expect(validateStack(raw, { requireSecrets: false }).ok).toBe(true);
  });

  it("matches the golden unit and init script", () => {
    const [unit] = renderStepCaFiles(config);
    expectGolden("step-ca/step-ca.service", unit!.content);
    expectGolden("step-ca/init.sh", renderStepCaInitScript(config));
  });

  it("initialises only when no PKI exists, with the configured names, and never prints the password", () => {
    const script = renderStepCaInitScript(config);
    expect(script).toMatch(/if \[ ! -e \/etc\/step-ca\/\.phoenix-initialised \]; then/);
    expect(script).toContain("step certificate create 'Thinkheads Internal Root CA'");
    expect(script).toContain("step certificate create 'Thinkheads Internal Intermediate CA'");
    expect(script).toContain("--dns ca.internal.thinkheads.ai --dns 10.0.0.10");
    expect(script).not.toMatch(/cat [^\n]*secrets\/password/);
    expect(script).toContain("chmod 0600 /etc/step-ca/secrets/password");
  });

  it("writes the provisioner password from the script itself before the check that needs it, never on a command line", () => {
    const script = renderStepCaInitScript(config, {}, "s3cret pass'word");
    const write = script.indexOf("cat > /etc/step-ca/secrets/password.new <<'PHOENIX_PASSWORD'\ns3cret pass'word\nPHOENIX_PASSWORD");
    expect(write).toBeGreaterThan(0);
    expect(write).toBeLessThan(script.indexOf("if [ ! -s /etc/step-ca/secrets/password ]"));
    expect(script.split("\n").filter((l) => l.includes("s3cret"))).toEqual(["s3cret pass'word"]);
    expect(() => renderStepCaInitScript(config, {}, "a\nPHOENIX_PASSWORD\nb")).toThrow(/delimiter/);
  });

  it("pins the binaries by digest when given one, by the release's checksums file otherwise", () => {
    const digest = "a".repeat(64);
    expect(renderStepCaInitScript(config, { stepCa: digest })).toContain(`${digest} - step-ca`);
    expect(renderStepCaInitScript(config)).toContain("https://github.com/smallstep/certificates/releases/download/v0.28.4/checksums.txt");
  });

  it("reads the root certificate and fingerprint back, and refuses a fingerprint of another certificate", () => {
    const dir = tempDir("step-out");
    temps.push(dir);
    const pki = testPki(dir);
    const fp = execFileSync("openssl", ["x509", "-in", pki.caCert, "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" }).split("=")[1]!.trim().replace(/:/g, "").toLowerCase();
    const out = `noise\n----- phoenix step-ca outputs -----\nfingerprint=${fp}\n${pki.caPem}----- end phoenix step-ca outputs -----\n`;
    expect(parseStepCaOutput(out)).toEqual({ rootPem: pki.caPem, fingerprint: fp });
    expect(() => parseStepCaOutput(out.replace(fp, "0".repeat(64)))).toThrow(/not that of the printed certificate/);
    expect(() => parseStepCaOutput("nothing here")).toThrow(/printed no outputs/);
  });
});

describe("Traefik renderer", () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const validateStatic = ajv.compile(JSON.parse(fs.readFileSync(path.join(REFERENCE_DIR, "traefik", "traefik-v3.schema.json"), "utf8")) as object);
  const validateDynamic = ajv.compile(JSON.parse(fs.readFileSync(path.join(REFERENCE_DIR, "traefik", "traefik-v3-file-provider.schema.json"), "utf8")) as object);
  const staticFile = renderTraefikStatic(config, traefikInputs);
  const dynamicFile = renderTraefikDynamic(config);
  const staticDoc = parseYaml(staticFile.content) as Record<string, unknown>;
  const dynamicDoc = parseYaml(dynamicFile.content) as { http: { routers: Record<string, Record<string, unknown>>; services: Record<string, { loadBalancer: Record<string, unknown> }>; serversTransports: Record<string, Record<string, unknown>> } };

  it("matches the golden static and dynamic configuration", () => {
    expectGolden("traefik/traefik.yml", staticFile.content);
    expectGolden("traefik/phoenix.yml", dynamicFile.content);
  });

  for (const stack of ["Pulumi.prod.yaml", "Pulumi.dev.yaml"]) {
    it(`validates against Traefik's JSON schemas for ${stack}`, () => {
      const c = loadStack(stack);
      const s = parseYaml(renderTraefikStatic(c, { ...traefikInputs, acmeDirectoryUrl: stepCaEndpoints(c).acmeDirectoryUrl }).content) as unknown;
      const d = parseYaml(renderTraefikDynamic(c).content) as unknown;
      expect(validateStatic(s), ajv.errorsText(validateStatic.errors)).toBe(true);
      expect(validateDynamic(d), ajv.errorsText(validateDynamic.errors)).toBe(true);
    });
  }

  it("is rejected by the schemas when it is wrong, so the check above means something", () => {
    expect(validateStatic({ ...staticDoc, api: { insecure: "yes" } })).toBe(false);
    expect(validateDynamic({ http: { routers: { x: { rule: "Host(`a`)" } } } })).toBe(false);
  });

  it("keeps the dashboard off api.insecure, redirects HTTP, and trusts the Step-CA root for ACME", () => {
    expect(staticDoc.api).toEqual({ dashboard: true, insecure: false });
    expect(staticDoc.entryPoints).toMatchObject({ web: { http: { redirections: { entryPoint: { to: "websecure", scheme: "https" } } } }, websecure: { forwardedHeaders: { trustedIPs: ["10.0.0.153"] } } });
    expect(staticDoc.certificatesResolvers).toEqual({
      // email: without one Traefik registers a new ACME account at every start (provider.go initAccount).
      "step-ca": { acme: { email: "phoenix@internal.thinkheads.ai", caServer: ep.acmeDirectoryUrl, caCertificates: [TRAEFIK_PATHS.caRoot], storage: TRAEFIK_PATHS.acmeStorage, certificatesDuration: 24, tlsChallenge: {} } },
    });
  });

  it("routes every declared service by host, with health checks, and verifies HTTPS backends against the CA root", () => {
    const { routers, services, serversTransports } = dynamicDoc.http;
    for (const b of backends(config)) {
      expect(routers[b.service.name]).toEqual({ rule: `Host(\`${b.host}\`)`, entryPoints: ["websecure"], service: b.service.name, tls: { certResolver: "step-ca" } });
      const lb = services[b.service.name]!.loadBalancer;
      expect(lb.healthCheck).toMatchObject({ path: b.service.healthPath });
      expect(lb.servers).toEqual([{ url: b.url }]);
      if (b.service.scheme === "https") {
        expect(serversTransports[lb.serversTransport as string]).toEqual({ serverName: b.tlsServerName, rootCAs: [TRAEFIK_PATHS.caRoot] });
      } else {
        expect(lb.serversTransport).toBeUndefined();
      }
    }
    expect(Object.keys(services).sort()).toEqual(config.services.map((s) => s.name).sort());
    // The file-provider schema does not describe serversTransports: check the keys by hand.
    for (const t of Object.values(serversTransports)) expect(Object.keys(t).every((k) => ["serverName", "rootCAs", "insecureSkipVerify"].includes(k))).toBe(true);
    expect(services["portainer"]!.loadBalancer.servers).toEqual([{ url: "https://10.0.0.111:9443" }]);
    expect(serversTransports["step-ca-tls"]).toMatchObject({ serverName: "ca.internal.thinkheads.ai" });
  });

});

describe("Nginx gateway renderer", () => {
  const files = renderGatewayConfig(config, gatewayInputs);

  it("matches the golden files, one per service", () => {
    const confDir = GATEWAY_LAYOUT.confDir;
    for (const f of files) {
      if (f.path === GATEWAY_LAYOUT.caRootFile) continue;
      expectGolden(`nginx/${path.relative(confDir, f.path)}`, f.content);
    }
    for (const f of renderGatewayCertFiles(config, certInputs)) expectGolden(`nginx/cert/${path.basename(f.path)}`, f.content);
    expect(files.map((f) => path.relative(confDir, f.path)).filter((p) => p.startsWith("conf.d/")).sort()).toEqual(
      ["_api-keys", "gateway", "grafana", "llamacpp", "n8n", "ollama", "portainer", "qdrant", "vllm-chat", "vllm-embed", "webapp"].map((n) => `conf.d/${n}.conf`),
    );
  });

  it("maps every served model to the service on its guest", () => {
    const table = files.find((f) => f.path.endsWith("/phoenix-models.js"))!.content;
    const parsed = JSON.parse(table.slice(table.indexOf("{"), table.lastIndexOf("}") + 1)) as { models: Record<string, string>; services: string[] };
    expect(parsed.models).toEqual({
      "granite-embedding-english-r2": "vllm-embed",
      "Qwen3-4B-FP8": "vllm-chat",
      "llama3.1:8b": "ollama",
      "nomic-embed-text": "ollama",
      "gemma-3-4b-it": "llamacpp",
    });
    expect(parsed.services).toEqual(["vllm-embed", "vllm-chat", "ollama", "llamacpp"]);
  });

  it("takes body size and read timeout from the gateway role", () => {
    const small = withService(config, (c) => {
      const role = c.guests.find((g) => g.role?.type === "nginx-gateway")!.role as { maxBodyMiB: number; readTimeoutSeconds: number };
      role.maxBodyMiB = 8;
      role.readTimeoutSeconds = 90;
    });
    const rendered = renderGatewayConfig(small, gatewayInputs);
    const main = rendered.find((f) => f.path.endsWith("/nginx.conf"))!.content;
    expect(main).toContain("client_max_body_size 8m;");
    expect(main).toContain("proxy_read_timeout 90s;");
    expect(rendered.find((f) => f.path.endsWith("/routes.d/openai.conf"))!.content).toContain("client_body_buffer_size 8m;");
    expect(renderTraefikStatic(small, traefikInputs).content).toContain("readTimeout: 90s");
  });

  it("maps every model to the service on its server's port", () => {
    expect(modelRoutes(config).map((m) => `${m.id} → ${m.host}`)).toEqual([
      "granite-embedding-english-r2 → vllm-embed.svc.internal.thinkheads.ai",
      "Qwen3-4B-FP8 → vllm-chat.svc.internal.thinkheads.ai",
      "llama3.1:8b → ollama.svc.internal.thinkheads.ai",
      "nomic-embed-text → ollama.svc.internal.thinkheads.ai",
      "gemma-3-4b-it → llamacpp.svc.internal.thinkheads.ai",
    ]);
  });

  it("asks for a certificate covering every routed host", () => {
    expect(gatewayHostNames(config)).toEqual(["internal.thinkheads.ai", "portainer.internal.thinkheads.ai", "grafana.internal.thinkheads.ai"]);
    const script = renderGatewayCertFiles(config, certInputs)[0]!.content;
    expect(script).toContain("--san portainer.internal.thinkheads.ai --san grafana.internal.thinkheads.ai --san internal.thinkheads.ai");
    expect(script).toContain("--provisioner acme --webroot /var/lib/phoenix/acme");
  });

  for (const stack of ["Pulumi.prod.yaml", "Pulumi.dev.yaml"]) {
    it(`passes nginx -t with the njs module for ${stack}`, () => {
      const dir = tempDir("nginx-t");
      temps.push(dir);
      const pki = testPki(dir);
      const stackConfig = loadStack(stack);
      const [cert, key] = pki.issue("gw", gatewayHostNames(stackConfig));
      const layout: GatewayLayout = { ...GATEWAY_LAYOUT, confDir: path.join(dir, "etc/nginx"), certFile: cert, keyFile: key, caRootFile: path.join(dir, "etc/nginx/tls/root.pem"), acmeRoot: path.join(dir, "acme"), logDir: dir, varDir: dir, user: "root", httpPort: 8080, httpsPort: 8443 };
      const rendered = renderGatewayConfig(stackConfig, { ...gatewayInputs, caRootPem: pki.caPem, layout });
      expect(rendered[0]!.content).toContain("load_module /usr/lib/nginx/modules/ngx_http_js_module.so;");
      writeFiles("/", rendered);
      const result = nginxTest(dir);
      expect(result.output).toContain("syntax is ok");
      expect(result.ok, result.output).toBe(true);
    });
  }

  it("passes nginx -t without the njs router when no route goes by model", () => {
    const dir = tempDir("nginx-t-plain");
    temps.push(dir);
    const pki = testPki(dir);
    const plain = withService(config, (c) => (c.routes = c.routes.filter((r) => !r.byModel)));
    const [cert, key] = pki.issue("gw", gatewayHostNames(plain));
    const layout: GatewayLayout = { ...GATEWAY_LAYOUT, confDir: path.join(dir, "etc/nginx"), certFile: cert, keyFile: key, caRootFile: path.join(dir, "root.pem"), logDir: dir, varDir: dir, user: "root" };
    const rendered = renderGatewayConfig(plain, { ...gatewayInputs, caRootPem: pki.caPem, layout });
    // The model router is left out; the status page's njs stays.
    expect(rendered.some((f) => /\/njs\/(openai-router|phoenix-models)\.js$/.test(f.path))).toBe(false);
    expect(rendered.some((f) => f.path.endsWith("/njs/status.js"))).toBe(true);
    expect(rendered.some((f) => f.path.endsWith("/conf.d/vllm-chat.conf"))).toBe(false);
    writeFiles("/", rendered);
    const result = nginxTest(dir);
    expect(result.ok, result.output).toBe(true);
  });

  it("fails nginx -t when a referenced file is missing, so the check above means something", () => {
    const dir = tempDir("nginx-t-bad");
    temps.push(dir);
    const layout: GatewayLayout = { ...GATEWAY_LAYOUT, confDir: path.join(dir, "etc/nginx"), certFile: path.join(dir, "missing.crt"), keyFile: path.join(dir, "missing.key"), caRootFile: path.join(dir, "root.pem"), logDir: dir, varDir: dir, user: "root" };
    writeFiles("/", renderGatewayConfig(config, { ...gatewayInputs, layout }));
    const result = nginxTest(dir);
    expect(result.ok).toBe(false);
    expect(result.output).toContain("missing.crt");
  });
});

describe("rendered scripts", () => {
  const scripts: [string, string][] = [
    ["step-ca init", renderStepCaInitScript(config)],
    ["traefik install", renderTraefikInstallScript(config, traefikInputs)],
    ["gateway install", renderGatewayInstallScript(config, gatewayInputs, certInputs)],
    ["gateway certificate", renderGatewayCertFiles(config, certInputs)[0]!.content],
  ];
  for (const [name, script] of scripts) {
    it(`${name} is strict bash and shellcheck-clean`, () => {
      expect(script.startsWith("#!/usr/bin/env bash\n")).toBe(true);
      expect(script).toContain("set -euo pipefail");
      shellcheck(name, script);
    });
  }

  it("shellcheck catches a broken script, so the checks above mean something", () => {
    expect(() => shellcheck("broken", "#!/usr/bin/env bash\nrm -rf $1/*\n")).toThrow(/SC2086/);
  });
});
