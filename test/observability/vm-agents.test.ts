/**
 * node_exporter, Alloy and the GPU exporter in the VMs: the scripts they get (the containers'
 * renderers, rooted as the node's are), and VmInstall, which runs them through the guest agent:
 * its node-side scripts (shellcheck), its check, diff and reach-only update, and how it reads a
 * probe. The e2e (test/e2e/apply.test.ts) runs it against the rig's qm.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { renderAlloyInstallScript } from "../../components/observability/alloy.render";
import { renderGuestExportersScript } from "../../components/observability/exporters.render";
import { vmAgentScripts } from "../../components/observability/vm-agents.render";
import { UNKNOWN } from "../../providers/common";
import * as pulumi from "@pulumi/pulumi";
import { implementation, probeInSync, renderInVmRunner, renderProbeScript, renderRunScript, vmInstallProvider, type VmInstallOutputs, type VmScript } from "../../providers/guest/vm-install";
import { trustsInternalCa } from "../../stacks/plan";
import { scrapePoints } from "../../stacks/scrape";
import type { VmGuest } from "../../stacks/schema";
import { loadStack, shellcheck } from "../support";

const stacks = ["prod", "dev", "vrooli"].map((name) => ({ name, config: loadStack(`Pulumi.${name}.yaml`) }));
const vms = stacks.flatMap(({ name, config }) => config.guests.filter(trustsInternalCa).map((g) => ({ name, config, g })));
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("the agents' scripts of a VM", () => {
  it("are the containers' renderers' scripts, rooted at PHOENIX_ROOT, exporters then Alloy, each with the units it leaves running", () => {
    expect(vms.map((v) => `${v.name}/${v.g.name}`)).toEqual(["prod/portainer", "prod/drphoenix", "dev/portainer", "dev/drphoenix", "vrooli/plan-hq"]);
    for (const { name, config, g } of vms) {
      const scripts = vmAgentScripts(config, g);
      expect(scripts.map((s) => s.name), `${name}/${g.name}`).toEqual(["exporters", "alloy"]);
      expect(scripts[0]!.script).toBe(renderGuestExportersScript(config, g));
      expect(scripts[1]!.script).toBe(renderAlloyInstallScript(config, g));
      for (const s of scripts) {
        expect(s.script).toContain('R="${PHOENIX_ROOT:-}"');
        expect(s.script).toMatch(/systemd-analyze verify "\$R"\/etc\/systemd\/system\/(node-exporter|alloy)\.service/);
      }
      expect(scripts[1]!.units).toEqual(["alloy.service"]);
    }
    // The GPU exporter where a GPU is passed through (vrooli's plan-hq), not on the Portainer VMs.
    const hq = vms.find((v) => v.g.name === "plan-hq")!;
    expect(vmAgentScripts(hq.config, hq.g)[0]!.units).toEqual(["node-exporter.service", "gpu-exporter.service"]);
    expect(vmAgentScripts(hq.config, hq.g)[0]!.script).toContain("nvidia_gpu_exporter_1.14.0_linux_x86_64.tar.gz");
    const portainer = vms.find((v) => v.name === "prod" && v.g.name === "portainer")!;
    expect(vmAgentScripts(portainer.config, portainer.g)[0]!.units).toEqual(["node-exporter.service"]);
    // A container's stay unrooted: `pct exec` runs them in the container's own root.
    const prod = stacks[0]!.config;
    expect(renderGuestExportersScript(prod, prod.guests.find((g) => g.kind === "lxc")!)).not.toContain("PHOENIX_ROOT");
  });

  it("are none without an ops guest", () => {
    const prod = stacks[0]!.config;
    const noOps = { ...prod, guests: prod.guests.filter((g) => g.role?.type !== "observability") };
    const g = noOps.guests.find((x): x is VmGuest => x.kind === "vm")!;
    expect(vmAgentScripts(noOps, g)).toEqual([]);
  });

  it("are none in a VM HA keeps stopped: no guest agent answers there", () => {
    const hq = vms.find((v) => v.g.name === "plan-hq")!;
    expect(vmAgentScripts(hq.config, { ...hq.g, ha: { state: "stopped", strict: false, apartFrom: [], maxRestart: 1, maxRelocate: 1 } })).toEqual([]);
    expect(vmAgentScripts(hq.config, { ...hq.g, ha: { state: "started", strict: false, apartFrom: [], maxRestart: 1, maxRelocate: 1 } })).toHaveLength(2);
    // Nor is it scraped for node_exporter: a target that could only ever be down.
    const stopped = { ...hq.config, guests: hq.config.guests.map((g) => (g.vmid === hq.g.vmid ? { ...hq.g, ha: { state: "stopped" as const, strict: false, apartFrom: [], maxRestart: 1, maxRelocate: 1 } } : g)) };
    const nodeTargets = (c: typeof hq.config) => scrapePoints(c).filter((p) => p.on !== "host" && p.on.vmid === hq.g.vmid && p.port === 9100);
    expect(nodeTargets(hq.config)).toHaveLength(1);
    expect(nodeTargets(stopped)).toEqual([]);
  });

  it("and VmInstall's node-side scripts are shellcheck-clean", () => {
    const hq = vms.find((v) => v.g.name === "plan-hq")!;
    const scripts = vmAgentScripts(hq.config, hq.g);
    for (const s of scripts) {
      shellcheck(`VM ${s.name} install`, s.script);
      shellcheck(`VM ${s.name} runner`, `#!/bin/bash\n${renderInVmRunner(s.name)}\n`);
      shellcheck(`VM ${s.name} run on the node`, renderRunScript(hq.g.vmid, s));
    }
    shellcheck("VM install probe", renderProbeScript(hq.g.vmid, scripts));
  });
});

describe("VmInstall", () => {
  const connection = { host: "10.0.0.13", port: 22, username: "root", privateKey: "k", hostKey: "SHA256:" + "A".repeat(43) };
  const scripts: VmScript[] = [
    { name: "exporters", script: "#!/usr/bin/env bash\necho one\n", units: ["node-exporter.service"] },
    { name: "alloy", script: "#!/usr/bin/env bash\necho two\n", units: ["alloy.service"] },
  ];
  const inputs = { connection, node: "pve", vmid: 1002, scripts };
  const outputs: VmInstallOutputs = { ...inputs, inSync: true };

  it("serializes without capturing a module (docs/dynamic-providers.md)", async () => {
    const { text } = await pulumi.runtime.serializeFunction(() => vmInstallProvider, { allowSecrets: true });
    expect(text).toContain("loadImplementation");
    expect(text).not.toMatch(/renderGuestExec|runScriptChecked|probeInSync/);
  });

  it("check refuses what it cannot run and lets unknowns through", async () => {
    const bad = await implementation.check!({}, { ...inputs, vmid: 7, scripts: [{ name: "Bad Name", script: "echo no shebang", units: ["nope"] }, { name: "Bad Name", script: UNKNOWN, units: [] }] });
    expect(bad.failures!.map((f) => f.property).sort()).toEqual(["scripts", "scripts[0].name", "scripts[0].script", "scripts[0].units", "scripts[1].name", "vmid"]);
    expect((await implementation.check!({}, { ...inputs, scripts: UNKNOWN, vmid: UNKNOWN })).failures).toEqual([]);
    expect((await implementation.check!({}, inputs)).failures).toEqual([]);
  });

  it("diff: a changed script updates, another VM replaces, drift found by refresh updates, nothing else changes", async () => {
    expect((await implementation.diff!("id", outputs, inputs)).changes).toBe(false);
    expect(await implementation.diff!("id", outputs, { ...inputs, scripts: [scripts[0]!, { ...scripts[1]!, script: "#!/bin/sh\necho three\n" }] })).toMatchObject({ changes: true, replaces: [] });
    expect(await implementation.diff!("id", outputs, { ...inputs, vmid: 1003 })).toMatchObject({ changes: true, replaces: ["vmid"] });
    expect(await implementation.diff!("id", { ...outputs, inSync: false }, inputs)).toMatchObject({ changes: true, replaces: [] });
  });

  it("update after a migration or an SSH change records it and runs nothing (no SSH is tried)", async () => {
    const moved = { ...inputs, node: "pve2", connection: { ...connection, host: "192.0.2.1" } };
    expect((await implementation.update!("id", outputs, moved)).outs).toEqual({ ...moved, inSync: true });
  });

  describe("its runner in the VM (real bash; cloud-init and timeout stood in)", () => {
    // timeout stand-in: as if the limit struck when cloud-init is what it runs, else runs the command (after its options).
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), "vm-runner-bin-"));
    fs.writeFileSync(path.join(bin, "cloud-init"), "#!/bin/sh\nsleep 30\n", { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "timeout"), '#!/bin/bash\necho "$*" >>"$PHOENIX_ROOT/timeout.log"\nwhile [ "${1#-}" != "$1" ]; do shift; done; shift\nif [ "$1" = cloud-init ]; then [ -n "${CLOUD_INIT_HANGS:-}" ] && exit 124; exit 0; fi\nexec "$@"\n', { mode: 0o755 });
    const run = (script: string, env: Record<string, string> = {}) => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-runner-root-"));
      const r = spawnSync("bash", ["-c", renderInVmRunner("exporters")], { input: script, encoding: "utf8", timeout: 10_000, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, PHOENIX_ROOT: root, ...env } });
      const record = path.join(root, "var/lib/phoenix/vm-install/exporters.sha256");
      return { status: r.status, stderr: r.stderr, record: fs.existsSync(record) ? fs.readFileSync(record, "utf8").trim() : undefined, ran: fs.existsSync(path.join(root, "ran")), timeouts: fs.existsSync(path.join(root, "timeout.log")) ? fs.readFileSync(path.join(root, "timeout.log"), "utf8") : "" };
    };
    const ok = '#!/bin/bash\ntouch "$PHOENIX_ROOT/ran"\n';

    it("records the script's SHA-256 only after it succeeded, both bounded by timeout within qm's wait", () => {
      const done = run(ok);
      expect(done).toMatchObject({ status: 0, record: sha(ok), ran: true });
      expect(done.timeouts).toMatch(/^2700 cloud-init status --wait\n--kill-after=10 35\d\d \S+\/usr\/local\/sbin\/phoenix-exporters-install\n$/);
      expect(run('#!/bin/bash\ntouch "$PHOENIX_ROOT/ran"\nexit 3\n')).toMatchObject({ status: 3, record: undefined, ran: true });
    });

    it("a cloud-init that never finishes fails the run, with why, before the script runs (no unbounded wait left in the VM)", () => {
      const r = run(ok, { CLOUD_INIT_HANGS: "1" });
      expect(r).toMatchObject({ status: 1, record: undefined, ran: false });
      expect(r.stderr).toContain("cloud-init had not finished after 2700 s");
    });
  });

  it("check refuses a script without a final line break: the heredoc would add one and the VM's record never match", async () => {
    const r = await implementation.check!({}, { ...inputs, scripts: [{ ...scripts[0]!, script: "#!/bin/bash\necho one" }] });
    expect(r.failures!.map((f) => f.property)).toEqual(["scripts[0].script"]);
  });

  it("reads a probe: in sync only with every script's record and every unit active", () => {
    const records = scripts.map((s) => `record ${s.name} ${sha(s.script)}`);
    expect(probeInSync(records.join("\n"), scripts)).toBe(true);
    expect(probeInSync(`${records[0]}\nrecord alloy -\n`, scripts)).toBe(false);
    expect(probeInSync(`${records[0]}\nrecord alloy ${sha("an older script")}\n`, scripts)).toBe(false);
    expect(probeInSync(`${records.join("\n")}\ninactive alloy.service\n`, scripts)).toBe(false);
  });
});
