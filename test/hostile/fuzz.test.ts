/**
 * Property-based fuzzing of every free-form string of the stack with hostile
 * input (quotes, newlines, $(…), backticks, ';', '{}', '%', '#', ',', '=',
 * control characters, unicode). At the boundary: each generated value is
 * either refused under its own config path, or it holds nothing its
 * destination would read as syntax, and what it renders keeps the rendered
 * file's shape. Past the boundary (a value forced into the typed config, as a
 * schema slip would): each renderer refuses it or quotes it so the real
 * consumer (systemd-analyze, bash, nginx -t, the YAML parser, PVE's
 * property-string parser) reads the value back whole, in its own slot.
 *
 * Runs: many for the pure properties, few for the ones that start a tool per
 * case; the totals are printed at the end.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { GATEWAY_LAYOUT, gatewayHostNames, renderGatewayConfig, type GatewayLayout } from "../../components/core/nginx.render";
import { renderTraefikDynamic } from "../../components/core/traefik.render";
import { renderModelInstallScript, renderModelServerFiles } from "../../components/models/install.render";
import { ollamaEnvironment } from "../../components/models/ollama.render";
import { modelServerSpec, modelServerSpecs } from "../../components/models/server";
import { vllmArgv } from "../../components/models/vllm.render";
import { llamaServerArgv } from "../../components/models/llamacpp.render";
import { shQuote } from "../../components/render/files";
import { desiredKeys, type RootConfigSpec } from "../../providers/guest/lxc-root-config.render";
import { CONTROL_CHARS } from "../../stacks/patterns";
import { stackSchema, type StackConfig } from "../../stacks/schema";
import { nginxTest, testPki, type TestPki } from "../core/helpers";
import { tempDir } from "../support";
import { dumpFields } from "../models/helpers";
import { configPath, engineGuest, guestIndex, hostile, newIssues, nginxShape, parseNginx, parsePropertyString, prodRaw, splitSystemdDump, withValue, type Path } from "./support";

// One seed per run, printed on failure: CI runs the same cases every time; FC_SEED=<n> explores others.
fc.configureGlobal({ seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : 20261206 });

const base = prodRaw();
const baseConfig: StackConfig = stackSchema.parse(base.values);
const temps: string[] = [];
const counts: Record<string, number> = {};
const count = (what: string) => (counts[what] = (counts[what] ?? 0) + 1);
const started = Date.now();

afterAll(() => {
  temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true }));
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(`hostile fuzz: ${total} generated cases in ${((Date.now() - started) / 1000).toFixed(1)}s: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")}`);
});

const CONTROL = CONTROL_CHARS;
/* eslint-disable no-control-regex -- the point is to find them */
/** What each destination reads as syntax: an accepted value must hold none of it. */
const SYNTAX = {
  // free text for people: one line
  text: CONTROL,
  // words of units, scripts, nginx configs, property strings
  word: /[\s"'`$\\;{}%#,=()<>|&*?!\u0000-\u001f\u007f-\u009f\u2028\u2029]|(^|\/)\.\.(\/|$)/,
  // env file values
  env: /[\u0000-\u001f\u007f-\u009f\u2028\u2029"'`$\\#]|^ | $/,
} as const;
/* eslint-enable no-control-regex */

const vllm = engineGuest(base, "vllm");
const ollama = engineGuest(base, "ollama");
const llama = engineGuest(base, "llamacpp");
const stepCa = guestIndex(base, (g) => (g.role as { type?: string } | undefined)?.type === "step-ca");
const mounted = guestIndex(base, (g) => Array.isArray(g.mounts) && (g.mounts as unknown[]).length > 0);
const agent = guestIndex(base, (g) => Array.isArray(g.dockerStacks) && (g.dockerStacks as unknown[]).length > 0);
const routes = base.values.routes as { path: string; service?: string }[];
const serviceRoute = routes.findIndex((r) => r.service !== undefined && r.path !== "/");
const services = base.values.services as { name: string; healthPath?: string }[];
const healthService = services.findIndex((s) => s.healthPath !== undefined);
const envStack = (base.values.guests as { dockerStacks?: { env?: Record<string, string> }[] }[])[agent]!.dockerStacks!.findIndex((d) => d.env && Object.keys(d.env).length > 0);
const envName = Object.keys((base.values.guests as { dockerStacks: { env: Record<string, string> }[] }[])[agent]!.dockerStacks[envStack]!.env)[0]!;

type Render = "units" | "nginx" | "yaml" | "property";
interface Field {
  at: Path;
  plausible: string[];
  syntax: keyof typeof SYNTAX;
  render?: Render;
}

/** Every free-form string of the stack, at a place in the prod stack where it is used. */
const FIELDS: Field[] = [
  { at: ["proxmox", "nodes", 0, "ssh", "host"], plausible: ["10.0.0.13", "pve.example.org"], syntax: "word" },
  { at: ["proxmox", "nodes", 0, "ssh", "user"], plausible: ["root"], syntax: "word" },
  { at: ["proxmox", "tls", "caFile"], plausible: ["pve-root-ca.pem", ".pve/ca.pem"], syntax: "word" },
  { at: ["host", "timezone"], plausible: ["Europe/Berlin", "Etc/GMT+5"], syntax: "word" },
  { at: ["host", "gpus", 0, "model"], plausible: ["NVIDIA GeForce RTX 5060 Ti"], syntax: "text" },
  { at: ["host", "zfs", "pools", 0, "disks", 0], plausible: ["/dev/disk/by-id/nvme-Samsung_SSD_990_PRO_2TB_S7KHNJ0X100001"], syntax: "word" },
  { at: ["host", "zfs", "datasets", 0, "pool"], plausible: ["quickOS"], syntax: "word" },
  { at: ["host", "zfs", "datasets", 0, "properties", "recordsize"], plausible: ["64K", "lz4"], syntax: "word" },
  { at: ["host", "nfsExports", 0, "volume"], plausible: ["fastData/docker-data"], syntax: "word" },
  { at: ["templates", 0, "description"], plausible: ["Ubuntu base"], syntax: "text" },
  { at: ["guests", stepCa, "firewall", "rules", 0, "comment"], plausible: ["ACME and certificate API"], syntax: "text" },
  { at: ["guests", stepCa, "role", "rootName"], plausible: ["Phoenix Root CA"], syntax: "text" },
  { at: ["guests", stepCa, "role", "provisioner"], plausible: ["admin"], syntax: "word" },
  { at: ["guests", mounted, "mounts", 0, "path"], plausible: ["/models", "/etc/step-ca"], syntax: "word", render: "property" },
  { at: ["guests", mounted, "mounts", 0, "volume"], plausible: ["fastData/step-ca"], syntax: "word" },
  { at: ["guests", vllm, "role", "server", "servedModelName"], plausible: ["Qwen3-4B-FP8"], syntax: "word", render: "units" },
  { at: ["guests", vllm, "role", "server", "model"], plausible: ["Qwen/Qwen3-4B-Thinking-2507", "/models/hf/qwen"], syntax: "word", render: "units" },
  { at: ["guests", vllm, "role", "server", "downloadDir"], plausible: ["/models/hf"], syntax: "word", render: "units" },
  { at: ["guests", ollama, "role", "server", "modelsDir"], plausible: ["/models/ollama"], syntax: "word", render: "units" },
  { at: ["guests", ollama, "role", "server", "models", 0, "name"], plausible: ["qwen3:8b", "hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M"], syntax: "word", render: "units" },
  { at: ["guests", llama, "role", "server", "model"], plausible: ["/models/gguf/gemma-3-4b-it-Q4_K_M.gguf"], syntax: "word", render: "units" },
  { at: ["guests", llama, "role", "server", "servedModelName"], plausible: ["gemma-3-4b-it"], syntax: "word", render: "units" },
  { at: ["guests", agent, "dockerStacks", 0, "compose"], plausible: ["docker/qdrant/compose.yaml"], syntax: "word" },
  { at: ["guests", agent, "dockerStacks", envStack, "env", envName], plausible: ["https://internal.thinkheads.ai", "a b"], syntax: "env" },
  { at: ["services", healthService, "healthPath"], plausible: ["/healthz", "/api/system/status"], syntax: "word", render: "yaml" },
  { at: ["routes", serviceRoute, "path"], plausible: [routes[serviceRoute]!.path], syntax: "word", render: "nginx" },
];

const GATEWAY_INPUTS = { traefik: { address: "10.0.0.12", port: 443 }, caRootPem: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n", apiKeys: { webapp: "fuzz-key-of-webapp-0123456789abcdef", n8n: "fuzz-key-of-n8n-0123456789abcdef" } };

/** The sections and setting names of every model server unit, in order: a value must never add one. */
function unitShapes(config: StackConfig): string[] {
  return modelServerSpecs(config).flatMap((spec) =>
    renderModelServerFiles(spec)
      .filter((f) => f.path.endsWith(".service"))
      .map((f) => f.content.split("\n").filter((l) => l !== "").map((l) => (l.startsWith("[") ? l : l.split("=")[0])).join("|")),
  );
}

const gatewayShape = (config: StackConfig) => renderGatewayConfig(config, GATEWAY_INPUTS).filter((f) => f.path.endsWith(".conf")).map((f) => nginxShape(parseNginx(f.content)));

/** The rendered output a field reaches keeps its shape, and the value is read back whole where it can be. */
function checkRendered(field: Field, config: StackConfig, value: string): void {
  switch (field.render) {
    case "units":
      expect(unitShapes(config)).toEqual(unitShapes(baseConfig));
      break;
    case "nginx":
      expect(gatewayShape(config)).toEqual(gatewayShape(baseConfig));
      break;
    case "yaml": {
      const doc = parseYaml(renderTraefikDynamic(config).content) as { http: { services: Record<string, { loadBalancer: { healthCheck: { path: string } } }> } };
      expect(doc.http.services[services[healthService]!.name]!.loadBalancer.healthCheck.path).toBe(value);
      break;
    }
    case "property": {
      const keys = desiredKeys({ ...EMPTY_ROOT, mounts: [{ hostPath: "/fastData/shared-models", path: value, readOnly: false, owner: { uid: 0, gid: 0, mode: "0755" } }] });
      expect(parsePropertyString(keys.mp0!, "volume")).toEqual({ volume: "/fastData/shared-models", mp: value });
      break;
    }
  }
}

const EMPTY_ROOT: Omit<RootConfigSpec, "mounts"> = { devices: [], features: { nesting: false, keyctl: false, fuse: false }, idmap: [], subuid: [], subgid: [] };

describe("the boundary: every free-form string refused under its path, or harmless where it goes", () => {
  for (const field of FIELDS) {
    it(configPath(field.at), () => {
      fc.assert(
        fc.property(hostile(field.plausible), (value) => {
          count("boundary");
          const changed = withValue(base, field.at, value);
          const issues = newIssues(base, changed);
          if (issues.length > 0) {
            expect(issues.map((i) => i.path), `${JSON.stringify(value)} is refused, but not under ${configPath(field.at)}`).toContain(configPath(field.at));
            return;
          }
          expect(value, `accepted ${JSON.stringify(value)} holds syntax of its destination`).not.toMatch(SYNTAX[field.syntax]);
          checkRendered(field, stackSchema.parse(changed.values), value);
        }),
        { numRuns: 25 },
      );
    });
  }
});

/** A copy of the prod config with one model server's setting forced to `value`, past the schema. */
function slipped(guest: number, set: (server: Record<string, unknown>) => void): StackConfig {
  const config = structuredClone(baseConfig);
  set((config.guests[guest]!.role as { server: Record<string, unknown> }).server);
  return config;
}

const vmid = (i: number) => baseConfig.guests[i]!.vmid;

describe("past the boundary: renderers refuse or quote, and the real tools read the value back whole", () => {
  const dir = tempDir("hostile");
  temps.push(dir);

  it("systemd: Description=, ExecStart= and Environment= hold exactly the value (systemd-analyze verify)", () => {
    const standIn = path.join(dir, "engine");
    fs.writeFileSync(standIn, "#!/bin/sh\n", { mode: 0o755 });
    let n = 0;
    const shapes = unitShapes(baseConfig);
    fc.assert(
      fc.property(fc.constantFrom("vllm-name", "vllm-model", "ollama-dir", "llama-model"), hostile(["Qwen3-4B", "/models/x.gguf"]), (where, value) => {
        count("systemd-analyze");
        const [guest, set] = {
          "vllm-name": [vllm, (s: Record<string, unknown>) => (s.servedModelName = value)],
          "vllm-model": [vllm, (s: Record<string, unknown>) => (s.model = value)],
          "ollama-dir": [ollama, (s: Record<string, unknown>) => (s.modelsDir = value)],
          "llama-model": [llama, (s: Record<string, unknown>) => (s.model = `/models/${value}.gguf`)],
        }[where] as [number, (s: Record<string, unknown>) => void];
        const config = slipped(guest, set);
        const spec = modelServerSpec(config, vmid(guest));
        let unit: string;
        try {
          unit = renderModelServerFiles(spec).find((f) => f.path.endsWith(".service"))!.content;
        } catch (e) {
          // Refused only for what the slot cannot hold: a NUL anywhere, a line break in free text.
          if (value.includes("\u0000")) expect(String(e)).toMatch(/holds a NUL character|control character or line break/);
          // An argument starting with '-' reads as an option: the pinned engine's option list refuses it.
          else if (value.startsWith("-")) expect(String(e)).toContain("does not accept -");
          else {
            expect(where).toBe("vllm-name");
            expect(String(e)).toMatch(/control character or line break|ends in a backslash/);
          }
          return;
        }
        expect(unitShapes(config)).toEqual(shapes);
        const binary = /^ExecStart=(\S+)/m.exec(unit)![1]!;
        // One directory per case: systemd-analyze verify would load the other units beside it too.
        const caseDir = path.join(dir, `unit-${n++}`);
        fs.mkdirSync(caseDir);
        const file = path.join(caseDir, path.basename(spec.unitFile));
        fs.writeFileSync(file, unit.replace(`ExecStart=${binary}`, `ExecStart=${standIn}`));
        const run = spawnSync("systemd-analyze", ["verify", "--man=no", file], { encoding: "utf8", env: { ...process.env, SYSTEMD_LOG_LEVEL: "debug" } });
        const dump = `${run.stdout}${run.stderr}`;
        expect(run.status, dump).toBe(0);
        const argv = splitSystemdDump(dumpFields(dump, "Command Line")[0]!);
        const expected = spec.engine === "vllm" ? vllmArgv(spec) : spec.engine === "llamacpp" ? llamaServerArgv(spec) : [binary, "serve"];
        expect([binary, ...argv.slice(1)]).toEqual(expected);
        const description = dumpFields(dump, "Description")[0]!;
        expect(description).toContain(where === "vllm-name" ? `serving ${value} (` : "(Phoenix model server");
        if (spec.engine === "ollama" && !CONTROL.test(value)) {
          const env = dumpFields(dump, "Environment");
          expect(env).toEqual(Object.entries(ollamaEnvironment(spec)).map(([k, v]) => `${k}=${v}`));
        }
      }),
      { numRuns: 24 },
    );
  });

  it("bash: the model check runs no command from the GGUF path, and Ollama's model list is the declared names (bash -n, bash)", () => {
    const marker = path.join(dir, "pwned");
    fc.assert(
      fc.property(hostile(["/models/x", `$(touch ${marker})`]), fc.array(hostile(["qwen3:8b"]), { minLength: 1, maxLength: 3 }), (value, ollamaNames) => {
        count("bash");
        const model = `/models/${value}.gguf`;
        if (value.includes("\u0000")) {
          // No argument holds a NUL: the unit inside the script refuses it.
          expect(() => renderModelInstallScript(modelServerSpec(slipped(llama, (s) => (s.model = model)), vmid(llama)))).toThrow("holds a NUL character");
          return;
        }
        const script = renderModelInstallScript(modelServerSpec(slipped(llama, (s) => (s.model = model)), vmid(llama)));
        expect(spawnSync("bash", ["-n"], { input: script, encoding: "utf8" }).status).toBe(0);
        const start = script.indexOf("if [ ! -r ");
        const snippet = script.slice(start, script.indexOf("\n  exit 1\nfi", start) + 12);
        const run = spawnSync("bash", ["-c", snippet], { encoding: "utf8", cwd: dir });
        expect(run.status).toBe(1);
        expect(run.stderr).toBe(`guest ${vmid(llama)}: the model ${model} is not there; put the GGUF file on the model volume\n`);
        expect(fs.existsSync(marker)).toBe(false);

        const unique = [...new Set(ollamaNames)];
        let pulls: string;
        try {
          pulls = renderModelInstallScript(modelServerSpec(slipped(ollama, (s) => (s.models = unique.map((name) => ({ name, kind: "chat", vramGiB: 1 })))), vmid(ollama)));
        } catch (e) {
          // The names are also in the unit's Description=, which holds one line.
          expect(String(e)).toMatch(/control character or line break|ends in a backslash|holds a NUL character/);
          return;
        }
        expect(spawnSync("bash", ["-n"], { input: pulls, encoding: "utf8" }).status).toBe(0);
        const list = pulls.slice(pulls.indexOf("for model in ") + 13, pulls.indexOf("; do\n  if ! "));
        const words = spawnSync("bash", ["-c", `for m in ${list}; do printf '%s\\0' "$m"; done`], { encoding: "utf8", cwd: dir });
        expect(words.stdout.split("\0").slice(0, -1)).toEqual(unique);
        expect(list).toBe(unique.map(shQuote).join(" "));
      }),
      { numRuns: 40 },
    );
  });

  let pki: TestPki;
  let layout: GatewayLayout;
  beforeAll(() => {
    const nginxDir = path.join(dir, "nginx");
    fs.mkdirSync(nginxDir);
    pki = testPki(nginxDir);
    const [cert, key] = pki.issue("gw", gatewayHostNames(baseConfig));
    layout = { ...GATEWAY_LAYOUT, confDir: path.join(nginxDir, "etc/nginx"), certFile: cert, keyFile: key, caRootFile: path.join(nginxDir, "etc/nginx/tls/root.pem"), acmeRoot: path.join(nginxDir, "acme"), logDir: nginxDir, varDir: nginxDir, user: "root", httpPort: 8080, httpsPort: 8443 };
  });

  it("nginx: a route path stays the one argument of its location (nginx -t, nginx's tokenizer)", () => {
    const inputs = () => ({ ...GATEWAY_INPUTS, caRootPem: pki.caPem, layout });
    const shape = (config: StackConfig) => renderGatewayConfig(config, inputs()).filter((f) => f.path.endsWith(".conf")).map((f) => nginxShape(parseNginx(f.content)));
    const baseShape = shape(baseConfig);
    const route = baseConfig.routes[serviceRoute]!;
    fc.assert(
      fc.property(hostile([route.path]), fc.boolean(), (value, stripPrefix) => {
        count("nginx -t");
        const config = structuredClone(baseConfig);
        Object.assign(config.routes[serviceRoute]!, { path: value, stripPrefix });
        let files;
        try {
          files = renderGatewayConfig(config, inputs());
        } catch (e) {
          expect(String(e)).toContain("is empty or holds control characters");
          expect(value === "" || CONTROL.test(value)).toBe(true);
          return;
        }
        const file = files.find((f) => f.path.endsWith(`routes.d/${route.service}.conf`))!;
        const locations = parseNginx(file.content).filter((d) => d.args[0] === "location");
        expect(locations.map((d) => d.args.slice(1))).toContainEqual([value]);
        // A rewrite (stripPrefix without a trailing slash) adds a directive: compare with the base rendered the same way.
        const same = structuredClone(baseConfig);
        same.routes[serviceRoute]!.stripPrefix = stripPrefix;
        Object.assign(same.routes[serviceRoute]!, { path: stripPrefix && !value.endsWith("/") ? "/x" : "/x/" });
        expect(shape(config)).toEqual(shape(same));
        for (const f of files) {
          fs.mkdirSync(path.dirname(f.path), { recursive: true });
          fs.writeFileSync(f.path, f.content);
        }
        const result = nginxTest(path.join(dir, "nginx"));
        expect(result.ok, `${JSON.stringify(value)}: ${result.output}`).toBe(true);
        fs.rmSync(path.join(layout.confDir, "routes.d"), { recursive: true, force: true });
        fs.rmSync(path.join(layout.confDir, "conf.d"), { recursive: true, force: true });
      }),
      { numRuns: 25 },
    );
    expect(baseShape.length).toBeGreaterThan(0);
  });

  it("YAML: a health path is the one value of its key in Traefik's dynamic config", () => {
    fc.assert(
      fc.property(hostile(["/healthz"]), (value) => {
        count("yaml");
        const config = structuredClone(baseConfig);
        config.services[healthService]!.healthPath = value;
        const doc = parseYaml(renderTraefikDynamic(config).content) as { http: { services: Record<string, { loadBalancer: { healthCheck: { path: string } } }> } };
        expect(doc.http.services[config.services[healthService]!.name]!.loadBalancer.healthCheck.path).toBe(value);
        expect(Object.keys(doc.http.services)).toEqual(Object.keys((parseYaml(renderTraefikDynamic(baseConfig).content) as { http: { services: object } }).http.services));
      }),
      { numRuns: 60 },
    );
  });

  it("PVE property strings: a mount's source and target stay their own keys, or are refused", () => {
    fc.assert(
      fc.property(hostile(["/fastData/shared-models"]), hostile(["/models"]), fc.boolean(), (hostPath, mountPath, readOnly) => {
        count("property string");
        let keys: Record<string, string>;
        try {
          keys = desiredKeys({ ...EMPTY_ROOT, mounts: [{ hostPath, path: mountPath, readOnly, owner: { uid: 0, gid: 0, mode: "0755" } }] });
        } catch (e) {
          expect(String(e)).toContain("cannot go into a PVE property string");
          expect([hostPath, mountPath].some((v) => /^\s*$/.test(v) || /[,=]/.test(v) || CONTROL.test(v))).toBe(true);
          return;
        }
        expect(parsePropertyString(keys.mp0!, "volume")).toEqual({ volume: hostPath, mp: mountPath, ...(readOnly ? { ro: "1" } : {}) });
      }),
      { numRuns: 300 },
    );
  });
});
