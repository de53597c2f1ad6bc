import { execFile } from "child_process";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { promisify } from "util";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nvidiaDriverProvider } from "../../providers/host/nvidia-driver";
import { vfioHostProvider } from "../../providers/host/vfio";
import { ZfsDataset, zfsDatasetProvider } from "../../providers/host/zfs-dataset";
import { zfsArcLimitProvider } from "../../providers/host/zfs-arc";
import { zfsPoolProvider } from "../../providers/host/zfs-pool";
import { startSshd, type SshRig } from "../rig/sshd";

const providers = { zfsDatasetProvider, zfsPoolProvider, zfsArcLimitProvider, vfioHostProvider, nvidiaDriverProvider };

/** What the engine's dynamic-provider process does with the serialized text, in a plain Node. */
const ENGINE_LIKE_HOST = `
const fs = require("fs");
const requireFromString = require("require-from-string");
const provider = requireFromString(fs.readFileSync(process.argv[1], "utf8")).handler();
const inputs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
(async () => {
  const checked = await provider.check({}, inputs);
  const created = await provider.create(checked.inputs);
  const read = await provider.read(created.id, created.outs);
  console.log(JSON.stringify({ failures: checked.failures, id: created.id, props: read.props, ts: Boolean(require.extensions[".ts"]) }));
})().catch((e) => { console.error(e.stack); process.exit(1); });
`;

let rig: SshRig;
let dir: string;
beforeAll(async () => {
  rig = await startSshd();
  dir = mkdtempSync(join(tmpdir(), "phoenix-serialize-"));
  rig.sandbox.update((s) => {
    s.pools.tank = { vdevType: "single", disks: [], options: {} };
    s.datasets.tank = {};
  });
});
afterAll(async () => {
  await rig?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("provider serialization", () => {
  it.each(Object.entries(providers))("%s serializes without capturing modules or state", async (_name, provider) => {
    const { text } = await pulumi.runtime.serializeFunction(() => provider, { allowSecrets: true });
    expect(text).toContain("loadImplementation");
    expect(text).not.toMatch(/runScriptChecked|ssh2|zfs\.scripts|renderScript/);
    expect(text.length).toBeLessThan(5000);
  });

  it("the serialized provider works where the engine runs it: plain node, require-from-string, cwd = project root", async () => {
    const { text } = await pulumi.runtime.serializeFunction(() => zfsDatasetProvider, { allowSecrets: true });
    writeFileSync(join(dir, "provider.js"), text);
    writeFileSync(join(dir, "inputs.json"), JSON.stringify({ node: "pve", connection: rig.connection, pool: "tank", name: "served", properties: { quota: "10G" } }));
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", ENGINE_LIKE_HOST, join(dir, "provider.js"), join(dir, "inputs.json")], {
      cwd: process.cwd(),
      env: { PATH: process.env.PATH ?? "" },
    });
    const result = JSON.parse(stdout) as { failures: unknown[]; id: string; props: { properties: Record<string, string> }; ts: boolean };
    expect(result).toMatchObject({ failures: [], id: "tank/served", props: { properties: { quota: "10G" } }, ts: true });
    expect(rig.sandbox.state().datasets["tank/served"]).toEqual({ quota: "10G" });
  });
});

describe("resource classes", () => {
  it("register as phoenix/host dynamic resources with the provider serialized into __provider", async () => {
    const registered: Array<{ type: string; inputs: Record<string, unknown> }> = [];
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          registered.push({ type: args.type, inputs: args.inputs });
          return { id: `${args.inputs.pool}/${args.inputs.name}`, state: { ...args.inputs, dataset: `${args.inputs.pool}/${args.inputs.name}` } };
        },
        call: () => ({}),
      },
      "phoenix",
      "test",
    );
    const ds = new ZfsDataset("ds-vm-disks", { node: "pve", connection: rig.connection, pool: "quickOS", name: "vm-disks", properties: { quota: "800G" } });
    const dataset = await new Promise((resolve) => ds.dataset.apply(resolve));
    expect(dataset).toBe("quickOS/vm-disks");
    expect(registered[0]!.type).toBe("pulumi-nodejs:dynamic/phoenix/host:ZfsDataset");
    expect(registered[0]!.inputs).toMatchObject({ allowDestroy: false, properties: { quota: "800G" } });
    expect(String(registered[0]!.inputs.__provider)).toContain("loadImplementation");
  });
});
