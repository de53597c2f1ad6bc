/**
 * The findings of the hostile-input review, one test each: the stack file
 * values that used to validate and land unquoted in a unit, a script, the
 * gateway config, an env file or a PVE property string are refused at
 * validation, under their config path; and the renderers refuse or quote what
 * a schema slip would let through.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { nginxWord } from "../../components/core/nginx.render";
import { renderModelInstallScript, renderModelServerFiles } from "../../components/models/install.render";
import { modelServerSpec } from "../../components/models/server";
import { systemdVerify } from "../models/helpers";
import { environmentAssignment, renderServiceUnit } from "../../components/models/systemd";
import { desiredKeys } from "../../providers/guest/lxc-root-config.render";
import { stackSchema } from "../../stacks/schema";
import { tempDir } from "../support";
import { configPath, engineGuest, guestIndex, newIssues, prodRaw, withValue, type Path } from "./support";

const base = prodRaw();
const temps: string[] = [];
afterAll(() => temps.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function expectRefused(at: Path, value: unknown, says: string): void {
  const issues = newIssues(base, withValue(base, at, value));
  const here = issues.filter((i) => i.path === configPath(at));
  expect(here.map((i) => i.message).join("\n"), `${configPath(at)} = ${JSON.stringify(value)} must be refused there; got ${JSON.stringify(issues)}`).toContain(says);
}

const vllm = engineGuest(base, "vllm");
const ollama = engineGuest(base, "ollama");
const llama = engineGuest(base, "llamacpp");
const UNIT_INJECTION = 'x\n[Service]\nExecStartPre=+/bin/sh -c "id > /root/pwned"\n#';

describe("refused at validation, with the config path", () => {
  it("1. a model name that would add a [Service] section to the unit (vLLM, Ollama, llama.cpp)", () => {
    expectRefused(["guests", vllm, "role", "server", "servedModelName"], UNIT_INJECTION, "must be a model name");
    expectRefused(["guests", ollama, "role", "server", "models", 0, "name"], UNIT_INJECTION, "must be a model name");
    expectRefused(["guests", llama, "role", "server", "servedModelName"], UNIT_INJECTION, "must be a model name");
  });

  it("2. a GGUF path with a command substitution", () => {
    expectRefused(["guests", llama, "role", "server", "model"], "/models/$(touch /tmp/x).gguf", "must be an absolute path to a .gguf file");
  });

  it("3. a route path that closes the location and opens another, and one with a space", () => {
    const route = (base.values.routes as { service?: string }[]).findIndex((r) => r.service === "n8n");
    expectRefused(["routes", route, "path"], '/n8n/ { return 200 "x"; } location /y', "must be a URL path");
    expectRefused(["routes", route, "path"], "/n8n app/", "must be a URL path");
  });

  it("6. a Docker stack variable with a newline that would add another variable", () => {
    const agent = guestIndex(base, (g) => Array.isArray(g.dockerStacks) && (g.dockerStacks as unknown[]).length > 0);
    const stacks = (base.values.guests as { dockerStacks: { env?: Record<string, string> }[] }[])[agent]!.dockerStacks;
    const s = stacks.findIndex((d) => d.env && "PUBLIC_URL" in d.env);
    expectRefused(["guests", agent, "dockerStacks", s, "env", "PUBLIC_URL"], "https://x\nQDRANT__SERVICE__API_KEY=known", "printable ASCII without newlines");
    expectRefused(["guests", agent, "dockerStacks", s, "env", "PUBLIC_URL"], "${QDRANT__SERVICE__API_KEY}", "without newlines, '$'");
  });

  it("7. a mount path that would add keys to PVE's mpN property string", () => {
    const g = guestIndex(base, (x) => Array.isArray(x.mounts) && (x.mounts as unknown[]).length > 0);
    expectRefused(["guests", g, "mounts", 0, "path"], "/models,backup=1,shared=1", "must be absolute");
    expectRefused(["guests", g, "mounts", 0, "path"], "/models/../etc", "no '..'");
  });

  it("8. ZFS properties that move or hide a dataset, or export it past host.nfsExports", () => {
    const props = ["host", "zfs", "datasets", 0, "properties"];
    const current = (base.values.host as { zfs: { datasets: { properties: Record<string, unknown> }[] } }).zfs.datasets[0]!.properties;
    for (const [name, value, why] of [
      ["mountpoint", "/var", "moves the dataset away from /<pool>/<name>"],
      ["canmount", "noauto", "leave the dataset unmounted"],
      ["sharenfs", "on", "exports the dataset over NFS"],
    ] as const) {
      const issues = newIssues(base, withValue(base, props, { ...current, [name]: value }));
      expect(issues).toContainEqual({ path: `host.zfs.datasets[0].properties.${name}`, message: expect.stringContaining(why) });
    }
    expect(newIssues(base, withValue(base, ["host", "zfs", "pools", 0, "properties"], { mountpoint: "/var" }))).toContainEqual({ path: "host.zfs.pools[0].properties.mountpoint", message: expect.stringContaining("Phoenix owns the ZFS property mountpoint") });
  });

  it("a disk path with '..' and a property value with $(…), under their config paths rather than at preview", () => {
    expectRefused(["host", "zfs", "pools", 0, "disks", 0], "/dev/disk/by-id/../../sda", "must be a /dev/disk/by-id/ path");
    const current = (base.values.host as { zfs: { datasets: { properties: Record<string, unknown> }[] } }).zfs.datasets[0]!.properties;
    const issues = newIssues(base, withValue(base, ["host", "zfs", "datasets", 0, "properties"], { ...current, recordsize: "$(reboot)" }));
    expect(issues).toContainEqual({ path: "host.zfs.datasets[0].properties.recordsize", message: expect.stringContaining("must be a ZFS property value") });
  });

  it("project files outside the project: an absolute CA file, a compose file behind '..'", () => {
    expectRefused(["proxmox", "tls", "caFile"], "/etc/shadow", "a path relative to the project directory");
    const agent = guestIndex(base, (g) => Array.isArray(g.dockerStacks) && (g.dockerStacks as unknown[]).length > 0);
    expectRefused(["guests", agent, "dockerStacks", 0, "compose"], "../../etc/passwd", "no '..'");
  });

  it("keeps the committed stack's own values", () => {
    expect(stackSchema.safeParse(base.values).success).toBe(true);
    expect(newIssues(base, withValue(base, ["guests", ollama, "role", "server", "models", 0, "name"], "hf.co/unsloth/Qwen3-8B-GGUF:Q4_K_M"))).toEqual([]);
    expect(newIssues(base, withValue(base, ["guests", vllm, "role", "server", "model"], "Qwen/Qwen3-4B-Thinking-2507"))).toEqual([]);
  });
});

describe("renderers quote or refuse what a schema slip would let through", () => {
  const config = stackSchema.parse(base.values);
  const vmidOf = (i: number) => config.guests[i]!.vmid;

  it("a vLLM model with a quote, a space or U+2028 (the fuzz's \"\\u2028'Qwen3-4B\"): refused at validation under its path; past the schema, systemd hands vLLM the value whole", () => {
    const at: Path = ["guests", vllm, "role", "server", "model"];
    const dir = tempDir("hostile-vllm-model");
    temps.push(dir);
    for (const [k, model] of [" '", "\u2028'Qwen3-4B", "Qwen/Qwen3 4B"].entries()) {
      // stacks/patterns.ts HF_MODEL: a Hugging Face repo id or an absolute path of plain components.
      expectRefused(at, model, "must be a Hugging Face model id");
      const slipped = structuredClone(config);
      (slipped.guests[vllm]!.role as { server: { model: string } }).server.model = model;
      const spec = modelServerSpec(slipped, vmidOf(vllm));
      const unit = renderModelServerFiles(spec).find((f) => f.path === spec.unitFile)!.content;
      const caseDir = path.join(dir, String(k));
      fs.mkdirSync(caseDir);
      const verdict = systemdVerify(path.basename(spec.unitFile), unit, caseDir);
      expect(verdict.ok, verdict.warnings).toBe(true);
      // The read-back splits systemd's dump on "\n" alone (test/models/helpers.ts dumpFields): U+2028 is no line end there.
      expect(verdict.argv.slice(1, 3)).toEqual(["serve", model]);
    }
  });

  it("a unit's Description= never holds a line break, and % is literal", () => {
    const unit = { description: "x", user: "u", group: "u", argv: ["/bin/true"] };
    expect(() => renderServiceUnit({ ...unit, description: UNIT_INJECTION })).toThrow("control character or line break");
    expect(renderServiceUnit({ ...unit, description: "100% %n" })).toContain("Description=100%% %%n\n");
  });

  it("Environment= doubles % but keeps $ as it is (systemd does not expand variables there)", () => {
    expect(environmentAssignment("A", "x $HOME 5%")).toBe('"A=x $HOME 5%%"');
    expect(environmentAssignment("A", "a\nB=c")).toBe('"A=a\\nB=c"');
  });

  it("the llama.cpp install script runs no command hidden in the model path", () => {
    const dir = tempDir("hostile-gguf");
    temps.push(dir);
    const marker = path.join(dir, "pwned");
    const slipped = structuredClone(config);
    const server = slipped.guests.find((g) => g.vmid === vmidOf(llama))!.role as { server: { model: string } };
    server.server.model = `/models/$(touch ${marker}).gguf`;
    const script = renderModelInstallScript(modelServerSpec(slipped, vmidOf(llama)));
    const start = script.indexOf("if [ ! -r ");
    const snippet = script.slice(start, script.indexOf("\nfi", script.indexOf("exit 1", start)) + 3);
    const run = spawnSync("bash", ["-c", snippet], { encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`guest ${vmidOf(llama)}: the model /models/$(touch ${marker}).gguf is not there; put the GGUF file on the model volume\n`);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it("an nginx location argument stays one word", () => {
    expect(nginxWord("/n8n/")).toBe("/n8n/");
    expect(nginxWord('/n8n/ { return 200 "x"; } location /y')).toBe('"/n8n/ { return 200 \\"x\\"; } location /y"');
    expect(() => nginxWord("/a\n}")).toThrow("control characters");
  });

  it("a PVE property string value never holds ',' or '='", () => {
    const spec = { devices: [], features: { nesting: false, keyctl: false, fuse: false }, idmap: [], subuid: [], subgid: [] };
    const mount = { hostPath: "/fastData/shared-models", readOnly: false, owner: { uid: 0, gid: 0, mode: "0755" } };
    expect(() => desiredKeys({ ...spec, mounts: [{ ...mount, path: "/models,backup=1" }] })).toThrow("cannot go into a PVE property string");
    expect(() => desiredKeys({ ...spec, mounts: [{ ...mount, hostPath: "/a=b", path: "/models" }] })).toThrow("cannot go into a PVE property string");
    expect(desiredKeys({ ...spec, mounts: [{ ...mount, path: "/models" }] })).toEqual({ mp0: "/fastData/shared-models,mp=/models" });
  });
});
