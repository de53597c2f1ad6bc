/**
 * Logs: Loki's configuration against the keys Loki v3.6.15 declares (no Debian
 * package ships Loki 3, so the release's own -verify-config runs only on the
 * guest), Alloy's pipeline for every container and the node (installed in the
 * rig's sandbox from a checked release zip), checked structurally (no Alloy
 * parser exists on npm; the guest runs `alloy fmt` before anything reloads),
 * Grafana's provisioning files, and the install scripts by shellcheck and the
 * units by systemd-analyze.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand } from "../../providers/ssh";
import { startSshd, type SshRig } from "../rig/sshd";
import { logShippingGuests } from "../../components/observability/alloy";
import { ALLOY_PATHS, alloyString, renderAlloyConfig, renderAlloyFiles, renderAlloyInstallScript } from "../../components/observability/alloy.render";
import { GRAFANA_PATHS, grafanaHost } from "../../components/observability/grafana.render";
import { renderObservabilityFiles, renderObservabilityInstallScript } from "../../components/observability/install.render";
import { LOKI_PATHS, renderLokiYaml } from "../../components/observability/loki.render";
import { DASHBOARDS, DATASOURCE } from "../../components/observability/dashboards/dashboards";
import { guestOfRole } from "../../stacks/routing";
import { systemdVerify } from "../models/helpers";
import { goldenChecker, REFERENCE_DIR, shellcheck, tempDir } from "../support";
import { configOf, GOLDEN_CA_PEM, prodRaw } from "./helpers";

const prod = configOf(prodRaw());
const expectGolden = goldenChecker(path.join(__dirname, "golden"));

/** Every key path of a YAML document, list elements written as []. */
function keyPaths(value: unknown, prefix = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((v) => keyPaths(v, `${prefix}[]`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => {
    const p = prefix === "" ? k : `${prefix}.${k}`;
    return [p, ...keyPaths(v, p)];
  });
}

const lokiKeys = new Set(
  fs
    .readFileSync(path.join(REFERENCE_DIR, "loki", "v3.6.15-config-keys.txt"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => l.split(/\s+/)[0]!),
);

describe("Loki's configuration", () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a parsed YAML document, read field by field
  const doc = parse(renderLokiYaml(prod)) as Record<string, any>;

  it("uses only keys Loki v3.6.15's config structs declare", () => {
    const unknown = keyPaths(doc).filter((p) => !lokiKeys.has(p));
    expect(unknown).toEqual([]);
    // The check catches a key Loki does not have.
    expect(keyPaths({ common: { path_prefx: "/x" } }).filter((p) => !lokiKeys.has(p))).toEqual(["common.path_prefx"]);
  });

  it("keeps its data on the ops guest's dataset and retention from the role", () => {
    const role = guestOfRole(prod, "observability").role;
    expect(doc.common.path_prefix).toBe(`${role.dataDir}/loki`);
    expect(doc.common.storage.filesystem.chunks_directory.startsWith(`${role.dataDir}/`)).toBe(true);
    expect(doc.compactor.working_directory.startsWith(`${role.dataDir}/`)).toBe(true);
    expect(doc.limits_config.retention_period).toBe(`${role.loki.retentionDays * 24}h`);
    expect(doc.server.http_listen_port).toBe(role.loki.port);
    expect(doc.server.grpc_listen_address).toBe("127.0.0.1");
    expect(doc.schema_config.configs[0]).toMatchObject({ store: "tsdb", schema: "v13", object_store: "filesystem" });
  });
});

/** Alloy's blocks and the attributes each takes, at v1.18.1 (the files cited in alloy.render.ts). */
const ALLOY_BLOCKS: Record<string, Set<string>> = {
  "loki.relabel": new Set(["forward_to", "max_cache_size"]),
  "loki.relabel/rule": new Set(["source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"]),
  "loki.source.journal": new Set(["format_as_json", "max_age", "path", "relabel_rules", "matches", "forward_to", "labels"]),
  "loki.write": new Set(["external_labels", "max_streams"]),
  "loki.write/endpoint": new Set(["name", "url", "batch_wait", "batch_size", "remote_timeout", "headers", "tenant_id"]),
};

/**
 * A structural reading of the Alloy file Phoenix writes: blocks open with `name "label" {` or `name {`
 * and close alone on a line; attributes are `name = value` where value is a string literal, a list,
 * a reference or an object opened on the line. Returns the attributes seen per block path.
 */
function readAlloy(text: string): { blocks: string[]; attrs: Record<string, string[]>; strings: string[] } {
  const stack: string[] = [];
  const blocks: string[] = [];
  const attrs: Record<string, string[]> = {};
  const strings: string[] = [];
  let inObject = 0;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("//")) continue;
    for (const m of line.matchAll(/"(?:[^"\\]|\\.)*"/g)) strings.push(JSON.parse(m[0]) as string);
    if (inObject > 0) {
      if (line === "}") inObject--;
      else expect(line, `object entry: ${line}`).toMatch(/^[a-z_]+ = "(?:[^"\\]|\\.)*",$/);
      continue;
    }
    let m: RegExpExecArray | null;
    if ((m = /^([a-z_.]+)(?: "([a-z_]+)")? \{$/.exec(line))) {
      const name = stack.length === 0 ? m[1]! : `${stack[0]}/${m[1]!}`;
      expect(stack.length === 0 ? m[2] : "nested", `block ${m[1]} needs a label at the top level only`).toBeDefined();
      stack.push(name);
      blocks.push(name);
    } else if (line === "}") {
      expect(stack.pop(), "a closing brace without a block").toBeDefined();
    } else if ((m = /^([a-z_]+)\s+= (.+)$/.exec(line))) {
      (attrs[stack.at(-1)!] ??= []).push(m[1]!);
      const value = m[2]!;
      if (value === "{") inObject++;
      else expect(value, `value of ${m[1]}`).toMatch(/^("(?:[^"\\]|\\.)*"|\[("(?:[^"\\]|\\.)*"(, )?)*\]|\[[a-z_.]+\]|\[\]|[a-z_.]+)$/);
    } else throw new Error(`not Alloy as Phoenix writes it: ${line}`);
  }
  expect(stack).toEqual([]);
  expect(inObject).toBe(0);
  return { blocks, attrs, strings };
}

describe("Alloy on every container", () => {
  const guests = logShippingGuests(prod);
  const ops = guestOfRole(prod, "observability");

  it("runs on every container, the ops guest included", () => {
    expect(guests.map((g) => g.vmid)).toEqual(prod.guests.filter((g) => g.kind === "lxc").map((g) => g.vmid));
    expect(guests.some((g) => g.vmid === ops.vmid)).toBe(true);
  });

  it("writes blocks and attributes Alloy v1.18.1 declares, labelled with the guest's id, name and role", () => {
    for (const g of guests) {
      const text = renderAlloyFiles(prod, g).find((f) => f.path === ALLOY_PATHS.config)!.content;
      const read = readAlloy(text);
      expect(read.blocks.sort()).toEqual(["loki.relabel", "loki.relabel/rule", "loki.relabel/rule", "loki.source.journal", "loki.write", "loki.write/endpoint"]);
      for (const [block, names] of Object.entries(read.attrs)) for (const n of names) expect(ALLOY_BLOCKS[block]!.has(n), `${block}.${n}`).toBe(true);
      expect(text).toContain(`guest = "${g.vmid}",`);
      expect(text).toContain(`name = ${JSON.stringify(g.name)},`);
      expect(text).toContain(`role = ${JSON.stringify(g.role?.type ?? "none")},`);
      expect(read.strings).toContain(`http://${ops.network.ip!.split("/")[0]}:${ops.role.loki.port}/loki/api/v1/push`);
    }
    expect(() => readAlloy("loki.write \"ops\" {\n  endpoint {\n")).toThrow();
  });

  it("quotes every string for Alloy and refuses what Alloy cannot read", () => {
    expect(alloyString('a"b\\c\nd')).toBe('"a\\"b\\\\c\\nd"');
    const hostile = renderAlloyConfig({ guest: "1", name: 'x" }\nloki.write "evil" {', role: "none" }, "http://10.0.0.14:3100/loki/api/v1/push");
    expect(readAlloy(hostile).blocks.filter((b) => b === "loki.write")).toHaveLength(1);
    expect(() => alloyString("\uD800")).toThrow(/surrogate/);
  });

  it("has an install script shellcheck accepts and a unit systemd-analyze accepts", () => {
    const g = guests[0]!;
    const script = renderAlloyInstallScript(prod, g);
    shellcheck("alloy install", script);
    expect(script).toContain("alloy-linux-amd64.zip");
    expect(script).toContain("SHA256SUMS");
    expect(script).toMatch(/alloy fmt \/etc\/alloy\/config\.alloy/);
    const unit = renderAlloyFiles(prod, g).find((f) => f.path.endsWith(ALLOY_PATHS.unit))!.content;
    const v = systemdVerify(ALLOY_PATHS.unit, unit, tempDir("alloy-unit"));
    expect(v.ok, v.warnings).toBe(true);
    expect(unit).toMatch(/^SupplementaryGroups=systemd-journal adm$/m);
    expectGolden(`${ops.vmid}-alloy/install.sh`, renderAlloyInstallScript(prod, ops));
  });
});

describe("Alloy in a Docker host VM (through its user data)", () => {
  it("has the containers' pipeline with the VM's labels, a unit sandboxed as a VM allows, and a script shellcheck accepts", () => {
    const vm = prod.guests.find((g) => g.role?.type === "portainer-agent")!;
    const files = new Map(renderAlloyFiles(prod, vm).map((f) => [f.path, f.content]));
    expect(files.get(ALLOY_PATHS.config)).toContain(`guest = "${vm.vmid}",\n    name = "${vm.name}",\n    role = "portainer-agent",`);
    const unit = files.get(`/etc/systemd/system/${ALLOY_PATHS.unit}`)!;
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    const v = systemdVerify(ALLOY_PATHS.unit, unit, tempDir("alloy-vm-unit"));
    expect(v.ok, v.warnings).toBe(true);
    shellcheck("VM alloy install", renderAlloyInstallScript(prod, vm));
  });
});

describe("Alloy on the Proxmox node", () => {
  const files = new Map(renderAlloyFiles(prod, "host").map((f) => [f.path, f.content]));
  const ops = guestOfRole(prod, "observability");

  it("ships the node's journal labelled as the host, with the guests' pipeline and push URL", () => {
    const text = files.get(ALLOY_PATHS.config)!;
    const read = readAlloy(text);
    for (const [block, names] of Object.entries(read.attrs)) for (const n of names) expect(ALLOY_BLOCKS[block]!.has(n), `${block}.${n}`).toBe(true);
    // The same labels the host's scrape targets carry (stacks/scrape.ts machineLabels).
    expect(text).toContain(`guest = "host",\n    name = "phoenix",\n    role = "host",`);
    expect(read.strings).toContain(`http://${ops.network.ip!.split("/")[0]}:${ops.role.loki.port}/loki/api/v1/push`);
    // One renderer: a container's file differs only in its labels.
    const guest = renderAlloyFiles(prod, ops).find((f) => f.path === ALLOY_PATHS.config)!.content;
    expect(text.replace(/ {4}(guest|name|role) = .*\n/g, "")).toBe(guest.replace(/ {4}(guest|name|role) = .*\n/g, ""));
  });

  it("runs under the host's full sandbox, its unit and install script judged by systemd-analyze and shellcheck", () => {
    const unit = files.get(`/etc/systemd/system/${ALLOY_PATHS.unit}`)!;
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit).toMatch(/^ReadWritePaths=\/var\/lib\/alloy$/m);
    const v = systemdVerify(ALLOY_PATHS.unit, unit, tempDir("alloy-host-unit"));
    expect(v.ok, v.warnings).toBe(true);
    const script = renderAlloyInstallScript(prod, "host");
    shellcheck("host alloy install", script);
    // Every path it writes or checks is under the node's root (InstallScriptSpec.onNode).
    expect(script).toContain(`"$R"${ALLOY_PATHS.binary} fmt "$R"${ALLOY_PATHS.config} >/dev/null`);
    expect(script).toContain(`install -d -m 0750 -o alloy -g alloy "$R"${ALLOY_PATHS.data}`);
  });
});

describe("Alloy on the node (the rig's sandbox)", () => {
  let rig: SshRig;
  beforeAll(async () => {
    rig = await startSshd();
  });
  afterAll(async () => {
    await rig?.stop();
  });

  it("installs from the release zip checked against its SHA256SUMS, under the node's root, enables it, and changes nothing the second time", async () => {
    const script = renderAlloyInstallScript(prod, "host");
    const first = await runCommand(rig.connection, "bash -s", { stdin: script });
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/alloy: installed 2 changed file\(s\)/);
    const sb = rig.sandbox;
    expect(sb.exists("usr/local/bin/alloy")).toBe(true);
    expect(sb.exists("var/lib/alloy")).toBe(true);
    expect(sb.read("etc/alloy/config.alloy")).toContain('guest = "host",');
    expect(sb.read("etc/passwd")).toMatch(/^alloy:/m);
    expect(sb.state().aptInstalled).toContain("unzip");
    expect(sb.state().systemdEnabled).toContain(ALLOY_PATHS.unit);
    const second = await runCommand(rig.connection, "bash -s", { stdin: script });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain("alloy: files unchanged");
    // The zip and its SHA256SUMS were fetched once: the version marker held the second time.
    expect(sb.calls("curl").filter((c) => c.includes("-o"))).toHaveLength(2);
  });

  it("refuses a zip the release's SHA256SUMS does not list, installing nothing", async () => {
    rig.sandbox.update((s) => (s.releases = {}));
    rig.sandbox.write("var/lib/phoenix/releases/alloy.version", "0.0.1\n");
    const tampered = renderAlloyInstallScript(prod, "host").replace(/\/v([\d.]+)\/alloy-linux-amd64\.zip/, "/v$1/mirror/alloy-linux-amd64.zip");
    const res = await runCommand(rig.connection, "bash -s", { stdin: tampered });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/alloy .*alloy-linux-amd64\.zip is not listed in .*\/SHA256SUMS; refusing to install an unverified binary/);
  });
});

describe("Grafana and Loki on the ops guest", () => {
  const files = new Map(renderObservabilityFiles(prod, { caRootPem: GOLDEN_CA_PEM }).map((f) => [f.path, f]));
  const role = guestOfRole(prod, "observability").role;

  it("provisions Prometheus, Loki and Alertmanager by the uids the dashboards name", () => {
    const ds = parse(files.get(GRAFANA_PATHS.datasources)!.content) as { apiVersion: number; datasources: { type: string; uid: string; url: string }[] };
    expect(ds.apiVersion).toBe(1);
    expect(ds.datasources.map((d) => [d.type, d.uid, d.url])).toEqual([
      ["prometheus", DATASOURCE.prometheus, `http://127.0.0.1:${role.prometheus.port}`],
      ["loki", DATASOURCE.loki, `http://127.0.0.1:${role.loki.port}`],
      ["alertmanager", DATASOURCE.alertmanager, `http://127.0.0.1:${role.alertmanager.port}`],
    ]);
    const provider = parse(files.get(GRAFANA_PATHS.dashboardProvider)!.content) as { providers: { options: { path: string } }[] };
    for (const d of DASHBOARDS) expect(files.has(`${provider.providers[0]!.options.path}/${d.uid}.json`), d.uid).toBe(true);
    const ini = files.get(GRAFANA_PATHS.ini)!.content;
    expect(grafanaHost(prod)).toBe("grafana.internal.thinkheads.ai");
    expect(ini).toContain(`root_url = https://${grafanaHost(prod)!}/`);
    expect(ini).toContain(`data = ${role.dataDir}/grafana`);
    expect(ini).toContain(`admin_password = $__file{${GRAFANA_PATHS.adminPassword}}`);
    expect(files.get(GRAFANA_PATHS.ini)!.mode).toBe("0640");
  });

  it("installs Loki from its checksummed release and Grafana from the pinned, signed repository, judged before reload", () => {
    const script = renderObservabilityInstallScript(prod, { caRootPem: GOLDEN_CA_PEM });
    shellcheck("observability install", script);
    expect(script).toContain(`https://github.com/grafana/loki/releases/download/v${role.loki.version}/loki-linux-amd64.zip`);
    expect(script).toContain(`grafana=${role.grafana.version}`);
    expect(script).toContain(role.grafana.aptKeyFingerprint);
    expect(script).toContain(`${LOKI_PATHS.binary} -verify-config -config.file=${LOKI_PATHS.config}`);
    const unit = files.get(`/etc/systemd/system/${LOKI_PATHS.unit}`)!.content;
    const v = systemdVerify(LOKI_PATHS.unit, unit, tempDir("loki-unit"));
    expect(v.ok, v.warnings).toBe(true);
    expect(unit).toContain(`-config.file=${LOKI_PATHS.config}`);
  });
});
